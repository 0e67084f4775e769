-- The documentation's code, run: every fenced code block in every docs/*.md
-- is run (or checked as the output of a block that is run), so the docs never
-- go stale.  A block that is not run is a failure.
--
-- Blocks (the language tag is the first word after the opening ```):
--
--   ```lua      a whole Lua 5.4 program.  Written to example.lua in a fresh
--               temporary directory (the cwd) and run there with lua5.4 under
--               `timeout 20`, LUA_PATH and LUA_CPATH set from this spec's
--               package.path and package.cpath (the checkout's modules; under
--               make asan, the instrumented core).  It must exit 0 with
--               nothing on stderr.
--   ```python   a whole Python 3 program (docs/python.md), run the same way
--               with `python3 -u -W ignore` (no DeprecationWarning for
--               asyncore on stderr).
--   ```output   directly after a program (only blank lines between): the
--               program's stdout must equal it.  One trailing newline is
--               ignored on each side.
--   ```stderr   directly after a program marked `stderr` (or after its output
--               block): the program's stderr must equal it; a line that is
--               just `...` matches any number of lines (for tracebacks).
--   ```sh       a client of the server above it (see `server`), run with sh;
--               nothing else.  May be marked `stderr`.
--
-- Any other tag, or none, fails ("every fenced block is tagged ...").
--
-- Directives: HTML comments, each on its own line, just before the block
-- they apply to (only blank lines between; several may be given, in one
-- comment separated by commas or in several comments):
--
--   <!-- doc: continues -->  the program is the previous block of the same
--                            language in this file (with its own chain of
--                            continues), a newline, then this block.  Server
--                            and client blocks are never continued: the block
--                            before them is (so each step of a tutorial can
--                            end with the same lines that start its server).
--   <!-- doc: fragment -->   not run alone: only as part of the blocks that
--                            continue it.  A fragment nothing continues fails.
--   <!-- doc: stderr -->     the program may write to stderr.
--   <!-- doc: server -->     the program is a server.  It runs in the
--                            background (Lua's stdout line-buffered), and its
--                            first line of stdout must end in `port N`, e.g.
--                            `listening on 127.0.0.1 port 41234` (bind to
--                            port 0 and print what getsockname() says).  The
--                            ```sh blocks and `client` blocks that follow it
--                            are run against it, one after the other, each
--                            with PORT=N in its environment (a Lua client also
--                            gets N as arg[1]) and under `timeout 20`; each
--                            must exit 0 with an empty stderr, and its
--                            ```output block, if any, must match.  The server
--                            must still be running after the last client; it
--                            is then stopped, and its stderr must be empty
--                            unless it is marked `stderr`.  Server blocks
--                            directly after one another (say a Python server
--                            and its Lua twin) each serve the same clients.
--   <!-- doc: client -->     a Lua or Python client of the server above it.
--
-- A ```python block directly followed by a ```lua block (a side-by-side pair)
-- with no output block of its own must print the output block that follows
-- the Lua block too.
--
-- Shell and Python children run without LD_PRELOAD (the ASan runtime make asan
-- preloads into this process); Lua children keep it, since they load the
-- instrumented core.  Every wait is bounded.  Each test's name starts with
-- "docs/FILE.md:LINE", the line of the block's opening fence.  DOCS_DIR=dir
-- runs the same checks on the pages of another directory.
local LUA = os.getenv("LUA") or "lua5.4"
local PYTHON = os.getenv("PYTHON") or "python3"
local CHILD_TIMEOUT = 20      -- seconds for each program and each client
local SERVER_TIMEOUT = 300    -- the most a server may live (it is stopped long before)
local SERVER_START = 10       -- seconds a server has to announce its port

local KNOWN_TAGS = { lua = true, python = true, output = true, stderr = true, sh = true }
local PROGRAM_TAGS = { lua = true, python = true }
local DIRECTIVES = { continues = true, fragment = true, stderr = true, server = true, client = true }

------------------------------------------------------------------------------
-- helpers
------------------------------------------------------------------------------

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  assert(f:close())
end

local function sleep(seconds)
  os.execute("sleep " .. seconds)
end

local function make_tmpdir()
  local p = assert(io.popen("env -u LD_PRELOAD mktemp -d"))
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  return dir
end

local function remove_dir(dir)
  if dir and dir:match("/tmp%.%w+$") then os.execute("rm -rf " .. quote(dir)) end
end

-- The docs directory, beside the spec directory this file is in.
local function docs_dir()
  local source = debug.getinfo(1, "S").source:gsub("^@", "")
  local here = source:match("^(.*)/[^/]*$") or "."
  return here .. "/../docs"
end

local function list_docs(dir)
  local p = assert(io.popen("env -u LD_PRELOAD ls " .. quote(dir)))
  local files = {}
  for name in p:lines() do
    if name:match("%.md$") then files[#files + 1] = name end
  end
  p:close()
  table.sort(files)
  return files
end

-- Drops one trailing newline.
local function chomp(s)
  return (s:gsub("\n$", ""))
end

local function lines_of(s)
  local t = {}
  for line in (s .. "\n"):gmatch("(.-)\n") do t[#t + 1] = line end
  return t
end

-- Whether actual matches expected, where an expected line "..." stands for
-- any number of lines.
local function matches_with_ellipsis(expected, actual)
  expected, actual = chomp(expected), chomp(actual)
  if not ("\n" .. expected .. "\n"):find("\n...\n", 1, true) then return expected == actual end
  local segments, current = {}, {}
  for _, line in ipairs(lines_of(expected)) do
    if line == "..." then
      segments[#segments + 1] = table.concat(current, "\n")
      current = {}
    else
      current[#current + 1] = line
    end
  end
  segments[#segments + 1] = table.concat(current, "\n")
  local first, last = segments[1], segments[#segments]
  if actual:sub(1, #first) ~= first then return false end
  local pos = #first + 1
  for i = 2, #segments - 1 do
    local s, e = actual:find(segments[i], pos, true)
    if not s then return false end
    pos = e + 1
  end
  return #actual - #last + 1 >= pos and actual:sub(-#last) == last or last == ""
end

------------------------------------------------------------------------------
-- parsing a page into blocks
------------------------------------------------------------------------------

-- parse(text, name) -> blocks, problems.  A block: {file, line, tag, info,
-- code, directives (set), adjacent (only blank lines and directives since
-- the previous block)}.  Problems are strings "FILE:LINE: ...".
local function parse(text, name)
  local lines = lines_of(text)
  local blocks, problems = {}, {}
  local pending, pending_line = {}, nil
  local adjacent = false -- no text since the previous block
  local i = 1
  local function problem(line, msg) problems[#problems + 1] = ("%s:%d: %s"):format(name, line, msg) end
  while i <= #lines do
    local line = lines[i]
    local indent, fence, info = line:match("^(%s*)(```+)(.*)$")
    if not fence and line:match("^%s*~~~") then
      problem(i, "a ~~~ fence: use ``` fences")
    end
    if fence then
      info = info:match("^%s*(.-)%s*$")
      local body, j = {}, i + 1
      local closing = "^%s*" .. ("`"):rep(#fence) .. "`*%s*$"
      while j <= #lines and not lines[j]:match(closing) do
        local l = lines[j]
        if l:sub(1, #indent) == indent then l = l:sub(#indent + 1) else l = l:gsub("^%s+", "") end
        body[#body + 1] = l
        j = j + 1
      end
      if j > #lines then problem(i, "a code block that is never closed") end
      local code = table.concat(body, "\n")
      if #body > 0 then code = code .. "\n" end
      blocks[#blocks + 1] = {
        file = name, line = i, info = info, tag = info:match("^(%S*)"), code = code,
        directives = pending, adjacent = adjacent and #blocks > 0,
      }
      pending, pending_line = {}, nil
      adjacent = true
      i = j + 1
    else
      local d = line:match("^%s*<!%-%-%s*doc:%s*(.-)%s*%-%->%s*$")
      if d then
        for word in d:gmatch("[^,%s]+") do
          if not DIRECTIVES[word] then problem(i, "unknown directive '" .. word .. "'") end
          pending[word] = true
        end
        pending_line = pending_line or i
      elseif line:match("%S") then
        if pending_line then
          problem(pending_line, "a doc directive that is not followed by a code block")
          pending, pending_line = {}, nil
        end
        adjacent = false
      end
      i = i + 1
    end
  end
  if pending_line then problem(pending_line, "a doc directive at the end of the page") end
  return blocks, problems
end

-- plan(blocks, name) -> units, problems.  Gives each block its role: a
-- program (run alone unless a fragment), a server (with its clients), a
-- client, the output/stderr of the block before it.  Units are what the
-- tests run: {kind = "program" | "server", block = b, ...}.
local function plan(blocks, name)
  local problems = {}
  local function problem(b, msg) problems[#problems + 1] = ("%s:%d: %s"):format(name, b.line, msg) end

  local last_program = {}   -- tag -> the block `continues` joins
  local owner               -- the block an adjacent output/stderr block belongs to
  local group               -- the current server group: {servers = {}, clients = {}}
  local groups = {}
  local prev

  for _, b in ipairs(blocks) do
    local d = b.directives
    local tag = b.tag
    if not KNOWN_TAGS[tag] then
      -- reported by the tag test; such a block is never run
      owner = nil
    elseif tag == "output" or tag == "stderr" then
      if next(d) then problem(b, "doc directives apply to lua, python and sh blocks, not " .. tag) end
      if not (b.adjacent and owner) then
        problem(b, "an ```" .. tag .. " block that does not directly follow a program")
      elseif owner.fragment then
        problem(b, "an ```" .. tag .. " block after a fragment, which is never run alone")
      elseif owner.server then
        problem(b, "an ```" .. tag .. " block after a server: show a client's output instead")
      else
        local field = tag == "output" and "expect_out" or "expect_err"
        if owner[field] then
          problem(b, "a second ```" .. tag .. " block for the program at line " .. owner.line)
        elseif tag == "stderr" and not owner.allow_stderr then
          problem(b, "an ```stderr block after a program not marked <!-- doc: stderr -->")
        else
          owner[field] = b.code
          b.checked = true
        end
      end
    elseif tag == "sh" then
      for k in pairs(d) do
        if k ~= "stderr" then problem(b, "the directive '" .. k .. "' does not apply to sh blocks") end
      end
      b.allow_stderr = d.stderr
      if group then
        group.clients[#group.clients + 1] = b
        b.client, b.checked = true, true
      else
        problem(b, "an ```sh block that follows no <!-- doc: server --> block: it would never run")
      end
      owner = b
    else -- lua, python
      b.fragment, b.server, b.client, b.allow_stderr = d.fragment, d.server, d.client, d.stderr
      if b.fragment and (b.server or b.client) then
        problem(b, "a fragment cannot be a server or a client")
      end
      if b.server and b.client then problem(b, "a block cannot be both a server and a client") end
      if d.continues then
        b.parent = last_program[tag]
        if b.parent then
          b.parent.continued = true
        else
          problem(b, "<!-- doc: continues --> with no earlier ```" .. tag .. " block in the page")
        end
      end
      if b.server then
        if group and prev and prev.server and b.adjacent then
          group.servers[#group.servers + 1] = b
        else
          group = { servers = { b }, clients = {} }
          groups[#groups + 1] = group
        end
        b.checked = true
      elseif b.client then
        if group and #group.clients + #group.servers > 0 then
          group.clients[#group.clients + 1] = b
          b.checked = true
        else
          problem(b, "a client that follows no <!-- doc: server --> block")
        end
      else
        group = nil
        if not b.fragment then b.checked = true end
        -- a side-by-side pair: python, then lua directly after it
        if tag == "lua" and prev and prev.tag == "python" and b.adjacent and not prev.server
          and not prev.client and not prev.fragment then
          b.pair = prev
        end
      end
      if not (b.server or b.client) then last_program[tag] = b end
      owner = b
    end
    prev = b
  end

  local units = {}
  for _, b in ipairs(blocks) do
    if PROGRAM_TAGS[b.tag] then
      if b.fragment then
        if b.continued then b.checked = true else
          problem(b, "a fragment that no block continues: it is never run")
        end
      elseif not (b.server or b.client) then
        units[#units + 1] = { kind = "program", block = b }
        -- the Python half of a pair must print the Lua half's output
        if b.pair and not b.pair.expect_out and b.expect_out then
          b.pair.expect_out, b.pair.expect_from = b.expect_out, b.line
        end
      end
    end
  end
  for _, g in ipairs(groups) do
    if #g.clients == 0 then
      problem(g.servers[1], "a server with no ```sh or client block after it")
    end
    for _, s in ipairs(g.servers) do
      units[#units + 1] = { kind = "server", block = s, clients = g.clients }
    end
  end
  table.sort(units, function(a, b) return a.block.line < b.block.line end)
  return units, problems
end

------------------------------------------------------------------------------
-- running
------------------------------------------------------------------------------

-- The program of a block: its chain of continues, then the block.
local function program_of(b)
  local parts, n = {}, b
  while n do
    table.insert(parts, 1, n.code)
    n = n.parent
  end
  return table.concat(parts, "\n")
end

local EXT = { lua = "lua", python = "py", sh = "sh" }

-- The shell command that runs the file `example.<ext>` in the cwd.
local function command_for(tag, port, server)
  local env_port = port and ("PORT=" .. port .. " ") or ""
  if tag == "lua" then
    local pre = server and " -e \"io.stdout:setvbuf('line')\"" or ""
    return ("env -u LUA_INIT -u LUA_INIT_5_4 LUA_PATH=%s LUA_CPATH=%s %stimeout %d %s%s example.lua%s")
      :format(quote(package.path), quote(package.cpath), env_port,
              server and SERVER_TIMEOUT or CHILD_TIMEOUT, LUA, pre, port and (" " .. port) or "")
  elseif tag == "python" then
    return ("env -u LD_PRELOAD %stimeout %d %s -u -W ignore example.py%s")
      :format(env_port, server and SERVER_TIMEOUT or CHILD_TIMEOUT, PYTHON, port and (" " .. port) or "")
  else
    return ("env -u LD_PRELOAD %stimeout %d sh example.sh"):format(env_port, CHILD_TIMEOUT)
  end
end

-- Runs a program (or sh client) to completion in a fresh directory:
-- {status, out, err}.
local function run_block(tag, code, port)
  local dir = make_tmpdir()
  write_file(dir .. "/example." .. EXT[tag], code)
  local cmd = ("cd %s && %s >stdout 2>stderr </dev/null"):format(quote(dir), command_for(tag, port))
  local _, _, status = os.execute(cmd)
  local result = { status = status, out = read_file(dir .. "/stdout") or "", err = read_file(dir .. "/stderr") or "" }
  remove_dir(dir)
  return result
end

local function describe_failure(where, what, result, expected)
  local parts = { ("%s: %s"):format(where, what) }
  if result.status == 124 then
    parts[#parts + 1] = ("(killed by `timeout %d`: the program did not end)"):format(CHILD_TIMEOUT)
  end
  if expected then parts[#parts + 1] = "expected:\n" .. expected end
  parts[#parts + 1] = "stdout:\n" .. result.out
  parts[#parts + 1] = "stderr:\n" .. result.err
  return table.concat(parts, "\n")
end

-- Checks one finished run against the block b's expectations: nil, or a
-- message that points at the doc.
local function check_result(b, result, where)
  if result.status ~= 0 then
    return describe_failure(where, "exit status " .. tostring(result.status) .. ", expected 0", result)
  end
  if not b.allow_stderr and result.err ~= "" then
    return describe_failure(where, "wrote to stderr (mark the block <!-- doc: stderr --> if that is meant)", result)
  end
  if b.expect_out and chomp(b.expect_out) ~= chomp(result.out) then
    local from = b.expect_from and (" (the output shown after the Lua block at line " .. b.expect_from .. ")") or ""
    return describe_failure(where, "stdout differs from the ```output block" .. from, result, b.expect_out)
  end
  if b.expect_err and not matches_with_ellipsis(b.expect_err, result.err) then
    return describe_failure(where, "stderr differs from the ```stderr block", result, b.expect_err)
  end
  return nil
end

-- A server in the background: {dir, pid (of its timeout, a process group
-- leader), port}.  Raises when it does not announce a port in time.
local function start_server(b, where)
  local dir = make_tmpdir()
  write_file(dir .. "/example." .. EXT[b.tag], program_of(b))
  os.execute(("cd %s && ( %s >stdout 2>stderr </dev/null & echo $! >pid; wait $!; echo $? >rc ) >/dev/null 2>&1 &")
    :format(quote(dir), command_for(b.tag, nil, true)))
  local server = { dir = dir }
  for _ = 1, SERVER_START * 20 do
    server.pid = server.pid or math.tointeger(tonumber(read_file(dir .. "/pid") or ""))
    local out = read_file(dir .. "/stdout") or ""
    local first = out:match("^([^\n]*)\n")
    if first then
      server.port = math.tointeger(tonumber(first:match("port (%d+)%s*$")))
      if not server.port then
        server.failure = ("%s: the server's first line of stdout does not end in 'port N': %q"):format(where, first)
      end
      return server
    end
    if read_file(dir .. "/rc") then
      server.failure = ("%s: the server exited (status %s) before it announced its port\nstdout:\n%s\nstderr:\n%s")
        :format(where, chomp(read_file(dir .. "/rc")), out, read_file(dir .. "/stderr") or "")
      return server
    end
    sleep(0.05)
  end
  server.failure = ("%s: the server did not print its port within %d s\nstderr:\n%s")
    :format(where, SERVER_START, read_file(server.dir .. "/stderr") or "")
  return server
end

-- Stops a server; returns whether it was still running, and its stderr.
local function stop_server(server)
  local pid = server.pid or math.tointeger(tonumber(read_file(server.dir .. "/pid") or ""))
  local running = read_file(server.dir .. "/rc") == nil
  if pid and running then
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    for _ = 1, 100 do
      if read_file(server.dir .. "/rc") then break end
      sleep(0.05)
    end
    if not read_file(server.dir .. "/rc") then
      os.execute("kill -KILL -- -" .. pid .. " 2>/dev/null")
    end
  end
  local status = read_file(server.dir .. "/rc")
  local err = read_file(server.dir .. "/stderr") or ""
  remove_dir(server.dir)
  return running, err, status and chomp(status)
end

local function run_program_unit(unit)
  local b = unit.block
  local failure = check_result(b, run_block(b.tag, program_of(b)), ("%s:%d"):format(b.file, b.line))
  if failure then error(failure, 0) end
end

-- Runs the clients against a started server: nil, or what went wrong.
local function run_clients(server, unit, where)
  if server.failure then return server.failure end
  for _, c in ipairs(unit.clients) do
    local code = c.tag == "sh" and c.code or program_of(c)
    local result = run_block(c.tag, code, server.port)
    local failure = check_result(c, result, ("%s:%d"):format(c.file, c.line))
    if failure then
      return failure .. ("\n(a client of the server at %s)"):format(where)
    end
    if read_file(server.dir .. "/rc") then
      return ("%s: the server exited during the client at line %d\nstderr:\n%s")
        :format(where, c.line, read_file(server.dir .. "/stderr") or "")
    end
  end
  return nil
end

local function run_server_unit(unit)
  local b = unit.block
  local where = ("%s:%d"):format(b.file, b.line)
  local server = start_server(b, where)
  local failure = run_clients(server, unit, where)
  local running, server_err, status = stop_server(server)
  if failure then error(failure, 0) end
  if not running then
    error(("%s: the server had exited (status %s) before it was stopped\nstderr:\n%s")
      :format(where, tostring(status), server_err), 0)
  end
  if not b.allow_stderr and server_err ~= "" then
    error(("%s: the server wrote to stderr (mark it <!-- doc: stderr --> if that is meant):\n%s")
      :format(where, server_err), 0)
  end
end

local function unit_name(unit)
  local b = unit.block
  local name = ("%s:%d %s"):format(b.file, b.line, b.tag)
  if b.parent then
    local chain, n = {}, b.parent
    while n do
      table.insert(chain, 1, tostring(n.line))
      n = n.parent
    end
    name = name .. " (continues " .. table.concat(chain, ", ") .. ")"
  end
  if unit.kind == "server" then
    local lines = {}
    for _, c in ipairs(unit.clients) do lines[#lines + 1] = c.line end
    name = name .. " server, clients at " .. table.concat(lines, ", ")
  elseif b.pair and b.expect_out then
    name = name .. " (same output as the python block at " .. b.pair.line .. ")"
  elseif b.expect_from then
    name = name .. " (prints the output shown after the lua block at " .. b.expect_from .. ")"
  end
  return name
end

------------------------------------------------------------------------------
-- the tests
------------------------------------------------------------------------------

local DOCS = os.getenv("DOCS_DIR") or docs_dir()  -- DOCS_DIR: try the runner on other pages
local files = list_docs(DOCS)

do
  it("docs/: the pages exist: README.md, reference.md, tutorial.md, python.md", function()
    local have = {}
    for _, f in ipairs(files) do have[f] = true end
    for _, f in ipairs { "README.md", "reference.md", "tutorial.md", "python.md" } do
      assert.is_true(have[f] == true, "docs/" .. f .. " is missing")
    end
  end)

  it("docs/: the doc-test runner itself: parsing, roles of blocks, ellipsis matching", function()
    assert.is_true(matches_with_ellipsis("a\n...\nz\n", "a\nb\nc\nz"))
    assert.is_true(matches_with_ellipsis("a\n...\n", "a\nb\n"))
    assert.is_false(matches_with_ellipsis("a\n...\nz\n", "b\nz\n"))
    assert.is_false(matches_with_ellipsis("a\n", "a\nb\n"))
    local page = table.concat({
      "<!-- doc: fragment -->", "```lua", "x = 1", "```", "",
      "<!-- doc: continues -->", "```lua", "print(x)", "```", "```output", "1", "```",
      "<!-- doc: server -->", "```lua", "serve()", "```", "```sh", "nc", "```", "",
      "```output", "hi", "```", "text", "```output", "orphan", "```",
      "```", "untagged", "```", "<!-- doc: fragment -->", "```lua", "y = 1", "```",
    }, "\n")
    local blocks, problems = parse(page, "t.md")
    assert.are.equal(9, #blocks)
    assert.are.equal(0, #problems)
    local units, plan_problems = plan(blocks, "t.md")
    assert.are.equal(2, #units)
    assert.are.equal("program", units[1].kind)
    assert.are.equal("x = 1\n\nprint(x)\n", program_of(units[1].block))
    assert.are.equal("1\n", units[1].block.expect_out)
    assert.are.equal("server", units[2].kind)
    assert.are.equal("hi\n", units[2].clients[1].expect_out)
    local text = table.concat(plan_problems, "\n")
    assert.is_truthy(text:find("t.md:25: an ```output block that does not directly follow", 1, true), text)
    assert.is_truthy(text:find("t.md:32: a fragment that no block continues", 1, true), text)
    assert.are.equal(2, #plan_problems)
  end)

  for _, file in ipairs(files) do
    local name = "docs/" .. file
    local text = read_file(DOCS .. "/" .. file) or ""
    local blocks, parse_problems = parse(text, name)
    local units, plan_problems = plan(blocks, name)

    do
      it(name .. ": every fenced block is tagged lua, python, output, stderr or sh", function()
        local bad = {}
        for _, b in ipairs(blocks) do
          if not KNOWN_TAGS[b.tag] then
            bad[#bad + 1] = ("%s:%d: a code block tagged %s"):format(name, b.line,
              b.tag == "" and "with nothing" or ("'" .. b.info .. "'"))
          end
        end
        if #bad > 0 then error(table.concat(bad, "\n"), 0) end
      end)

      it(name .. ": every fenced block is run (directives well formed, no orphan output)", function()
        local all = {}
        for _, p in ipairs(parse_problems) do all[#all + 1] = p end
        for _, p in ipairs(plan_problems) do all[#all + 1] = p end
        for _, b in ipairs(blocks) do
          if KNOWN_TAGS[b.tag] and not b.checked and not b.fragment then
            local dup = false
            for _, p in ipairs(all) do
              if p:find(("%s:%d:"):format(name, b.line), 1, true) == 1 then dup = true end
            end
            if not dup then all[#all + 1] = ("%s:%d: a block that is never run"):format(name, b.line) end
          end
        end
        if #all > 0 then error(table.concat(all, "\n"), 0) end
      end)

      for _, unit in ipairs(units) do
        it(unit_name(unit), function()
          if unit.kind == "server" then run_server_unit(unit) else run_program_unit(unit) end
        end)
      end
    end
  end
end
