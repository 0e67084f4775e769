-- Shared helpers for the asyncore specs: temporary paths, output capture, bounded
-- loops that wait for a condition, python3 peers and a raw close(2) of an fd.
local asyncore = require "asyncore"
local core = require "asyncore.core"

local M = {}

M.python = os.getenv("PYTHON") or "python3"

-- A fresh path in the temporary directory that does not exist (for AF_UNIX
-- sockets and scratch files).  The suffix keeps mkstemp from handing the same
-- name to someone else after the placeholder is removed.
function M.tmppath(suffix)
  local name = os.tmpname()
  os.remove(name)
  return name .. (suffix or ".tmp")
end

-- Removes a file if it is there.
function M.unlink(path)
  if path then os.remove(path) end
end

-- Writes data to path (binary).
function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

function M.read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

-- The lines of s, without their terminators.
function M.lines(s)
  local t = {}
  for line in s:gmatch("([^\n]*)\n") do t[#t + 1] = line end
  local rest = s:match("[^\n]+$")
  if rest then t[#t + 1] = rest end
  return t
end

local function drain(tmp)
  tmp:seek("set")
  local s = tmp:read("a")
  tmp:close()
  return s
end

-- Runs fn with io.output() redirected to a temporary file; returns what it wrote.
function M.capture_stdout(fn)
  local old = io.output()
  local tmp = assert(io.tmpfile())
  io.output(tmp)
  local ok, err = pcall(fn)
  io.output(old)
  local s = drain(tmp)
  if not ok then error(err, 0) end
  return s
end

-- Runs fn with io.stderr replaced by a temporary file; returns what it wrote.
function M.capture_stderr(fn)
  local old = io.stderr
  local tmp = assert(io.tmpfile())
  io.stderr = tmp
  local ok, err = pcall(fn)
  io.stderr = old
  local s = drain(tmp)
  if not ok then error(err, 0) end
  return s
end

-- Waits about `seconds` without spinning: one poll() pass over a private map
-- whose only channel is an unbound UDP socket that never becomes readable.
-- (A pass over an empty map returns at once, as in Python.)
local idle_map
function M.pause(seconds)
  if idle_map == nil then
    local sock = assert(core.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM))
    idle_map = {
      [sock:fileno()] = {
        socket = sock,
        readable = function() return true end,
        writable = function() return false end,
        handle_read_event = function() end,
        handle_error = function(_, err) error(err, 0) end,
      },
    }
  end
  asyncore.poll2(seconds, idle_map)
end

-- Runs single loop passes until pred() is true, at most `passes` of them (as
-- Python's loop_waiting_for_flag: stops early when the map empties).  Between
-- passes that did not satisfy pred it pauses a little, so that a channel that
-- is always writable does not use up the passes before the kernel has moved
-- data along.  Returns true and the number of passes, or false.
function M.loop_until(pred, opts)
  opts = opts or {}
  local map = opts.map or asyncore.socket_map
  local passes = opts.passes or 100
  for i = 1, passes do
    if next(map) == nil then return false, i - 1 end
    asyncore.loop { timeout = opts.timeout or 0.01, count = 1, use_poll = opts.use_poll,
                    backend = opts.backend, map = map }
    if pred() then return true, i end
    M.pause(opts.pause or 0.05)
  end
  return false, passes
end

-- True when an AF_INET6 socket can be bound to ::1 here.
local ipv6_usable
function M.ipv6_available()
  if ipv6_usable == nil then
    local sock = core.socket(asyncore.AF_INET6)
    ipv6_usable = sock ~= nil and sock:bind("::1", 0) == true
    if sock then sock:close() end
  end
  return ipv6_usable
end

-- Quotes a string for /bin/sh.
function M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs python3 -c script (extra arguments appended) with its stdout read through
-- a pipe; returns the file handle.
function M.python_popen(script, ...)
  local parts = { M.python, "-c", M.shell_quote(script) }
  for _, a in ipairs { ... } do parts[#parts + 1] = M.shell_quote(a) end
  return assert(io.popen(table.concat(parts, " "), "r"))
end

-- Runs python3 -c script to completion; returns its stdout and whether it succeeded.
function M.python_output(script, ...)
  local p = M.python_popen(script, ...)
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

function M.unhex(s)
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- close(2) of a raw fd number in this process, as Python's os.close does; Lua
-- has no such call, so a tiny C module is compiled on first use.  Returns the
-- function, or nil and a reason when no C compiler is usable.
local closefd, closefd_err
function M.closefd_function()
  if closefd or closefd_err then return closefd, closefd_err end
  local dir = M.tmppath(".closefd")
  assert(os.execute("mkdir -p " .. M.shell_quote(dir)))
  local src, lib = dir .. "/closefd.c", dir .. "/closefd.so"
  M.write_file(src, [[
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
static int l_closefd(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    if (close(fd) != 0) {
        int err = errno;
        lua_pushnil(L);
        lua_pushstring(L, strerror(err));
        lua_pushinteger(L, err);
        return 3;
    }
    lua_pushboolean(L, 1);
    return 1;
}
int luaopen_closefd(lua_State *L)
{
    lua_pushcfunction(L, l_closefd);
    return 1;
}
]])
  local inc = os.getenv("LUA_INC") or "/usr/include/lua5.4"
  local cmd = ("%s -shared -fPIC -I%s -o %s %s 2>/dev/null"):format(
    os.getenv("CC") or "cc", M.shell_quote(inc), M.shell_quote(lib), M.shell_quote(src))
  if os.execute(cmd) then
    local loader, err = package.loadlib(lib, "luaopen_closefd")
    if loader then closefd = loader() else closefd_err = err end
  else
    closefd_err = "cannot compile a C helper (" .. cmd .. ")"
  end
  -- The loaded library stays mapped; its files can go.
  os.remove(src)
  os.remove(lib)
  os.remove(dir)
  return closefd, closefd_err
end

-- Whether fd is open in this process (Linux /proc), or nil when that cannot be told.
function M.fd_is_open(fd)
  local stat = io.open("/proc/self/stat")
  if not stat then return nil end
  local pid = stat:read("l"):match("^(%d+)")
  stat:close()
  -- test -L: the entry itself, whatever it points at (a file, a pipe, a socket)
  return os.execute(("test -L /proc/%s/fd/%d"):format(pid, fd)) == true
end

-- Waits for pred(): at most 200 tries, each after step() or a 0.05 s pause.
-- Returns whether pred() came true.
function M.wait_until(pred, step)
  for _ = 1, 200 do
    if pred() then return true end
    if step then step() else M.pause(0.05) end
  end
  return pred() and true or false
end

-- A fresh directory from mktemp -d (run without the ASan preload).
function M.make_tmpdir()
  local p = assert(io.popen("env -u LD_PRELOAD mktemp -d"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  return dir
end

-- The contents of path, or "" when it cannot be read (not yet written).
-- The read can fail after the open succeeds: /proc/PID files of a process
-- reaped in between give ESRCH, and f:read then returns nil.
function M.read_file_or_empty(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local data = f:read("a")
  f:close()
  return data or ""
end

return M
