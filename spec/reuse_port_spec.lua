-- dispatcher:set_reuse_port() in one process: SO_REUSEPORT lets several
-- listening sockets share a port, and the kernel spreads connections over them.
local asyncore = require "asyncore"

-- The OS's SO_REUSEPORT, as python3 knows it, or nil where it has none.
local function python_so_reuseport()
  local p = assert(io.popen(
    "env -u LD_PRELOAD python3 -c 'import socket; print(getattr(socket, \"SO_REUSEPORT\", \"none\"))'"))
  local out = p:read("a")
  p:close()
  return math.tointeger(tonumber(out:match("%S+")))
end

describe("dispatcher:set_reuse_port()", function()
  local map

  before_each(function() map = {} end)
  after_each(function() asyncore.close_all(map, true) end)

  -- A TCP dispatcher in the test's map, set up by the named calls.
  local function socket_with(...)
    local d = asyncore.dispatcher(nil, map)
    d:create_socket()
    for _, call in ipairs { ... } do d[call](d) end
    return d
  end

  local function listener_with(port, ...)
    local d = socket_with(...)
    d:bind("127.0.0.1", port)
    d:listen(64)
    local _, bound = d:getsockname()
    return d, bound
  end

  it("is asyncore.SO_REUSEPORT, the OS's value", function()
    local expected = python_so_reuseport()
    if expected == nil then
      pending("python3 knows no SO_REUSEPORT on this platform")
      return
    end
    assert.are.equal(expected, asyncore.SO_REUSEPORT)
  end)

  it("lets two listening sockets bind the same port", function()
    local a, port = listener_with(0, "set_reuse_port")
    local b = socket_with("set_reuse_port")
    b:bind("127.0.0.1", port)
    b:listen(64)
    assert.are.same({ "127.0.0.1", port }, { b:getsockname() })
    assert.is_true(a.accepting and b.accepting)
  end)

  it("spreads the connections to the shared port over both listeners", function()
    local accepted, clients = {}, 0
    local Listener = asyncore.dispatcher:subclass {
      handle_accepted = function(self, sock)
        accepted[self.name] = (accepted[self.name] or 0) + 1
        sock:close()
      end,
    }
    local function listen(name, port)
      local d = Listener(nil, map)
      d.name = name
      d:create_socket()
      d:set_reuse_port()
      d:bind("127.0.0.1", port)
      d:listen(64)
      local _, bound = d:getsockname()
      return bound
    end
    local port = listen("a", 0)
    listen("b", port)

    -- The kernel picks a listener by a hash of each connection's 4-tuple:
    -- the chance that one of them gets none of 64 is 2 * (1/2)^64.
    local total = 64
    local Client = asyncore.dispatcher:subclass {
      handle_connect = function() end,
      handle_read = function(self) self:recv(64) end, -- the server's close: EOF
      writable = function(self) return not self.connected end,
      handle_close = function(self) self:close() end,
      handle_error = function(self) self:close() end,
    }
    local function accepted_count() return (accepted.a or 0) + (accepted.b or 0) end
    for _ = 1, 400 do
      if accepted_count() == total then break end
      if clients < total and clients - accepted_count() < 8 then
        clients = clients + 1
        local c = Client(nil, map)
        c:create_socket()
        c:connect("127.0.0.1", port)
      end
      asyncore.loop { timeout = 0.05, map = map, count = 1 }
    end
    assert.are.equal(total, accepted_count())
    assert(accepted.a and accepted.a > 0 and accepted.b and accepted.b > 0,
      ("accepted: a %d, b %d"):format(accepted.a or 0, accepted.b or 0))
  end)

  -- Every socket on the port must set it before bind.
  for _, case in ipairs {
    { "only the first socket sets it", { "set_reuse_port" }, {} },
    { "only the second socket sets it", {}, { "set_reuse_port" } },
    { "both set only set_reuse_addr", { "set_reuse_addr" }, { "set_reuse_addr" } },
  } do
    local name, first, second = table.unpack(case)
    it("without it the second bind fails with EADDRINUSE: " .. name, function()
      local _, port = listener_with(0, table.unpack(first))
      local b = socket_with(table.unpack(second))
      local ok, err = pcall(b.bind, b, "127.0.0.1", port)
      assert.is_false(ok)
      assert.are.equal("string", type(err))
      assert.is_truthy(err:find("bind", 1, true), err)
      assert.is_truthy(err:find("EADDRINUSE", 1, true), err)
    end)
  end

  it("raises an error naming set_reuse_port on a dispatcher with no socket", function()
    local d = asyncore.dispatcher(nil, map)
    local ok, err = pcall(d.set_reuse_port, d)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("set_reuse_port", 1, true), tostring(err))
  end)

  it("on a closed dispatcher raises an OS error naming set_reuse_port", function()
    local d = asyncore.dispatcher(nil, map)
    d:create_socket()
    d:close()
    local ok, err = pcall(d.set_reuse_port, d)
    assert.is_false(ok)
    assert.are.equal("set_reuse_port: Bad file descriptor (EBADF)", err)
  end)
end)
