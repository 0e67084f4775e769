-- A pre-fork server: several worker processes listen on one port, each with
-- its own SO_REUSEPORT socket, and the kernel spreads the incoming connections
-- over them (Linux picks a socket by a hash of each connection's addresses and
-- ports).  Each worker is an ordinary single-process asyncore server for a
-- small line protocol that says which worker answered:
--
--   on connect        "hello from worker I (pid P)"
--   every line        "worker I: " followed by the line
--
-- Lines may end in "\n" or "\r\n"; the server sends "\r\n".
--
-- As a script:  lua5.4 examples/prefork_server.lua [HOST [PORT [WORKERS]]]
--   (default 127.0.0.1 8080 4; port 0 picks a free one) starts the workers,
--   prints "prefork server listening on HOST port N with W workers (pids ...)"
--   once every worker listens, then serves until interrupted.  However the
--   parent ends (Ctrl-C, kill, kill -9), its workers end too.
-- As a module:  local prefork = require "prefork_server"
--               local server = prefork.WorkerServer(host, port, index [, map])
--   listens with SO_REUSEPORT and serves the protocol above as worker index;
--   prefork.WorkerHandler is the per-connection class.
local script = arg ~= nil and arg[0] ~= nil
  and debug.getinfo(1, "S").source == "@" .. arg[0]

if script then
  -- Run from a checkout: fall back on ../lua and ../build beside this file.
  local here = debug.getinfo(1, "S").source:match("^@(.-)[^/\\]*$")
  if here == "" then here = "./" end
  package.path = package.path .. ";" .. here .. "../lua/?.lua"
  package.cpath = package.cpath .. ";" .. here .. "../build/?.so"
end

local asyncore = require "asyncore"
local asynchat = require "asynchat"
local async_chat = asynchat.async_chat

local MAX_LINE = 4096        -- bytes a line may hold before the client is dropped
local STARTUP_TIMEOUT = 10   -- seconds the parent waits for every worker to listen

-- Lua has no getpid(); on Linux /proc/self is the process that opens it.
local function getpid()
  local f = io.open("/proc/self/stat", "r")
  if f == nil then return nil end
  local pid = f:read("n")
  f:close()
  return math.tointeger(pid)
end

local function family_of(host)
  return host:find(":", 1, true) and asyncore.AF_INET6 or asyncore.AF_INET
end

------------------------------------------------------------------------------
-- a worker: one listening socket among several on the same port
------------------------------------------------------------------------------

local WorkerHandler = async_chat:subclass {
  __name = "WorkerHandler",

  -- WorkerHandler(sock, server [, map])
  init = function(self, sock, server, map)
    async_chat.init(self, sock, map)
    self.server = server
    self.max_in_buffer = MAX_LINE
    self:set_terminator("\n")     -- "\r\n" ends in "\n" too; the "\r" is dropped below
    self:push(("hello from worker %d (pid %s)\r\n"):format(server.index, server.pid))
  end,

  collect_incoming_data = async_chat._collect_incoming_data,

  found_terminator = function(self)
    local line = self:_get_data():gsub("\r$", "")
    self:push(("worker %d: %s\r\n"):format(self.server.index, line))
  end,
}

local WorkerServer = asyncore.dispatcher:subclass {
  __name = "WorkerServer",
  Handler = WorkerHandler,

  -- WorkerServer(host, port, index [, map])
  init = function(self, host, port, index, map)
    asyncore.dispatcher.init(self, nil, map)
    self.map = map
    self.index = index
    self.pid = getpid() or "?"
    self:create_socket(family_of(host))
    self:set_reuse_addr()
    -- Every socket that shares the port must set SO_REUSEPORT before bind
    -- (and belong to the same user), or the bind fails with EADDRINUSE.
    self:set_reuse_port()
    self:bind(host, port)
    self:listen(128)
  end,

  handle_accepted = function(self, sock)
    self.Handler(sock, self, self.map)
  end,
}

-- Worker mode: serves until its stdin, the pipe from the parent, reaches EOF.
local function run_worker(index, host, port, control_port)
  local ok, server = pcall(WorkerServer, host, port, index)
  if not ok then asyncore.close_all() end -- a half-made listener

  -- Tells the parent "ready I PID" once listening, or "failed I MESSAGE"
  -- (then this worker ends).  Nothing comes back on this connection.
  local Report = async_chat:subclass {
    __name = "Report",
    collect_incoming_data = function() end,
    handle_connect = function(self)
      if ok then
        self:push(("ready %d %s\n"):format(index, server.pid))
      else
        self:push(("failed %d %s\n"):format(index, (tostring(server):gsub("\n", " "))))
        self:close_when_done()
      end
    end,
    -- The parent's end closing is no reason to stop: stdin says that.
    handle_close = function(self) self:close() end,
  }
  local report = Report()
  report:create_socket()
  report:set_terminator(nil)
  report:connect("127.0.0.1", control_port)
  if not ok then
    asyncore.loop()
    os.exit(1)
  end

  -- The parent never writes to the pipe; when the parent ends, however it
  -- ends (even killed with SIGKILL), the kernel closes its end and we read
  -- EOF: then every channel closes and loop() returns.
  local ParentWatch = asyncore.file_dispatcher:subclass {
    __name = "ParentWatch",
    writable = function() return false end,
    handle_read = function(self) self:recv(512) end, -- at EOF recv calls handle_close
    handle_close = function() asyncore.close_all() end,
  }
  ParentWatch(io.stdin)

  local done, err = xpcall(asyncore.loop, debug.traceback)
  -- Ctrl-C in a terminal reaches the whole process group; the parent reports it.
  if not done and not tostring(err):find("interrupted!", 1, true) then error(err, 0) end
  os.exit(done and 0 or 130)
end

------------------------------------------------------------------------------
-- the parent: starts the workers, waits until they all listen, watches them
------------------------------------------------------------------------------

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The interpreter running this script: the lowest index of arg.
local function interpreter()
  local i = -1
  while arg[i - 1] ~= nil do i = i - 1 end
  return arg[i] or "lua5.4"
end

local function run_parent(host, port, count)
  io.stdout:setvbuf("line")

  -- With port 0 every worker's bind would pick a port of its own, so the
  -- parent picks it: a bound SO_REUSEPORT socket that never listens gets no
  -- connections, but holds the port until the workers listen on it (and
  -- makes a port that is already taken fail here, at once).  Its map is
  -- never polled: an idle socket that is not listening may report a hangup.
  local reserve = asyncore.dispatcher(nil, {})
  local reserved, why = pcall(function()
    reserve:create_socket(family_of(host))
    reserve:set_reuse_addr()
    reserve:set_reuse_port()
    reserve:bind(host, port)
  end)
  if not reserved then -- a port in use, a bad host: one line, not a traceback
    io.stderr:write("prefork server: ", tostring(why), "\n")
    os.exit(1)
  end
  host, port = reserve:getsockname()

  -- How the parent learns that a worker listens: the worker's stdout is the
  -- parent's own (io.popen can give the parent only one end of one pipe,
  -- here the worker's stdin), so each worker connects back to this
  -- listener and says "ready I PID".  The line below is printed only when
  -- all have, so from then on a client is never refused.  The connection
  -- stays open: its EOF tells the parent that the worker has exited.
  local workers, ready, failure = {}, 0, nil
  local timer
  local control = asyncore.dispatcher()
  control:create_socket()
  control:bind("127.0.0.1", 0)
  control:listen(count)
  local _, control_port = control:getsockname()

  local function stop(message)
    failure = failure or message
    if timer then timer:cancel() end
    reserve:close()
    asyncore.close_all()
  end

  local function all_ready()
    timer:cancel()
    control:close()
    reserve:close()
    local pids = {}
    for i, w in ipairs(workers) do pids[i] = w.pid end
    print(("prefork server listening on %s port %d with %d workers (pids %s)")
      :format(host, port, count, table.concat(pids, " ")))
  end

  local Report = async_chat:subclass {
    __name = "Report",
    init = function(self, sock)
      async_chat.init(self, sock)
      self:set_terminator("\n")
    end,
    collect_incoming_data = async_chat._collect_incoming_data,
    found_terminator = function(self)
      local kind, i, rest = self:_get_data():match("^(%a+) (%d+) (.*)$")
      local w = workers[math.tointeger(tonumber(i))]
      if w == nil or w.pid ~= nil then return end -- not from a worker of ours
      if kind == "ready" then
        w.pid, self.worker = rest, w
        ready = ready + 1
        if ready == count then all_ready() end
      elseif kind == "failed" then
        stop(("worker %s: %s"):format(i, rest))
      end
    end,
    handle_close = function(self)
      self:close()
      local w = self.worker
      if w then
        io.stderr:write(("prefork server: worker %d (pid %s) has exited\n"):format(w.index, w.pid))
      end
    end,
  }
  control.handle_accepted = function(_, sock) Report(sock) end

  timer = asyncore.call_later(STARTUP_TIMEOUT, function()
    stop(("only %d of %d workers listened within %d seconds"):format(ready, count, STARTUP_TIMEOUT))
  end)
  -- Lua has no fork(): each worker runs this script again, with the module
  -- paths this process found asyncore by.
  local lua, script_path = interpreter(), arg[0]
  for i = 1, count do
    local command = ("LUA_PATH=%s LUA_CPATH=%s exec %s %s --worker %d %s %d %d"):format(
      shell_quote(package.path), shell_quote(package.cpath), shell_quote(lua),
      shell_quote(script_path), i, shell_quote(host), port, control_port)
    local pipe, message = io.popen(command, "w")
    if pipe == nil then
      stop("cannot start a worker: " .. tostring(message))
      break
    end
    workers[i] = { index = i, pipe = pipe }
  end

  -- Runs until every worker has exited, a worker failed to start, or Ctrl-C.
  local done, err = xpcall(asyncore.loop, debug.traceback)
  -- Closing a pipe is the EOF that stops its worker; close() then waits for it.
  asyncore.close_all()
  for _, w in ipairs(workers) do w.pipe:close() end
  if not done then
    if tostring(err):find("interrupted!", 1, true) then os.exit(130) end
    error(err, 0)
  end
  io.stderr:write("prefork server: ", failure or "every worker has exited", "\n")
  os.exit(1)
end

if script then
  if arg[1] == "--worker" then
    run_worker(math.tointeger(tonumber(arg[2])), arg[3], math.tointeger(tonumber(arg[4])),
      math.tointeger(tonumber(arg[5])))
  end
  local host = arg[1] or "127.0.0.1"
  local port = math.tointeger(tonumber(arg[2] or "8080"))
  local count = math.tointeger(tonumber(arg[3] or "4"))
  if port == nil or count == nil or count < 1 then
    io.stderr:write("usage: lua5.4 examples/prefork_server.lua [HOST [PORT [WORKERS]]]\n")
    os.exit(2)
  end
  run_parent(host, port, count)
end

return { WorkerServer = WorkerServer, WorkerHandler = WorkerHandler }
