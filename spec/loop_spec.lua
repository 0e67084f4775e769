-- The map and the loop: argument forms, ExitNow, errors reaching handle_error,
-- channels removed or fds reused during a pass, select's FD_SETSIZE.
local asyncore = require "asyncore"

local BACKENDS = asyncore.backends()

-- A connected pair of channels through a listener: returns client, server side.
local function connected_pair(backend, Client, Server)
  local accepted
  local Listener = asyncore.dispatcher:subclass {
    handle_accepted = function(_, sock) accepted = (Server or asyncore.dispatcher)(sock) end,
  }
  local listener = Listener()
  listener:create_socket()
  listener:set_reuse_addr()
  listener:bind("127.0.0.1", 0)
  listener:listen(5)
  local client = (Client or asyncore.dispatcher)()
  client:create_socket()
  client.handle_connect = function() end
  client:connect(listener:getsockname())
  for _ = 1, 200 do
    if accepted and client.connected then break end
    asyncore.loop { timeout = 0.05, backend = backend, count = 1 }
  end
  listener:close()
  assert(accepted and client.connected, "pair did not connect")
  return client, accepted
end

-- Counts the fds this process has open.
local function open_fds()
  local stat = assert(io.open("/proc/self/stat")):read("l")
  local pid = stat:match("^(%d+)")
  local p = assert(io.popen("ls /proc/" .. pid .. "/fd | wc -l"))
  local n = tonumber(p:read("a"))
  p:close()
  return n - 1 -- the pipe to ls
end

describe("asyncore.loop", function()
  after_each(function() asyncore.close_all(nil, true) end)

  it("returns at once when the map is empty", function()
    asyncore.loop { timeout = 30, map = {} }
    asyncore.loop(30, false, {})
  end)

  it("runs exactly count passes, asking readable() once per pass", function()
    for _, backend in ipairs(BACKENDS) do
      local asked = 0
      local d = asyncore.dispatcher()
      d:create_socket()
      d:bind("127.0.0.1", 0)
      d.readable = function() asked = asked + 1; return false end
      d.writable = function() return false end
      asyncore.loop { timeout = 0, backend = backend, count = 7 }
      assert.are.equal(7, asked)
      asyncore.loop(0, backend == "poll", nil, 3)
      assert.are.equal(10, asked)
      d:close()
    end
  end)

  it("names the backend by use_poll, a string or backend=", function()
    assert.are.equal(asyncore.poll2, asyncore.poll3)
    assert.is_truthy(asyncore.backends()[1])
    local names = {}
    for _, b in ipairs(asyncore.backends()) do names[b] = true end
    assert.is_true(names.select and names.poll)
    assert.is_true(names[asyncore.backend()])
    local map = { [0] = setmetatable({}, { __index = function() error("not reached") end }) }
    map[0] = nil
    asyncore.loop { map = map, use_poll = "select" }
  end)

  it("raises an error naming loop for an unknown backend", function()
    local d = asyncore.dispatcher()
    d:create_socket()
    local ok, err = pcall(asyncore.loop, { backend = "nonesuch", count = 1 })
    assert.is_false(ok)
    assert.matches("loop: unknown backend 'nonesuch'", err, 1, true)
    ok, err = pcall(asyncore.loop, 0, "bogus", nil, 1)
    assert.is_false(ok)
    assert.matches("loop: unknown backend 'bogus'", err, 1, true)
    ok, err = pcall(asyncore.loop, 0, 42)
    assert.is_false(ok)
    assert.matches("'loop'", err, 1, true)
  end)

  it("rejects a negative timeout and a map key that is not an fd", function()
    local ok, err = pcall(asyncore.loop, -1, false, {}, 1)
    assert.is_false(ok)
    assert.matches("timeout", err)
    ok, err = pcall(asyncore.poll, 0, { x = asyncore.dispatcher() })
    assert.is_false(ok)
    assert.matches("not a file descriptor", err)
  end)

  for _, backend in ipairs(BACKENDS) do
    describe("with " .. backend, function()
      it("lets ExitNow out of loop() as the unique value", function()
        local client = connected_pair(backend)
        client.handle_write = function() error(asyncore.ExitNow) end
        local ok, err = pcall(asyncore.loop, { timeout = 1, backend = backend, count = 10 })
        assert.is_false(ok)
        assert.are.equal(asyncore.ExitNow, err)
        assert.are.equal("asyncore.ExitNow", tostring(err))
      end)

      it("passes a handler's error, unchanged, with a traceback to handle_error, and goes on", function()
        local client, server = connected_pair(backend)
        local boom = { reason = "boom" }
        local seen, trace, served
        client.handle_write = function() error(boom) end
        client.handle_error = function(self, err, tb)
          seen, trace = err, tb
          self:close()
        end
        server.writable = function() return false end
        server.handle_read = function(self)
          served = true
          self:recv(10)
        end
        client.socket:send("x")
        for _ = 1, 50 do
          asyncore.loop { timeout = 0.05, backend = backend, count = 1 }
          if seen and served then break end
        end
        assert.are.equal(boom, seen)
        assert.is_string(trace)
        assert.matches("traceback", trace)
        assert.is_true(served)
      end)

      it("passes an error raised in readable() to handle_error", function()
        local d = asyncore.dispatcher()
        d:create_socket()
        d.readable = function() error("readable failed") end
        local seen
        d.handle_error = function(self, err)
          seen = err
          self:close()
        end
        asyncore.loop { timeout = 0, backend = backend, count = 1 }
        assert.matches("readable failed", seen)
        assert.is_nil(next(asyncore.socket_map))
      end)

      it("the default handle_error logs the error and the channel and closes it", function()
        local d = asyncore.dispatcher()
        d:create_socket()
        d.readable = function() error("broken predicate") end
        local out = io.tmpfile()
        io.output(out)
        local ok, err = pcall(asyncore.loop, { timeout = 0, backend = backend, count = 1 })
        io.output(io.stdout)
        assert.is_true(ok, err)
        out:seek("set")
        local text = out:read("a")
        assert.matches("^error: uncaptured Lua error, closing channel <asyncore.dispatcher at 0x%x+>", text)
        assert.matches("broken predicate", text, 1, true)
        assert.are.equal(-1, d.socket:fileno())
      end)

      it("gives no further event in the pass to a channel closed by another's handler", function()
        local a, b = connected_pair(backend)
        local events = {}
        -- both sides have data to read and room to write: both fire this pass
        a.socket:send("to b")
        b.socket:send("to a")
        local function record(name)
          return function(self)
            events[#events + 1] = name
            local other = self == a and b or a
            other:close()
            self.handle_read, self.handle_write = function() end, function() end
          end
        end
        for _ = 1, 20 do
          if #events > 0 then break end
          a.handle_read, a.handle_write = record("a"), record("a")
          b.handle_read, b.handle_write = record("b"), record("b")
          asyncore.loop { timeout = 0.1, backend = backend, count = 1 }
        end
        assert.are.equal(1, #events)
      end)

      it("never dispatches an fd reused during the pass to the new channel", function()
        local a, b = connected_pair(backend)
        b.socket:send("data for a")
        a.socket:send("data for b")
        local b_fd = b:fileno()
        local newcomer, wrong, reused
        local fillers = {}
        local first = true
        local function closer(self)
          if not first then return end
          first = false
          local victim = self == a and b or a
          local fd = victim:fileno()
          -- fill every free fd below the victim's, so that the next socket takes its fd
          for _ = 1, 100 do
            local s = asyncore.socket()
            if s:fileno() > fd then
              s:close()
              break
            end
            fillers[#fillers + 1] = s
          end
          victim:close()
          newcomer = asyncore.dispatcher()
          newcomer:create_socket()
          reused = newcomer:fileno() == fd
          newcomer.handle_read_event = function() wrong = true end
          newcomer.handle_write_event = function() wrong = true end
          newcomer.handle_expt_event = function() wrong = true end
          newcomer.handle_close = function() wrong = true end
          newcomer.readable = function() return false end
          newcomer.writable = function() return false end
        end
        a.handle_read, a.handle_write, b.handle_read, b.handle_write = closer, closer, closer, closer
        for _ = 1, 20 do
          if newcomer then break end
          asyncore.loop { timeout = 0.1, backend = backend, count = 1 }
        end
        for _, s in ipairs(fillers) do s:close() end
        assert.is_truthy(newcomer)
        assert.is_true(reused)
        assert.is_truthy(b_fd)
        assert.is_nil(wrong)
      end)

      it("calls handle_close when the peer closes", function()
        local client, server = connected_pair(backend)
        local closed = 0
        client.handle_read = function(self) self:recv(100) end
        client.handle_write = function() end
        client.writable = function() return false end
        client.handle_close = function(self)
          closed = closed + 1
          self:close()
        end
        server:close()
        for _ = 1, 50 do
          if closed > 0 then break end
          asyncore.loop { timeout = 0.05, backend = backend, count = 1 }
        end
        assert.are.equal(1, closed)
        assert.is_false(client.connected)
      end)
    end)
  end

  it("select refuses an fd at or above FD_SETSIZE with an error that says so", function()
    local fake = asyncore.dispatcher()
    local map = { [asyncore.FD_SETSIZE + 10] = fake }
    local ok, err = pcall(asyncore.poll, 0, map)
    assert.is_false(ok)
    assert.matches("FD_SETSIZE", err)
    assert.matches("select", err)
  end)

  it("select refuses a real socket above FD_SETSIZE, and poll serves it", function()
    local script = [[
      local asyncore = require "asyncore"
      local keep = {}
      for i = 1, asyncore.FD_SETSIZE + 5 do
        local s = assert(io.open("/dev/null"))
        keep[i] = s
      end
      local d = asyncore.dispatcher()
      d:create_socket()
      assert(d:fileno() >= asyncore.FD_SETSIZE, "fd " .. d:fileno())
      local ok, err = pcall(asyncore.loop, { timeout = 0, use_poll = false, count = 1 })
      assert(not ok and err:find("FD_SETSIZE"), tostring(err))
      asyncore.loop { timeout = 0, use_poll = true, count = 1 }
      d.handle_write = function(self) self.wrote = true end
      d.handle_connect = function() end
      print("ok")
    ]]
    local env = ("LUA_PATH='%s' LUA_CPATH='%s' "):format(package.path, package.cpath)
    local p = assert(io.popen("ulimit -n 4096 && " .. env .. "lua5.4 -e '" .. script:gsub("'", "'\\''") .. "' 2>&1"))
    local out = p:read("a")
    local ok = p:close()
    assert.is_true(ok, out)
    assert.matches("ok", out)
  end)
end)

describe("dispatcher lifetime", function()
  after_each(function() asyncore.close_all(nil, true) end)

  it("closes the socket of a garbage-collected dispatcher exactly once", function()
    collectgarbage()
    local before = open_fds()
    for _ = 1, 20 do
      local d = asyncore.dispatcher()
      d:create_socket()
      d:del_channel()
    end
    assert.is_true(open_fds() >= before + 20)
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, open_fds())
  end)

  it("closes the socket of a <close> variable when the scope ends", function()
    local d_seen
    do
      local d <close> = asyncore.dispatcher()
      d:create_socket()
      d_seen = d
      assert.is_true(d.socket:fileno() >= 0)
    end
    assert.are.equal(-1, d_seen.socket:fileno())
    assert.is_nil(next(asyncore.socket_map))
    d_seen:close() -- idempotent
  end)

  it("closing twice is harmless and fds come back after 200 connect/close cycles", function()
    -- the default backend's own fd (epoll's) is open before counting
    local warm = asyncore.dispatcher()
    warm:create_socket()
    asyncore.loop { timeout = 0, count = 1 }
    warm:close()
    collectgarbage()
    local before = open_fds()
    local listener = asyncore.dispatcher()
    listener:create_socket()
    listener:set_reuse_addr()
    listener:bind("127.0.0.1", 0)
    listener:listen(64)
    local host, port = listener:getsockname()
    listener.handle_accepted = function(_, sock) sock:close() end
    for _ = 1, 200 do
      local c = asyncore.dispatcher()
      c:create_socket()
      c:connect(host, port)
      c:close()
      c:close()
    end
    asyncore.loop { timeout = 0.01, count = 20 }
    listener:close()
    collectgarbage()
    assert.are.equal(before, open_fds())
  end)
end)

describe("a closed channel", function()
  it("sends 0 and receives '' after calling handle_close, as Python does", function()
    local d = asyncore.dispatcher()
    d:create_socket()
    d:close()
    local closes = 0
    d.handle_close = function() closes = closes + 1 end
    assert.are.equal(0, d:send("data"))
    assert.are.equal("", d:recv(10))
    assert.are.equal(2, closes)
  end)

  it("raises an error naming the call for bind, listen, connect, getsockname", function()
    local d = asyncore.dispatcher()
    d:create_socket()
    d:close()
    for _, call in ipairs { "bind", "listen", "connect", "getsockname" } do
      local ok, err
      if call == "bind" or call == "connect" then
        ok, err = pcall(d[call], d, "127.0.0.1", 1)
      else
        ok, err = pcall(d[call], d, 5)
      end
      assert.is_false(ok)
      assert.matches("^" .. call .. ": Bad file descriptor %(EBADF%)$", err)
    end
  end)

  it("a dispatcher with no socket raises an error naming the call", function()
    local d = asyncore.dispatcher()
    local ok, err = pcall(d.send, d, "x")
    assert.is_false(ok)
    assert.matches("send: the dispatcher has no socket", err, 1, true)
  end)
end)

describe("OS errors", function()
  it("read as '<call>: <strerror> (<ERRNO>)'", function()
    local s = asyncore.dispatcher()
    s:create_socket()
    s:bind("127.0.0.1", 0)
    local host, port = s:getsockname()
    local c = asyncore.dispatcher()
    c:create_socket()
    local ok, err = pcall(c.bind, c, host, port)
    assert.is_false(ok)
    assert.are.equal("bind: " .. asyncore.strerror(asyncore.errno.EADDRINUSE) .. " (EADDRINUSE)", err)
    s:close()
    c:close()
  end)

  it("reach handle_error for a refused connection", function()
    for _, backend in ipairs(BACKENDS) do
      local s = asyncore.dispatcher()
      s:create_socket()
      s:bind("127.0.0.1", 0)
      local host, port = s:getsockname()
      s:close() -- nobody listens there now
      local c = asyncore.dispatcher()
      c:create_socket()
      local seen
      c.handle_error = function(self, err)
        seen = err
        self:close()
      end
      c:connect(host, port)
      for _ = 1, 50 do
        if seen then break end
        asyncore.loop { timeout = 0.05, backend = backend, count = 1 }
      end
      assert.are.equal("connect: Connection refused (ECONNREFUSED)", seen)
    end
  end)
end)

describe("constants", function()
  it("equal the OS's values", function()
    local names = { "AF_INET", "AF_INET6", "AF_UNIX", "SOCK_STREAM", "SOCK_DGRAM", "SOL_SOCKET",
      "SO_ERROR", "SO_REUSEADDR", "SO_REUSEPORT", "SO_BROADCAST", "SO_LINGER", "SO_KEEPALIVE",
      "SO_RCVBUF", "SO_SNDBUF", "SO_TYPE", "IPPROTO_TCP", "TCP_NODELAY", "SHUT_RD", "SHUT_WR",
      "SHUT_RDWR", "MSG_OOB", "MSG_PEEK" }
    local polls = { "POLLIN", "POLLOUT", "POLLPRI", "POLLHUP", "POLLERR", "POLLNVAL" }
    local code = "import socket, select, errno\n"
    for _, n in ipairs(names) do code = code .. ("print('%s', int(socket.%s))\n"):format(n, n) end
    for _, n in ipairs(polls) do code = code .. ("print('%s', int(select.%s))\n"):format(n, n) end
    code = code .. "print('ECONNREFUSED', errno.ECONNREFUSED)\nprint('EAGAIN', errno.EAGAIN)\n"
    local p = assert(io.popen("python3 -c \"" .. code .. "\""))
    local count = 0
    for line in p:lines() do
      local name, value = line:match("^(%S+) (%-?%d+)$")
      local ours = asyncore[name] or asyncore.errno[name]
      assert.are.equal(tonumber(value), ours, name)
      count = count + 1
    end
    p:close()
    assert.are.equal(#names + #polls + 2, count)
    assert.are.equal(os.getenv("LANG") and asyncore.strerror(asyncore.errno.EPERM) or asyncore.strerror(1),
      asyncore.strerror(asyncore.errno.EPERM))
    assert.is_true(#asyncore.strerror(-1) > 0)
  end)
end)

describe("UDP", function()
  local families = {
    { name = "AF_INET", family = asyncore.AF_INET, host = "127.0.0.1" },
    { name = "AF_INET6", family = asyncore.AF_INET6, host = "::1" },
    { name = "AF_UNIX", family = asyncore.AF_UNIX },
  }
  for _, f in ipairs(families) do
    it("sendto/recvfrom round-trip over " .. f.name, function()
      local a, b = asyncore.dispatcher(), asyncore.dispatcher()
      local ok, err = pcall(a.create_socket, a, f.family, asyncore.SOCK_DGRAM)
      if not ok then
        pending("no " .. f.name .. ": " .. tostring(err))
        return
      end
      b:create_socket(f.family, asyncore.SOCK_DGRAM)
      local paths = {}
      if f.family == asyncore.AF_UNIX then
        for i, d in ipairs { a, b } do
          paths[i] = os.tmpname()
          os.remove(paths[i])
          d:bind(paths[i])
        end
      else
        local bound = pcall(a.bind, a, f.host, 0)
        if not bound then
          pending(f.host .. " not usable")
          return
        end
        b:bind(f.host, 0)
      end
      local got, from1, from2
      b.handle_read = function(self) got, from1, from2 = self:recvfrom(100) end
      b.writable = function() return false end
      a.readable = function() return false end
      a.writable = function() return false end
      a:sendto("datagram\0with zero", b:getsockname())
      for _ = 1, 50 do
        if got then break end
        asyncore.loop { timeout = 0.05, count = 1 }
      end
      assert.are.equal("datagram\0with zero", got)
      local h, p = a:getsockname()
      assert.are.equal(h, from1)
      assert.are.equal(p, from2)
      a:close()
      b:close()
      for _, p2 in ipairs(paths) do os.remove(p2) end
    end)
  end
end)

describe("bad input", function()
  after_each(function() asyncore.close_all(nil, true) end)

  local function channel()
    local d = asyncore.dispatcher()
    d:create_socket()
    return d
  end

  -- Each call must raise an error whose message matches the pattern: the function and argument named.
  local cases = {
    { "bind port type", function() channel():bind("127.0.0.1", "x") end, "bad argument #2 to 'bind'" },
    { "bind port range", function() channel():bind("127.0.0.1", 70000) end, "#2 to 'bind' %(port must be 0%-65535%)" },
    { "bind host type", function() channel():bind({}, 1) end, "bad argument #1 to 'bind'" },
    { "bind unresolvable host", function() channel():bind("no.such.host.invalid", 1) end, "^bind: .*%(EAI_" },
    { "connect family mismatch", function() channel():connect("::1", 1) end, "^connect: .*%(EAI_" },
    { "recv zero", function() channel():recv(0) end, "bad argument #1 to 'recv' %(size must be positive%)" },
    { "recv negative", function() channel():recv(-5) end, "#1 to 'recv'" },
    { "send table", function() channel():send({}) end, "bad argument #1 to 'send' %(string expected" },
    { "listen backlog", function() channel():listen(-1) end, "#1 to 'listen'" },
    { "shutdown how", function() channel():shutdown(7) end, "#1 to 'shutdown'" },
    { "unix path too long", function()
        local d = asyncore.dispatcher()
        d:create_socket(asyncore.AF_UNIX)
        d:bind(("x"):rep(200))
      end, "#1 to 'bind' %(path too long%)" },
    { "socket family", function() asyncore.dispatcher():create_socket(999) end, "#1 to 'socket' %(family" },
    { "readwrite flags", function() asyncore.readwrite({}, nil) end, "#2 to 'readwrite'" },
    { "readwrite object", function() asyncore.readwrite(5, 1) end, "#1 to 'readwrite' %(table expected" },
    { "read object", function() asyncore.read(5) end, "#1 to 'read' %(table expected" },
    { "loop map", function() asyncore.loop(0, false, 5) end, "'map' to 'loop'" },
    { "loop count", function() asyncore.loop(0, false, {}, "x") end, "'count' to 'loop'" },
    { "poll NaN timeout", function() asyncore.poll(0 / 0) end, "'timeout' to 'poll'" },
    { "file_wrapper argument", function() asyncore.file_wrapper("x") end, "#1 to 'file_wrapper' %(integer fd or file" },
    { "file_wrapper closed file", function()
        local f = io.tmpfile()
        f:close()
        asyncore.file_wrapper(f)
      end, "#1 to 'file_wrapper' %(attempt to use a closed file%)" },
    { "file_wrapper bad fd", function() asyncore.file_wrapper(-1) end, "^file_wrapper: Bad file descriptor %(EBADF%)$" },
    { "dispatcher socket", function() asyncore.dispatcher(5) end, "#1 to 'init' %(socket expected" },
    { "dispatcher map", function() asyncore.dispatcher(asyncore.socket(), 5) end, "#2 to 'init' %(table expected" },
    { "subclass handlers", function() asyncore.dispatcher:subclass(5) end, "#1 to 'subclass'" },
    { "socket method self", function() asyncore.socket().recv({}, 5) end, "#1 to 'recv' %(asyncore.socket expected" },
  }
  for _, case in ipairs(cases) do
    it("raises a clear error: " .. case[1], function()
      local ok, err = pcall(case[2])
      assert.is_false(ok)
      assert.matches(case[3], tostring(err))
    end)
  end
end)

describe("a pass over an empty map", function()
  it("returns at once, as Python's poll() and poll2() do, without counting as a wait", function()
    -- A 1000-second timeout would hang the suite if the pass waited.
    asyncore.poll(1000, {})
    asyncore.poll2(1000, {})
    asyncore.loop { timeout = 1000, map = {}, count = 5 }
  end)
end)

describe("a hang-up with unread data", function()
  after_each(function() asyncore.close_all(nil, true) end)

  for _, backend in ipairs(BACKENDS) do
    it("loses no byte: reads drain it and EOF closes (" .. backend .. ")", function()
      local client, server = connected_pair(backend)
      local payload = ("0123456789"):rep(10)
      local got, closes = {}, 0
      client.writable = function() return false end
      client.handle_read = function(self) got[#got + 1] = self:recv(7) end
      client.handle_close = function(self)
        closes = closes + 1
        self:close()
      end
      -- data waiting, the peer gone and our side shut for writing: POLLIN|POLLHUP
      assert.are.equal(#payload, server.socket:send(payload))
      server:close()
      client:shutdown(asyncore.SHUT_WR)
      for _ = 1, 100 do
        if closes > 0 then break end
        asyncore.loop { timeout = 0.05, backend = backend, count = 1 }
      end
      assert.are.equal(payload, table.concat(got))
      assert.are.equal(1, closes)
    end)
  end

  it("readwrite with POLLHUP alone still calls handle_close", function()
    local closed = false
    asyncore.readwrite({ handle_close = function() closed = true end }, asyncore.POLLHUP)
    assert.is_true(closed)
  end)
end)

describe("a map entry that is not a channel", function()
  it("makes loop() raise an error naming handle_error, with the error it could not take", function()
    local ok, err = pcall(asyncore.loop, { map = { [5] = {} }, count = 1, timeout = 0 })
    assert.is_false(ok)
    assert.matches("handle_error: the channel has no handle_error method, to take: .*nil", err)
    ok, err = pcall(asyncore.read, { handle_read_event = function() error("read failed", 0) end })
    assert.is_false(ok)
    assert.are.equal("handle_error: the channel has no handle_error method, to take: read failed", err)
  end)
end)
