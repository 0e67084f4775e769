-- Runs the busted suite under this Lua (busted's own shebang picks Lua 5.1) and
-- exits non-zero when a test fails.  Usage: lua5.4 spec/run.lua /usr/bin/busted [busted args]
local busted_script = arg[1] or "/usr/bin/busted"
-- Absolute paths, so that subprocesses started from other directories find the modules.
local root = os.getenv("PWD") or io.popen("pwd"):read("l")
local build = os.getenv("ASYNCORE_BUILD") or "build"
local args = {
  "-o", "spec/summary_output.lua",
  ("--lpath=%s/lua/?.lua;%s/spec/?.lua"):format(root, root),
  ("--cpath=%s/%s/?.so"):format(root, build),
}
for i = 2, #arg do args[#args + 1] = arg[i] end
if #arg < 2 then args[#args + 1] = "spec" end
arg = { [0] = busted_script, table.unpack(args) }
dofile(busted_script)
