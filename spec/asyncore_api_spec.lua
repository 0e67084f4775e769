-- Port of Python 3.11 Lib/test/test_asyncore.py: BaseTestAPI, run for each
-- backend (select, poll) and each address family (AF_INET on 127.0.0.1,
-- AF_INET6 on ::1, AF_UNIX on a temporary path).
local asyncore = require "asyncore"
local core = require "asyncore.core"
local support = require "support"

local SOL_SOCKET = asyncore.SOL_SOCKET

-- Re-raises what a handler raised, so that it leaves the loop (Python's bare raise).
local function reraise(_, err)
  error(err, 0)
end

local function not_supposed(name)
  return function()
    error(name .. " not supposed to be called", 0)
  end
end

local BaseTestHandler = asyncore.dispatcher:subclass {
  init = function(self, sock)
    asyncore.dispatcher.init(self, sock)
    self.flag = false
  end,
  handle_accept = not_supposed("handle_accept"),
  handle_accepted = not_supposed("handle_accepted"),
  handle_connect = not_supposed("handle_connect"),
  handle_expt = not_supposed("handle_expt"),
  handle_close = not_supposed("handle_close"),
  handle_error = reraise,
}

-- Binds a dispatcher according to its family (AF_UNIX: a path that must not exist).
local function bind_af_aware(d, cfg)
  if cfg.family == asyncore.AF_UNIX then
    support.unlink(cfg.path)
    d:bind(cfg.path)
  else
    d:bind(cfg.host, 0)
  end
end

-- A server which listens on an address and hands each connection to a handler.
local BaseServer = asyncore.dispatcher:subclass {
  init = function(self, cfg, handler)
    asyncore.dispatcher.init(self)
    self:create_socket(cfg.family)
    self:set_reuse_addr()
    bind_af_aware(self, cfg)
    self:listen(5)
    self.handler = handler or BaseTestHandler
  end,
  address = function(self)
    return assert(self.socket:getsockname())
  end,
  handle_accepted = function(self, sock)
    self.handler(sock)
  end,
  handle_error = reraise,
}

-- BaseClient(family, address...)
local BaseClient = BaseTestHandler:subclass {
  init = function(self, family, ...)
    BaseTestHandler.init(self)
    self:create_socket(family)
    self:connect(...)
  end,
  handle_connect = function() end,
}

-- A listener that binds and listens but accepts nothing by itself.
local function listener_class(handlers)
  handlers.init = function(self, cfg)
    BaseTestHandler.init(self)
    self:create_socket(cfg.family)
    bind_af_aware(self, cfg)
    self:listen(5)
    self.address = { self.socket:getsockname() }
  end
  return BaseTestHandler:subclass(handlers)
end

local backends = {
  { name = "select", use_poll = false },
  { name = "poll", use_poll = true },
}
for _, name in ipairs(asyncore.backends()) do -- epoll, kqueue: by name
  if name ~= "select" and name ~= "poll" then backends[#backends + 1] = { name = name, use_poll = name } end
end

local families = {
  { name = "AF_INET", family = asyncore.AF_INET, host = "127.0.0.1" },
  { name = "AF_INET6", family = asyncore.AF_INET6, host = "::1", needs_ipv6 = true },
  { name = "AF_UNIX", family = asyncore.AF_UNIX, unix = true },
}

for _, backend in ipairs(backends) do
  for _, fam in ipairs(families) do
    local cfg = { family = fam.family, host = fam.host, use_poll = backend.use_poll }
    local label = backend.name .. " " .. fam.name

    describe("BaseTestAPI", function()
      before_each(function()
        if fam.unix then
          cfg.path = support.tmppath(".sock")
          support.unlink(cfg.path)
        end
      end)

      after_each(function()
        asyncore.close_all(nil, true)
        if fam.unix then support.unlink(cfg.path) end
      end)

      -- it() named by backend and family; skips cleanly where ::1 is not usable
      local function test(name, fn, opts)
        if opts and opts.not_unix and fam.unix then return end -- not applicable to AF_UNIX
        it(label .. ": " .. name, function()
          if fam.needs_ipv6 and not support.ipv6_available() then
            pending("IPv6 (::1) is not usable here")
          end
          fn()
        end)
      end

      local function loop_waiting_for_flag(instance)
        local ok = support.loop_until(function() return instance.flag end,
          { use_poll = cfg.use_poll, passes = 100, timeout = 0.01, pause = 0.05 })
        assert.is_true(ok, "flag not set")
      end

      test("handle_connect is called on connect()", function()
        local TestClient = BaseClient:subclass {
          handle_connect = function(self) self.flag = true end,
        }
        local server = BaseServer(cfg)
        local client = TestClient(cfg.family, server:address())
        loop_waiting_for_flag(client)
      end)

      test("handle_accept is called when a client connects", function()
        local TestListener = listener_class {
          handle_accept = function(self) self.flag = true end,
        }
        local server = TestListener(cfg)
        BaseClient(cfg.family, table.unpack(server.address))
        loop_waiting_for_flag(server)
      end)

      test("handle_accepted is called when a client connects", function()
        local TestListener = listener_class {
          handle_accept = function(self) asyncore.dispatcher.handle_accept(self) end,
          handle_accepted = function(self, sock, host, port)
            self.peer = { sock = sock, host = host, port = port }
            sock:close()
            self.flag = true
          end,
        }
        local server = TestListener(cfg)
        local client = BaseClient(cfg.family, table.unpack(server.address))
        loop_waiting_for_flag(server)
        -- the socket came with the peer's address
        assert.equal("userdata", type(server.peer.sock))
        if fam.unix then
          assert.equal("string", type(server.peer.host))
          assert.is_nil(server.peer.port)
        else
          local host, port = client.socket:getsockname()
          assert.equal(host, server.peer.host)
          assert.equal(port, server.peer.port)
        end
      end)

      test("handle_read is called on data received", function()
        local TestClient = BaseClient:subclass {
          handle_read = function(self) self.flag = true end,
        }
        local TestHandler = BaseTestHandler:subclass {
          init = function(self, conn)
            BaseTestHandler.init(self, conn)
            self:send(("x"):rep(1024))
          end,
        }
        local server = BaseServer(cfg, TestHandler)
        local client = TestClient(cfg.family, server:address())
        loop_waiting_for_flag(client)
      end)

      test("handle_write is called", function()
        local TestClient = BaseClient:subclass {
          handle_write = function(self) self.flag = true end,
        }
        local server = BaseServer(cfg)
        local client = TestClient(cfg.family, server:address())
        loop_waiting_for_flag(client)
      end)

      test("handle_close is called when the other end closes the connection", function()
        local TestClient = BaseClient:subclass {
          -- handle_close comes from a recv() call that finds the end
          handle_read = function(self) self:recv(1024) end,
          handle_close = function(self)
            self.flag = true
            self:close()
          end,
        }
        local TestHandler = BaseTestHandler:subclass {
          init = function(self, conn)
            BaseTestHandler.init(self, conn)
            self:close()
          end,
        }
        local server = BaseServer(cfg, TestHandler)
        local client = TestClient(cfg.family, server:address())
        loop_waiting_for_flag(client)
      end)

      test("handle_close is called after the connection is broken (ECONNRESET/EPIPE)", function()
        local data = ("\0"):rep(128)
        local TestClient = BaseClient:subclass {
          handle_write = function(self) self:send(data) end,
          handle_close = function(self)
            self.flag = true
            self:close()
          end,
          handle_expt = function(self)
            self.flag = true
            self:close()
          end,
        }
        local TestHandler = BaseTestHandler:subclass {
          handle_read = function(self)
            self:recv(#data)
            self:close()
          end,
          writable = function() return false end,
        }
        local server = BaseServer(cfg, TestHandler)
        local client = TestClient(cfg.family, server:address())
        loop_waiting_for_flag(client)
      end)

      test("handle_expt is called on OOB data received", function()
        local TestClient = BaseClient:subclass {
          handle_expt = function(self)
            self.oob = assert(self.socket:recv(1024, asyncore.MSG_OOB))
            self.flag = true
          end,
        }
        local TestHandler = BaseTestHandler:subclass {
          init = function(self, conn)
            BaseTestHandler.init(self, conn)
            assert.equal(1, assert(self.socket:send("\244", asyncore.MSG_OOB)))
          end,
        }
        local server = BaseServer(cfg, TestHandler)
        local client = TestClient(cfg.family, server:address())
        loop_waiting_for_flag(client)
        assert.equal("\244", client.oob)
      end, { not_unix = true })

      test("handle_error gets the error raised in a handler", function()
        local function divide()
          local zero = 0
          return 1 // zero
        end
        -- the very message that code raises, position included
        local ok, expected = pcall(divide)
        assert.is_false(ok)
        assert.equal("string", type(expected))
        local TestClient = BaseClient:subclass {
          handle_write = function() divide() end,
          handle_error = function(self, err, traceback)
            self.flag = true
            if err ~= expected then
              error("exception not raised: " .. tostring(err), 0)
            end
            self.traceback = traceback
          end,
        }
        local server = BaseServer(cfg)
        local client = TestClient(cfg.family, server:address())
        loop_waiting_for_flag(client)
        assert.equal("string", type(client.traceback))
      end)

      test("connection_attributes: connected and accepting", function()
        local server = BaseServer(cfg)
        local client = BaseClient(cfg.family, server:address())

        -- we start disconnected
        assert.is_false(server.connected)
        assert.is_true(server.accepting)
        -- (client.connected may already be true: that can't be taken for granted)
        assert.is_false(client.accepting)

        -- some passes so that the client connects to the server
        asyncore.loop { timeout = 0.01, use_poll = cfg.use_poll, count = 100 }
        assert.is_false(server.connected)
        assert.is_true(server.accepting)
        assert.is_true(client.connected)
        assert.is_false(client.accepting)

        -- disconnect the client
        client:close()
        assert.is_false(server.connected)
        assert.is_true(server.accepting)
        assert.is_false(client.connected)
        assert.is_false(client.accepting)

        -- stop serving
        server:close()
        assert.is_false(server.connected)
        assert.is_false(server.accepting)
      end)

      test("create_socket: a non-blocking, non-inheritable stream socket", function()
        local s = asyncore.dispatcher()
        s:create_socket(cfg.family)
        assert.equal(asyncore.SOCK_STREAM, s.socket.type)
        assert.equal(cfg.family, s.socket.family)
        assert.equal(0, s.socket:gettimeout())
        assert.is_false(s.socket:get_inheritable())
      end)

      test("bind: a second bind to the same address fails with EADDRINUSE", function()
        local s1 = asyncore.dispatcher()
        s1:create_socket(cfg.family)
        local s2 = asyncore.dispatcher()
        s2:create_socket(cfg.family)
        local ok, err
        if fam.unix then
          -- (Python skips this for AF_UNIX; a bound path is in use all the same)
          s1:bind(cfg.path)
          s1:listen(5)
          ok, err = pcall(s2.bind, s2, cfg.path)
        else
          s1:bind(cfg.host, 0)
          s1:listen(5)
          local _, port = s1.socket:getsockname()
          assert.is_true(math.type(port) == "integer" and port > 0)
          ok, err = pcall(s2.bind, s2, cfg.host, port)
        end
        -- EADDRINUSE shows the first socket was bound
        assert.is_false(ok)
        assert.truthy(tostring(err):match("^bind: .*%(EADDRINUSE%)$"), tostring(err))
      end)

      test("set_reuse_addr sets SO_REUSEADDR", function()
        local probe = assert(core.socket(cfg.family))
        local settable = probe:setsockopt(SOL_SOCKET, asyncore.SO_REUSEADDR, 1)
        probe:close()
        if not settable then pending("SO_REUSEADDR not supported on this platform") end

        -- where SO_REUSEADDR can be set on a socket, asyncore sets it too
        local s = asyncore.dispatcher(assert(core.socket(cfg.family)))
        assert.equal(0, s.socket:getsockopt(SOL_SOCKET, asyncore.SO_REUSEADDR))
        s.socket:close()
        s:create_socket(cfg.family)
        s:set_reuse_addr()
        assert.are_not.equal(0, s.socket:getsockopt(SOL_SOCKET, asyncore.SO_REUSEADDR))
      end, { not_unix = true })

      test("quick_connect: a peer that resets at once does not break the server", function()
        -- see https://bugs.python.org/issue10340: the accepted socket may already
        -- be reset (getpeername: ENOTCONN)
        local handlers = {}
        local TestHandler = BaseTestHandler:subclass {
          init = function(self, sock)
            BaseTestHandler.init(self, sock)
            handlers[#handlers + 1] = self
          end,
          -- poll() reports the reset as HUP/ERR
          handle_close = function(self) self:close() end,
        }
        local server = BaseServer(cfg, TestHandler)

        -- the peer: a blocking connect (the kernel completes it from the backlog),
        -- then SO_LINGER {1, 0} so that close() sends a reset
        local s = assert(core.socket(cfg.family))
        assert(s:setblocking(true))
        assert(s:connect(server:address()))
        assert(s:setsockopt(SOL_SOCKET, asyncore.SO_LINGER, 1, 0))
        assert(s:close())

        asyncore.loop { timeout = 0.1, count = 5, use_poll = cfg.use_poll }

        assert.equal(1, #handlers)
        assert.is_true(server.accepting)
        assert.equal(server, asyncore.socket_map[server:fileno()])
      end, { not_unix = true })
    end)
  end
end

describe("tostring of a channel on an unnamed AF_UNIX peer", function()
  it("shows no empty address", function()
    local support = require "support"
    local path = support.tmppath(".sock")
    local map = {}
    local server = asyncore.dispatcher(nil, map)
    server:create_socket(asyncore.AF_UNIX, asyncore.SOCK_STREAM)
    server:bind(path)
    server:listen(1)
    local accepted
    server.handle_accepted = function(_, sock, peer)
      accepted = asyncore.dispatcher(sock, map)
      accepted.addr = peer -- "" for a peer that never bound a path
    end
    local client = asyncore.dispatcher(nil, map)
    client:create_socket(asyncore.AF_UNIX, asyncore.SOCK_STREAM)
    client:connect(path)
    for _ = 1, 50 do
      if accepted then break end
      asyncore.loop { map = map, count = 1, timeout = 0.05 }
    end
    assert.is_truthy(accepted)
    assert.are.equal("", accepted.addr)
    assert.matches("^<asyncore%.dispatcher connected at 0x%x+>$", tostring(accepted))
    asyncore.close_all(map)
    os.remove(path)
  end)
end)
