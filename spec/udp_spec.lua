-- UDP and AF_UNIX datagrams over real sockets, on every backend: SOCK_DGRAM
-- dispatchers in a private map exchanging datagrams with sendto/recvfrom.
-- The round trip itself is in loop_spec.lua ("UDP"); this file covers what
-- a datagram server meets: many datagrams, empty and oversized ones, the
-- sender's address in every family, connected sockets, errors, and a
-- request/response exchange with several clients.  Expected values that say
-- "as Python" were checked against Python 3.11's socket and asyncore.
local asyncore = require "asyncore"
local support = require "support"

local BACKENDS = asyncore.backends()
local DGRAM = asyncore.SOCK_DGRAM

local FAMILIES = {
  { name = "AF_INET", family = asyncore.AF_INET, host = "127.0.0.1" },
  { name = "AF_INET6", family = asyncore.AF_INET6, host = "::1" },
  { name = "AF_UNIX", family = asyncore.AF_UNIX },
}

-- Each wait: at most PASSES loop passes of at most PASS_TIMEOUT seconds.
local PASSES, PASS_TIMEOUT = 100, 0.05

-- Runs passes over map until done() is true or the passes run out; returns done().
local function run_until(done, map, backend)
  for _ = 1, PASSES do
    if done() then return true end
    asyncore.loop { backend = backend, map = map, count = 1, timeout = PASS_TIMEOUT }
  end
  return done() and true or false
end

-- A datagram channel that records what it reads: got[i] = {data, host, port}
-- (or {data, path}) from one recvfrom(self.size) per read event, and every
-- error that reaches handle_error (the channel stays open).  Never polled for
-- writing.
local Peer = asyncore.dispatcher:subclass {
  __name = "Peer",
  init = function(self, map)
    asyncore.dispatcher.init(self, nil, map)
    self.got, self.errors, self.reads, self.size = {}, {}, 0, 65536
  end,
  writable = function() return false end,
  handle_read = function(self)
    self.reads = self.reads + 1
    self.got[#self.got + 1] = table.pack(self:recvfrom(self.size))
  end,
  handle_error = function(self, err) self.errors[#self.errors + 1] = tostring(err) end,
}

-- The list of data strings in peer.got.
local function datas(peer)
  local t = {}
  for i, g in ipairs(peer.got) do t[i] = g[1] end
  return t
end

-- Context for one test over family f: new peers in a private map, bound
-- (IP: f.host, port 0; AF_UNIX: a fresh path), all closed and their paths
-- removed by cleanup().  Returns nil and a reason when f is unusable here.
local function context(f)
  if f.family == asyncore.AF_INET6 and not support.ipv6_available() then
    return nil, "no IPv6 on ::1 here"
  end
  local ctx = { map = {}, paths = {} }

  -- A peer, bound unless bind == false.
  function ctx.peer(bind)
    local p = Peer(ctx.map)
    p:create_socket(f.family, DGRAM)
    if bind ~= false then
      if f.family == asyncore.AF_UNIX then
        local path = support.tmppath(".sock")
        ctx.paths[#ctx.paths + 1] = path
        p:bind(path)
      else
        p:bind(f.host, 0)
      end
    end
    return p
  end

  function ctx.cleanup()
    asyncore.close_all(ctx.map, true)
    for _, path in ipairs(ctx.paths) do support.unlink(path) end
  end

  return ctx
end

-- The address recvfrom should report for a datagram from peer: its
-- getsockname() as a list ({host, port} or {path}).
local function address_of(peer)
  return table.pack(peer:getsockname())
end

-- Declares one test per family and backend: body(ctx, f, backend).  Tests of
-- calls that do not depend on the backend pass backends = DEFAULT_ONLY.
local DEFAULT_ONLY = { false }

local function each(description, body, families, backends)
  for _, f in ipairs(families or FAMILIES) do
    for _, backend in ipairs(backends or BACKENDS) do
      local label = backend and f.name .. ", " .. backend or f.name
      it(("%s (%s)"):format(description, label), function()
        local ctx, reason = context(f)
        if not ctx then
          pending(reason)
          return
        end
        finally(ctx.cleanup)
        body(ctx, f, backend or nil)
      end)
    end
  end
end

local IP_FAMILIES = { FAMILIES[1], FAMILIES[2] }
local UNIX_ONLY = { FAMILIES[3] }

-- Every byte value, and NULs at both ends.
local ALL_BYTES = (function()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return "\0" .. table.concat(t) .. "\0"
end)()

describe("UDP dispatchers", function()
  each("call handle_read once per datagram, recvfrom giving the data and the sender", function(ctx, f, backend)
    local a, b = ctx.peer(), ctx.peer()
    local sent = { "first", "\0", "with\0NUL\0bytes", ALL_BYTES, ("x"):rep(60000), "last" }
    -- all queued before the loop runs: each read event reads one of them
    for _, data in ipairs(sent) do
      assert.are.equal(#data, a:sendto(data, b:getsockname()))
    end
    assert.is_true(run_until(function() return #b.got == #sent end, ctx.map, backend))
    -- a few more passes: no further read event, so no recvfrom on an empty socket
    asyncore.loop { backend = backend, map = ctx.map, count = 3, timeout = 0.01 }
    assert.are.same(sent, datas(b))
    assert.are.equal(#sent, b.reads)
    assert.are.same({}, b.errors)
    local from = address_of(a)
    if f.family ~= asyncore.AF_UNIX then
      assert.are.equal(f.host, from[1])
      assert.is_true(from[2] > 0)
    end
    for i, g in ipairs(b.got) do
      assert.are.same(from, table.pack(table.unpack(g, 2, g.n)), "sender of datagram " .. i)
    end

    -- The sender's address as recvfrom gave it is where a reply goes.
    b:sendto("reply", table.unpack(b.got[1], 2, b.got[1].n))
    assert.is_true(run_until(function() return #a.got == 1 end, ctx.map, backend))
    assert.are.same({ "reply", table.unpack(address_of(b)) }, { table.unpack(a.got[1], 1, a.got[1].n) })
  end)

  each("read a zero-length datagram as an event: recvfrom gives \"\" and the sender", function(ctx, _, backend)
    local a, b = ctx.peer(), ctx.peer()
    assert.are.equal(0, a:sendto("", b:getsockname()))
    assert.is_true(run_until(function() return #b.got == 1 end, ctx.map, backend))
    assert.are.same({ "", table.unpack(address_of(a)) }, { table.unpack(b.got[1], 1, b.got[1].n) })
    -- the channel is not closed: "" from recvfrom is not end of file
    assert.is_true(ctx.map[b:fileno()] == b)
    a:sendto("", b:getsockname())
    a:sendto("after", b:getsockname())
    assert.is_true(run_until(function() return #b.got == 3 end, ctx.map, backend))
    assert.are.same({ "", "", "after" }, datas(b))
    assert.are.same({}, b.errors)
  end)

  each("cut a datagram longer than the recvfrom size and drop the rest of it, as the OS does", function(ctx, _, backend)
    local a, b = ctx.peer(), ctx.peer()
    b.size = 4
    a:sendto("abcdefghij", b:getsockname())
    a:sendto("klm", b:getsockname())
    assert.is_true(run_until(function() return #b.got == 2 end, ctx.map, backend))
    asyncore.loop { backend = backend, map = ctx.map, count = 2, timeout = 0.01 }
    -- "efghij" is gone, as with Python's recvfrom(4)
    assert.are.same({ "abcd", "klm" }, datas(b))
    assert.are.same({}, b.errors)
  end)

  each("exchange datagrams with a connected dispatcher's send and recv", function(ctx, f, backend)
    local a, b, stranger = ctx.peer(), ctx.peer(), ctx.peer()
    local connects = 0
    a.handle_connect = function() connects = connects + 1 end
    a.handle_read = function(self) self.got[#self.got + 1] = { self:recv(100) } end
    -- A datagram socket connects at once: handle_connect runs inside connect(), as in Python.
    assert.is_nil(a:connect(b:getsockname()))
    assert.are.equal(1, connects)
    assert.is_true(a.connected)
    assert.is_false(a.connecting)
    if f.family == asyncore.AF_UNIX then
      assert.are.equal(b:getsockname(), a.addr)
    else
      assert.are.same(address_of(b), { a.addr[1], a.addr[2], n = 2 })
    end
    assert.are.same(address_of(b), table.pack(a:getpeername()))

    assert.are.equal(5, a:send("hello"))
    assert.is_true(run_until(function() return #b.got == 1 end, ctx.map, backend))
    assert.are.same({ "hello", table.unpack(address_of(a)) }, { table.unpack(b.got[1], 1, b.got[1].n) })

    -- Only the peer reaches a connected socket.
    if f.family == asyncore.AF_UNIX then
      local ok, err = pcall(stranger.sendto, stranger, "stray", a:getsockname())
      assert.is_false(ok)
      assert.are.equal("sendto: Operation not permitted (EPERM)", err)
    else
      stranger:sendto("stray", a:getsockname()) -- dropped by the kernel
    end
    b:sendto("reply", a:getsockname())
    assert.is_true(run_until(function() return #a.got == 1 end, ctx.map, backend))
    asyncore.loop { backend = backend, map = ctx.map, count = 2, timeout = 0.01 }
    assert.are.same({ { "reply" } }, a.got)
    assert.are.equal(1, connects)
    assert.are.same({}, a.errors)
  end)

  each("close a connected dispatcher on a zero-length datagram read with recv(), as Python's recv does", function(ctx, _, backend)
    local a, b = ctx.peer(), ctx.peer()
    local closes = 0
    a.handle_connect = function() end
    a.handle_read = function(self) self.got[#self.got + 1] = self:recv(100) end
    a.handle_close = function(self)
      closes = closes + 1
      self:close()
    end
    a:connect(b:getsockname())
    b:sendto("data", a:getsockname())
    b:sendto("", a:getsockname())
    assert.is_true(run_until(function() return closes > 0 end, ctx.map, backend))
    -- recv() takes "" for end of file: handle_close, then "" to the caller
    assert.are.same({ "data", "" }, a.got)
    assert.are.equal(1, closes)
    assert.is_nil(ctx.map[a:fileno()])
    assert.are.equal(-1, a:fileno())
  end)

  each("close a connected dispatcher whose peer port has no socket (ICMP port unreachable)", function(ctx, f, backend)
    local gone = ctx.peer()
    local host, port = gone:getsockname()
    gone:close()
    local a = ctx.peer(false)
    local closes = 0
    a.handle_connect = function() end
    a.handle_close = function(self)
      closes = closes + 1
      self:close()
    end
    a:connect(host, port)
    assert.are.equal(4, a:send("ping"))
    -- poll and epoll report POLLERR: handle_close; select reports it readable:
    -- the read raises ECONNREFUSED (Python's select loop does the same).
    a.handle_read = function(self) self.got[#self.got + 1] = { self:recv(100) } end
    a.handle_error = function(self, err)
      self.errors[#self.errors + 1] = tostring(err)
      self:handle_close()
    end
    assert.is_true(run_until(function() return closes > 0 end, ctx.map, backend), f.name)
    assert.are.same({}, a.got)
    for _, err in ipairs(a.errors) do
      assert.are.equal("recv: Connection refused (ECONNREFUSED)", err)
    end
    assert.are.equal(1, closes)
    assert.is_nil(ctx.map[a:fileno()])
  end, IP_FAMILIES)

  each("answer requests from several clients, each reply going to its sender (DNS-style)", function(ctx, _, backend)
    local server = ctx.peer()
    -- A request is a 2-byte id and a name; the reply is the same id and the answer.
    server.handle_read = function(self)
      local data, host, port = self:recvfrom(512)
      local id, name = data:sub(1, 2), data:sub(3)
      self:sendto(id .. "A " .. name:upper(), host, port)
    end
    -- Each client keeps one request outstanding, as a resolver does (an
    -- AF_UNIX receiver queues few datagrams: max_dgram_qlen, 10 on Linux).
    local clients, expected = {}, {}
    for c = 1, 5 do
      local client = ctx.peer()
      clients[c], expected[c] = client, {}
      client.requests = {}
      for q = 1, 4 do
        local id = c * 100 + q
        local name = ("host%d.client%d.test"):format(q, c)
        expected[c][id] = "A " .. name:upper()
        client.requests[q] = string.pack(">I2", id) .. name
      end
      client.ask = function(self)
        local request = self.requests[#self.got + 1]
        if request then
          assert.are.equal(#request, self:sendto(request, server:getsockname()))
        end
      end
      client.handle_read = function(self)
        Peer.handle_read(self)
        self:ask()
      end
      client:ask()
    end
    local function answered()
      for _, client in ipairs(clients) do
        if #client.got < 4 then return false end
      end
      return true
    end
    assert.is_true(run_until(answered, ctx.map, backend))
    asyncore.loop { backend = backend, map = ctx.map, count = 2, timeout = 0.01 }
    local from_server = address_of(server)
    for c, client in ipairs(clients) do
      local answers = {}
      for _, g in ipairs(client.got) do
        assert.are.same(from_server, table.pack(table.unpack(g, 2, g.n)))
        answers[string.unpack(">I2", g[1])] = g[1]:sub(3)
      end
      assert.are.same(expected[c], answers, "client " .. c)
      assert.are.equal(4, #client.got)
      assert.are.same({}, client.errors)
    end
    assert.are.same({}, server.errors)
  end)

  each("poll an unconnected dispatcher for writing on every pass unless writable() says no, as Python", function(ctx, _, backend)
    local a = ctx.peer()
    local writes = 0
    a.handle_write = function() writes = writes + 1 end
    a.writable = asyncore.dispatcher.writable -- the default: true
    asyncore.loop { backend = backend, map = ctx.map, count = 3, timeout = 0.2 }
    assert.are.equal(3, writes)
    a.writable = function() return false end
    asyncore.loop { backend = backend, map = ctx.map, count = 2, timeout = 0.01 }
    assert.are.equal(3, writes)
    assert.are.equal(0, a.reads)
  end, { FAMILIES[1], FAMILIES[3] })
end)


describe("UDP dispatcher calls", function()
  each("recvfrom with no datagram waiting raises EAGAIN, as Python's socket does", function(ctx)
    local a = ctx.peer()
    local ok, err = pcall(a.recvfrom, a, 100)
    assert.is_false(ok)
    assert.are.equal("recvfrom: Resource temporarily unavailable (EAGAIN)", err)
    -- Inside a handler it reaches handle_error (Python: BlockingIOError);
    -- the channel stays open.
    local b = ctx.peer()
    b.handle_read = function(self)
      self.got[#self.got + 1] = self:recvfrom(100)
      self.got[#self.got + 1] = self:recvfrom(100) -- nothing more is waiting
    end
    a:sendto("one", b:getsockname())
    assert.is_true(run_until(function() return #b.errors > 0 end, ctx.map))
    assert.are.same({ "one" }, b.got)
    assert.are.same({ "recvfrom: Resource temporarily unavailable (EAGAIN)" }, b.errors)
    assert.is_true(ctx.map[b:fileno()] == b)
  end, nil, DEFAULT_ONLY)

  each("sendto and recvfrom on a closed dispatcher raise EBADF naming the call, as Python's socket does", function(ctx)
    local a, b = ctx.peer(), ctx.peer()
    local to = address_of(b)
    a:close()
    local ok, err = pcall(a.sendto, a, "x", table.unpack(to, 1, to.n))
    assert.is_false(ok)
    assert.are.equal("sendto: Bad file descriptor (EBADF)", err)
    ok, err = pcall(a.recvfrom, a, 10)
    assert.is_false(ok)
    assert.are.equal("recvfrom: Bad file descriptor (EBADF)", err)
    -- nothing was sent
    assert.has_error(function() b:recvfrom(10) end, "recvfrom: Resource temporarily unavailable (EAGAIN)")
  end, nil, DEFAULT_ONLY)

  each("dispatcher(sock) of a datagram socket is connected only if the socket is, as in Python", function(ctx, f)
    local b = ctx.peer()
    local loose = assert(asyncore.socket(f.family, DGRAM))
    local d = asyncore.dispatcher(loose, ctx.map)
    assert.is_false(d.connected)
    assert.is_nil(d.addr)
    assert.is_true(ctx.map[d:fileno()] == d)

    local tied = assert(asyncore.socket(f.family, DGRAM))
    assert(tied:connect(b:getsockname()))
    local e = asyncore.dispatcher(tied, ctx.map)
    assert.is_true(e.connected)
    if f.family == asyncore.AF_UNIX then
      assert.are.equal(b:getsockname(), e.addr)
    else
      assert.are.same({ b:getsockname() }, e.addr)
    end
    assert.are.equal(3, e:send("via"))
    assert.is_true(run_until(function() return #b.got == 1 end, ctx.map))
    assert.are.equal("via", b.got[1][1])
  end, nil, DEFAULT_ONLY)

  it("sendto and recvfrom without a socket raise an error naming the call", function()
    local d = asyncore.dispatcher(nil, {})
    local ok, err = pcall(d.sendto, d, "x", "127.0.0.1", 9)
    assert.is_false(ok)
    assert.matches("^sendto: the dispatcher has no socket", err)
    ok, err = pcall(d.recvfrom, d, 10)
    assert.is_false(ok)
    assert.matches("^recvfrom: the dispatcher has no socket", err)
  end)

  each("sendto of a datagram too long for the socket raises EMSGSIZE and sends nothing", function(ctx, f)
    local a, b = ctx.peer(), ctx.peer()
    -- past UDP's 65507 bytes; an AF_UNIX datagram must fit the send buffer
    local size = f.family == asyncore.AF_UNIX and 4 * 1024 * 1024 or 70000
    local ok, err = pcall(a.sendto, a, ("x"):rep(size), b:getsockname())
    assert.is_false(ok)
    assert.are.equal("sendto: Message too long (EMSGSIZE)", err)
    assert.are.equal(2, a:sendto("ok", b:getsockname()))
    assert.is_true(run_until(function() return #b.got == 1 end, ctx.map))
    assert.are.same({ "ok" }, datas(b))
  end, nil, DEFAULT_ONLY)
end)

describe("AF_UNIX datagram senders", function()
  each("unbound: recvfrom gives the data and nil for the address (Python: None)", function(ctx)
    local server, anonymous = ctx.peer(), ctx.peer(false)
    anonymous:sendto("from nobody", server:getsockname())
    assert.is_true(run_until(function() return #server.got == 1 end, ctx.map))
    local g = server.got[1]
    assert.are.equal("from nobody", g[1])
    assert.is_nil(g[2])
    assert.is_true(g.n <= 2)
    -- getsockname of an unbound AF_UNIX socket is "" (Python: '')
    assert.are.equal("", anonymous:getsockname())
  end, UNIX_ONLY, DEFAULT_ONLY)

  each("autobound with bind(\"\"): recvfrom gives its abstract name, a reply reaches it", function(ctx)
    local server, auto = ctx.peer(), ctx.peer(false)
    auto:bind("")
    local name = auto:getsockname()
    -- Linux names it "\0" and five hex digits (Python: b'\x00' and five)
    assert.matches("^%z%x%x%x%x%x$", name)
    auto:sendto("hi", server:getsockname())
    assert.is_true(run_until(function() return #server.got == 1 end, ctx.map))
    assert.are.equal(name, server.got[1][2])
    server:sendto("back", server.got[1][2])
    assert.is_true(run_until(function() return #auto.got == 1 end, ctx.map))
    assert.are.same({ "back", server:getsockname() }, { auto.got[1][1], auto.got[1][2] })
  end, UNIX_ONLY, DEFAULT_ONLY)

  each("abstract (\"\\0name\"): recvfrom gives the name, NUL and all", function(ctx)
    local server, abstract = ctx.peer(), ctx.peer(false)
    local name = ("\0lua-asyncore-udp-spec-%d-%d"):format(math.random(1, 1e9), os.time())
    abstract:bind(name)
    assert.are.equal(name, abstract:getsockname())
    abstract:sendto("abstract", server:getsockname())
    assert.is_true(run_until(function() return #server.got == 1 end, ctx.map))
    assert.are.same({ "abstract", name }, { server.got[1][1], server.got[1][2] })
    server:sendto("back", name)
    assert.is_true(run_until(function() return #abstract.got == 1 end, ctx.map))
    assert.are.equal("back", abstract.got[1][1])
  end, UNIX_ONLY, DEFAULT_ONLY)

  each("abstract with zero bytes inside: bind, sendto and recvfrom keep every byte", function(ctx)
    local server, abstract = ctx.peer(), ctx.peer(false)
    local name = ("\0a\0b\0lua-asyncore-%d\0"):format(math.random(1, 1e9))
    abstract:bind(name)
    assert.are.equal(name, abstract:getsockname())
    abstract:sendto("zeros", server:getsockname())
    assert.is_true(run_until(function() return #server.got == 1 end, ctx.map))
    assert.are.same({ "zeros", name }, { server.got[1][1], server.got[1][2] })
    -- the name cut at its second zero byte is another socket: nothing there
    local ok, err = pcall(server.sendto, server, "x", name:sub(1, 2))
    assert.is_false(ok)
    assert.matches("%(ECONNREFUSED%)", err)
    server:sendto("back", name)
    assert.is_true(run_until(function() return #abstract.got == 1 end, ctx.map))
    assert.are.equal("back", abstract.got[1][1])
  end, UNIX_ONLY, DEFAULT_ONLY)
end)

describe("UDP calls compared with Python 3.11's socket", function()
  -- "ok" when f returns, else the errno name its error ends with, as the
  -- Python side prints them.
  local function err(f)
    local done, e = pcall(f)
    return done and "ok" or e:match("%((E%u+)%)$")
  end

  -- The same steps in python3 and here, each giving a word: what recvfrom
  -- returned, or the errno name it raised.
  local PYTHON_ERR = [[
import errno, os, socket, sys
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
]]
  local PYTHON = PYTHON_ERR .. [[
d = sys.argv[1]
out = []
for fam, a_addr, b_addr in ((socket.AF_INET, ("127.0.0.1", 0), ("127.0.0.1", 0)),
                            (socket.AF_UNIX, d + "/a", d + "/b")):
    a = socket.socket(fam, socket.SOCK_DGRAM); a.bind(a_addr)
    b = socket.socket(fam, socket.SOCK_DGRAM); b.bind(b_addr); b.setblocking(False)
    to = b.getsockname()
    out.append(err(lambda: b.recvfrom(10)))
    a.sendto(b"abcdefghij", to); a.sendto(b"", to); a.sendto(b"x\0y", to)
    for n in (4, 10, 10):
        data, addr = b.recvfrom(n)
        out.append("%r:%s" % (data.decode(), addr == a.getsockname()))
    out.append(err(lambda: a.sendto(b"x" * 4194304, to)))
    if fam == socket.AF_UNIX:
        c = socket.socket(fam, socket.SOCK_DGRAM)
        c.sendto(b"anon", to)
        out.append(repr(b.recvfrom(10)[1]))
    a.close()
    out.append(err(lambda: a.sendto(b"x", to)))
print(" ".join(out))
]]

  it("gives the same results for empty, oversized and binary datagrams, errors and unbound senders", function()
    local dir = support.make_tmpdir()
    local map = {}
    finally(function()
      asyncore.close_all(map, true)
      os.execute("rm -rf " .. support.shell_quote(dir))
    end)
    local python, ok = support.python_output(PYTHON, dir)
    if not ok then
      pending("python3 did not run")
      return
    end
    local out = {}
    for _, case in ipairs {
      { asyncore.AF_INET, { "127.0.0.1", 0 }, { "127.0.0.1", 0 } },
      { asyncore.AF_UNIX, { dir .. "/la" }, { dir .. "/lb" } },
    } do
      local a, b = Peer(map), Peer(map)
      a:create_socket(case[1], DGRAM)
      a:bind(table.unpack(case[2]))
      b:create_socket(case[1], DGRAM)
      b:bind(table.unpack(case[3]))
      local to = address_of(b)
      out[#out + 1] = err(function() b:recvfrom(10) end)
      for _, data in ipairs { "abcdefghij", "", "x\0y" } do a:sendto(data, table.unpack(to, 1, to.n)) end
      for _, n in ipairs { 4, 10, 10 } do
        local data, host, port = b:recvfrom(n)
        local from, expected = { host, port }, address_of(a)
        local same = from[1] == expected[1] and from[2] == expected[2]
        -- as Python's repr of the str
        out[#out + 1] = ("'%s':%s"):format(data:gsub("%z", "\\x00"), same and "True" or "False")
      end
      out[#out + 1] = err(function() a:sendto(("x"):rep(4194304), table.unpack(to, 1, to.n)) end)
      if case[1] == asyncore.AF_UNIX then
        local c = Peer(map)
        c:create_socket(case[1], DGRAM)
        c:sendto("anon", table.unpack(to, 1, to.n))
        local _, from = b:recvfrom(10)
        out[#out + 1] = from == nil and "None" or ("%q"):format(from)
      end
      a:close()
      out[#out + 1] = err(function() a:sendto("x", table.unpack(to, 1, to.n)) end)
    end
    assert.are.equal(python:gsub("\n$", ""), table.concat(out, " "))
  end)

  -- connect on a datagram socket only sets the default destination: nothing
  -- is sent, so the broadcast address can be checked without a datagram
  -- leaving the machine.
  local PYTHON_BROADCAST = PYTHON_ERR .. [[
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out = [err(lambda: s.connect(("<broadcast>", 9)))]
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
out.append(err(lambda: s.connect(("<broadcast>", 9))))
out.append("%s:%d" % s.getpeername() if out[-1] == "ok" else "-")
print(" ".join(out))
]]

  it("take the host <broadcast> as 255.255.255.255, refused without SO_BROADCAST", function()
    local python, ok = support.python_output(PYTHON_BROADCAST)
    if not ok then
      pending("python3 did not run")
      return
    end
    local map = {}
    finally(function() asyncore.close_all(map, true) end)
    local d = Peer(map)
    d:create_socket(asyncore.AF_INET, DGRAM)
    local out = { err(function() d:connect("<broadcast>", 9) end) }
    assert(d.socket:setsockopt(asyncore.SOL_SOCKET, asyncore.SO_BROADCAST, 1))
    out[2] = err(function() d:connect("<broadcast>", 9) end)
    out[3] = out[2] == "ok" and ("%s:%d"):format(d:getpeername()) or "-"
    assert.are.equal(python:gsub("\n$", ""), table.concat(out, " "))
  end)
end)

-- The first usable link-local IPv6 address here, from /proc/net/if_inet6
-- (address, interface index, prefix length, scope, flags, name): its text
-- form (uncompressed) and interface name, or nil.
local function link_local_address()
  local f = io.open("/proc/net/if_inet6")
  if not f then return nil end
  for line in f:lines() do
    local hex, scope, flags, ifname = line:match("^(%x+) %x+ %x+ (%x+) (%x+)%s+(%S+)")
    local tentative_or_failed = flags and (tonumber(flags, 16) & 0x48) ~= 0
    if hex and tonumber(scope, 16) == 0x20 and not tentative_or_failed then
      f:close()
      return hex:gsub("(%x%x%x%x)", "%1:"):sub(1, -2), ifname
    end
  end
  f:close()
  return nil
end

describe("IPv6 link-local peers", function()
  -- A datagram from a link-local address: the host recvfrom gives, as
  -- Python's socket.getnameinfo writes the sender's address with its scope.
  local PYTHON_SCOPED = [[
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::", 0))
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
c.sendto(b"x", ("%s%%%s" % (sys.argv[1], sys.argv[2]), s.getsockname()[1]))
data, addr = s.recvfrom(10)
print(socket.getnameinfo(addr, socket.NI_NUMERICHOST)[0])
]]

  it("keep the zone in the host (\"fe80::...%eth0\"), so a reply to recvfrom's host and port reaches the sender", function()
    local address, ifname = link_local_address()
    if not address then
      pending("no link-local IPv6 address on this machine")
      return
    end
    local python, ok = support.python_output(PYTHON_SCOPED, address, ifname)
    if not ok then
      pending("python3 could not exchange a datagram over " .. address .. "%" .. ifname)
      return
    end
    local map = {}
    finally(function() asyncore.close_all(map, true) end)
    local server, client = Peer(map), Peer(map)
    server:create_socket(asyncore.AF_INET6, DGRAM)
    server:bind("::", 0)
    client:create_socket(asyncore.AF_INET6, DGRAM)
    client:bind(address .. "%" .. ifname, 0)
    local scoped_host, client_port = client:getsockname()
    local _, server_port = server:getsockname()
    client:sendto("ping", address .. "%" .. ifname, server_port)
    assert.is_true(run_until(function() return #server.got == 1 end, map))
    local g = server.got[1]
    assert.are.same({ "ping", python:gsub("\n$", ""), client_port }, { g[1], g[2], g[3] })
    assert.are.equal("%" .. ifname, g[2]:match("%%.*$"))
    assert.are.equal(scoped_host, g[2])
    server:sendto("pong", g[2], g[3])
    assert.is_true(run_until(function() return #client.got == 1 end, map))
    assert.are.equal("pong", client.got[1][1])
    assert.are.equal(g[2], client.got[1][2])
  end)
end)

describe("AF_UNIX addresses", function()
  it("refuse a file path with a zero byte inside, naming the call (Python binds the path cut at the zero)", function()
    local dir = support.make_tmpdir()
    local d = asyncore.dispatcher(nil, {})
    finally(function()
      d:close()
      os.execute("rm -rf " .. support.shell_quote(dir))
    end)
    d:create_socket(asyncore.AF_UNIX, asyncore.SOCK_DGRAM)
    for name, call in pairs {
      bind = function() return d:bind(dir .. "/a\0b") end,
      sendto = function() return d:sendto("x", dir .. "/a\0b") end,
      connect = function() return d.socket:connect(dir .. "/a\0b") end,
    } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("bad argument #%d to '" .. name .. "' %(path contains a zero byte%)", err)
    end
    assert.is_nil(io.open(dir .. "/a"), "a socket file was made at the path cut at the zero byte")
  end)

  it("refuse a port: bind, connect and sendto take a path alone", function()
    local d = asyncore.dispatcher(nil, {})
    d:create_socket(asyncore.AF_UNIX, asyncore.SOCK_DGRAM)
    for _, call in ipairs {
      function() return d:bind("127.0.0.1", 5514) end,
      function() return d:sendto("x", "127.0.0.1", 5514) end,
      function() return d.socket:connect("127.0.0.1", 5514) end,
    } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("an AF_UNIX address is a path alone, no port", err)
    end
    assert.is_nil((os.remove("127.0.0.1")), "bind made a socket file named after the host")
    d:close()
  end)
end)
