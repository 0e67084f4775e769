-- examples/prefork_server.lua as users meet it: the parent in a lua5.4 child
-- process with 4 workers sharing one SO_REUSEPORT port, this process its
-- client (asyncore itself), and /proc to see the worker processes come and go.
-- Linux only (SO_REUSEPORT spreading, /proc).  Run from the checkout root.
local asyncore = require "asyncore"
local asynchat = require "asynchat"
local support = require "support"

local async_chat = asynchat.async_chat
local quote = support.shell_quote

-- The server finds the modules (and, under make asan, the instrumented core)
-- where this process does; its workers inherit that.
local LUA = ("env LUA_PATH=%s LUA_CPATH=%s lua5.4"):format(quote(package.path), quote(package.cpath))

local wait_until = support.wait_until

local read_file = support.read_file_or_empty

local function command_output(command)
  local p = assert(io.popen("env -u LD_PRELOAD " .. command))
  local out = p:read("a")
  p:close()
  return out
end

-- /proc/PID/stat: state and parent pid, or nil when there is no such process.
local function proc_stat(pid)
  local state, ppid = read_file("/proc/" .. pid .. "/stat"):match("^%d+ %(.-%) (%S) (%d+)")
  return state, math.tointeger(tonumber(ppid))
end

local function cmdline(pid)
  local args = {}
  for a in read_file("/proc/" .. pid .. "/cmdline"):gmatch("([^%z]*)%z") do args[#args + 1] = a end
  return args
end

-- Whether pid is a live (not zombie) process running the example.
local function running(pid)
  local state = proc_stat(pid)
  if state == nil or state == "Z" then return false end
  for _, a in ipairs(cmdline(pid)) do
    if a:find("prefork_server.lua", 1, true) then return true end
  end
  return false
end

-- Live processes whose command line is "... --worker I HOST PORT ...": the
-- workers serving port, found without trusting what the example prints.
local function workers_on(port)
  local found = {}
  for name in command_output("ls /proc"):gmatch("%d+") do
    local args = cmdline(name)
    for i, a in ipairs(args) do
      if a == "--worker" and args[i + 3] == tostring(port) and running(name) then
        found[#found + 1] = math.tointeger(tonumber(name))
      end
    end
  end
  table.sort(found)
  return found
end

-- Whether pid is a process that has not exited (a zombie has).
local function alive(pid)
  local state = proc_stat(pid)
  return state ~= nil and state ~= "Z"
end

local function kill(signal, pid)
  os.execute(("env -u LD_PRELOAD kill -%s %d 2>/dev/null"):format(signal, pid))
end

------------------------------------------------------------------------------
-- the server child: output to a file, so that every wait for it is bounded
------------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local function start_server(workers)
  local out = command_output("mktemp")
  local self = setmetatable({ path = assert(out:match("%S+"), "mktemp failed") }, Server)
  -- timeout: if everything else fails, the whole group (timeout puts itself,
  -- the parent and the workers in one) ends within a minute.
  self.pipe = assert(io.popen(("echo $$; exec timeout 60 %s examples/prefork_server.lua 127.0.0.1 0 %d > %s 2>&1")
    :format(LUA, workers, quote(self.path)), "r"))
  self.timeout_pid = math.tointeger(tonumber(self.pipe:read("l")))
  local pattern = "prefork server listening on 127%.0%.0%.1 port (%d+) with (%d+) workers %(pids ([%d ]+)%)\n"
  local port, count, pids
  wait_until(function()
    port, count, pids = self:output():match(pattern)
    return port ~= nil or not alive(self.timeout_pid)
  end)
  if port == nil then
    local output = self:output()
    self:stop()
    error("prefork_server.lua did not start; it wrote:\n" .. output, 2)
  end
  self.port, self.count = math.tointeger(tonumber(port)), math.tointeger(tonumber(count))
  self.pids = {}
  for pid in pids:gmatch("%d+") do self.pids[#self.pids + 1] = math.tointeger(tonumber(pid)) end
  -- The parent Lua process: not timeout_pid (timeout forks), but the
  -- workers' parent.
  local _, ppid = proc_stat(self.pids[1])
  self.parent_pid = ppid
  return self
end

function Server:output()
  return read_file(self.path)
end

function Server:has_line(line)
  return ("\n" .. self:output()):find("\n" .. line .. "\n", 1, true) ~= nil
end

-- Ends everything that is left, even after a failed test: timeout passes a
-- TERM on to its whole group; the pids are checked before each kill, so a
-- reused pid is never hit.  Closing the pipe reaps timeout.
function Server:stop()
  if self.pipe == nil then return end
  kill("TERM", self.timeout_pid)
  local pids = { table.unpack(self.pids or {}) }
  pids[#pids + 1] = self.parent_pid
  for _, pid in ipairs(pids) do
    if running(pid) then kill("KILL", pid) end
  end
  self.pipe:close()
  self.pipe = nil
  os.remove(self.path)
end

------------------------------------------------------------------------------
-- the client: async_chat connections from this process
------------------------------------------------------------------------------

-- Opens `total` connections to port, at most `parallel` at a time; each reads
-- the greeting, sends "ping K" and reads the answer.  Returns, for K = 1 to
-- total, the lines that connection K received (all of them, if it was cut).
local function ping(port, total, parallel)
  local map, results, started, finished = {}, {}, 0, 0
  local Client = async_chat:subclass {
    init = function(self, k)
      async_chat.init(self, nil, map)
      self.k, self.lines = k, {}
      self:set_terminator("\r\n")
      self:create_socket()
      self:connect("127.0.0.1", port)
    end,
    collect_incoming_data = async_chat._collect_incoming_data,
    found_terminator = function(self)
      self.lines[#self.lines + 1] = self:_get_data()
      if #self.lines == 1 then
        self:push(("ping %d\n"):format(self.k))
      else
        self:handle_close()
      end
    end,
    handle_error = function(self, err)
      self.lines[#self.lines + 1] = "error: " .. tostring(err)
      self:handle_close()
    end,
    handle_close = function(self)
      if results[self.k] == nil then
        results[self.k] = self.lines
        finished = finished + 1
      end
      self:close()
    end,
  }
  local ok = pcall(function()
    for _ = 1, 4000 do
      while started < total and started - finished < parallel do
        started = started + 1
        Client(started)
      end
      if finished == total then return end
      asyncore.loop { timeout = 0.05, map = map, count = 1 }
    end
  end)
  asyncore.close_all(map, true)
  assert(ok)
  return results
end

------------------------------------------------------------------------------

describe("examples/prefork_server.lua", function()
  local server

  after_each(function()
    if server then server:stop() end
    server = nil
  end)

  it("spreads connections over all its workers, each answered by the worker that greeted it", function()
    server = start_server(4)
    assert.are.equal(4, server.count)
    assert.are.equal(4, #server.pids)

    -- SO_REUSEPORT picks a worker by a hash of each connection's 4-tuple; the
    -- chance that a given worker gets none of 200 is (3/4)^200, about 1e-25.
    local total = 200
    local results = ping(server.port, total, 8)
    local served = {}
    for k = 1, total do
      local lines = results[k] or {}
      local index, pid = (lines[1] or ""):match("^hello from worker (%d) %(pid (%d+)%)$")
      index = math.tointeger(tonumber(index))
      assert(index and server.pids[index] == math.tointeger(tonumber(pid)),
        ("connection %d: unexpected greeting, received: %s"):format(k, table.concat(lines, " | ")))
      assert.are.same({ lines[1], ("worker %d: ping %d"):format(index, k) }, lines)
      served[index] = (served[index] or 0) + 1
    end
    local spread = ("connections per worker: %d %d %d %d"):format(
      served[1] or 0, served[2] or 0, served[3] or 0, served[4] or 0)
    for index = 1, 4 do
      assert(served[index] and served[index] > 0, "worker " .. index .. " served nothing; " .. spread)
    end
  end)

  it("ends every worker when the parent is killed, even with SIGKILL", function()
    server = start_server(4)
    -- The workers are what /proc shows: 4 processes, children of the
    -- parent, itself the child of timeout.
    local pids = { table.unpack(server.pids) }
    table.sort(pids)
    assert.are.same(pids, workers_on(server.port))
    for _, pid in ipairs(pids) do
      local _, ppid = proc_stat(pid)
      assert.are.equal(server.parent_pid, ppid)
    end
    local _, grandparent = proc_stat(server.parent_pid)
    assert.are.equal(server.timeout_pid, grandparent)

    -- SIGKILL: the parent cannot clean up, and timeout (whose own child just
    -- died) passes nothing on.  Only the EOF on each worker's stdin is left.
    kill("KILL", server.parent_pid)
    assert(wait_until(function() return #workers_on(server.port) == 0 end),
      "workers still running after the parent was killed: " .. table.concat(workers_on(server.port), " "))
    for _, pid in ipairs(pids) do assert.is_false(running(pid)) end
  end)

  it("stops its workers and exits on Ctrl-C (SIGINT to the parent alone)", function()
    server = start_server(3)
    assert.are.equal(3, #workers_on(server.port))
    kill("INT", server.parent_pid)
    assert(wait_until(function() return not running(server.parent_pid) end), "the parent did not exit")
    assert(wait_until(function() return #workers_on(server.port) == 0 end), "workers still running")
    assert.is_nil(server:output():find("interrupted", 1, true), server:output())
  end)

  it("reports a worker that exits, serves on with the others, and exits after the last", function()
    server = start_server(4)
    local gone = server.pids[2]
    kill("TERM", gone)
    local report = ("prefork server: worker 2 (pid %d) has exited"):format(gone)
    assert(wait_until(function() return server:has_line(report) end), "no report; output:\n" .. server:output())
    assert.are.equal(3, #workers_on(server.port))

    -- Its socket left the group with it: every connection now reaches another.
    local results = ping(server.port, 40, 4)
    for k = 1, 40 do
      local lines = results[k] or {}
      local index = math.tointeger(tonumber((lines[1] or ""):match("^hello from worker (%d) ")))
      assert(index and index ~= 2, ("connection %d received: %s"):format(k, table.concat(lines, " | ")))
      assert.are.equal(("worker %d: ping %d"):format(index, k), lines[2])
    end

    for _, i in ipairs { 1, 3, 4 } do kill("TERM", server.pids[i]) end
    assert(wait_until(function() return not running(server.parent_pid) end),
      "the parent did not exit after its last worker; output:\n" .. server:output())
    assert.is_true(server:has_line("prefork server: every worker has exited"), server:output())
  end)
end)
