-- Port of Python 3.11 Lib/test/test_asynchat.py, run for each backend (select
-- through use_poll = false, poll through use_poll = true) and each echo peer: a
-- server written with asyncore in the same loop, and a python3 subprocess
-- (a separate process with real sockets, as Python's echo thread).  Then the
-- cases Python has no peer for: terminators split across reads at every
-- position, producers and the output fifo, max_in_buffer, and the helpers.
local asyncore = require "asyncore"
local asynchat = require "asynchat"
local support = require "support"

local HOST = "127.0.0.1"
local SERVER_QUIT = "QUIT\n"

local BACKENDS = {
  { name = "select", use_poll = false },
  { name = "poll", use_poll = true },
}
for _, name in ipairs(asyncore.backends()) do -- epoll, kqueue: by name
  if name ~= "select" and name ~= "poll" then BACKENDS[#BACKENDS + 1] = { name = name, use_poll = name } end
end

-- Every string occurrence of `needle` removed from `s` (plain, no patterns).
local function remove_all(s, needle)
  local out, i = {}, 1
  while true do
    local j = s:find(needle, i, true)
    if not j then break end
    out[#out + 1] = s:sub(i, j - 1)
    i = j + #needle
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

-- The tests' own find_prefix_at_end (the length of the longest proper prefix of
-- needle that haystack ends with), used for expected values.
local function prefix_at_end(haystack, needle)
  for l = #needle - 1, 1, -1 do
    if #haystack >= l and haystack:sub(-l) == needle:sub(1, l) then return l end
  end
  return 0
end

------------------------------------------------------------------------------
-- echo peers: collect until QUIT, drop every QUIT, send the rest back in
-- chunk_size pieces, close.  hold = true: echo only after the client has
-- closed (Python's start_resend_event, set once the client loop is over).
------------------------------------------------------------------------------

-- A server in the same loop, built on asyncore.dispatcher (not on async_chat).
local function lua_echo_server(opts)
  local chunk = opts.chunk or 1
  local server = { received = "", done = false }
  local Handler = asyncore.dispatcher:subclass {
    init = function(self, sock)
      asyncore.dispatcher.init(self, sock)
      self.quit = false
      self.buffer = ""
    end,
    readable = function(self) return opts.hold or not self.quit end,
    handle_read = function(self)
      server.received = server.received .. self:recv(65536)
      if not self.quit and server.received:find(SERVER_QUIT, 1, true) then
        self.quit = true
        self.buffer = remove_all(server.received, SERVER_QUIT)
      end
    end,
    writable = function(self) return self.quit and not opts.hold end,
    handle_write = function(self)
      local n = self:send(self.buffer:sub(1, chunk))
      self.buffer = self.buffer:sub(n + 1)
      if #self.buffer == 0 then
        self:close()
        server.done = true
      end
    end,
    handle_close = function(self)
      self:close()
      server.done = true
    end,
  }
  local Listener = asyncore.dispatcher:subclass {
    handle_accepted = function(self, sock)
      Handler(sock)
      self:close() -- one connection, as Python's echo thread
    end,
  }
  local listener = Listener()
  listener:create_socket()
  listener:set_reuse_addr()
  listener:bind(HOST, 0)
  listener:listen(5)
  local _, port = listener:getsockname()
  server.port = port
  function server.finish()
    return server.done, server.received
  end
  return server
end

-- Python's echo_server, in a python3 subprocess; it prints its port, and at the
-- end what it received (hex).
local PY_ECHO = [[
import socket, sys, time
chunk, hold = int(sys.argv[1]), sys.argv[2] == "1"
QUIT = b"QUIT\n"
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0))
srv.listen()
srv.settimeout(10)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(10)
buf = b""
while QUIT not in buf[-65536 - len(QUIT):]:
    data = conn.recv(65536)
    if not data:
        break
    buf += data
received = buf
buf = buf.replace(QUIT, b"")
if hold:
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
try:
    while buf:
        n = conn.send(buf[:chunk])
        time.sleep(0.001)
        buf = buf[n:]
except OSError:
    pass
conn.close()
srv.close()
print(received.hex(), flush=True)
]]

local open_peers = {}

local function python_echo_server(opts)
  local p = support.python_popen(PY_ECHO, tostring(opts.chunk or 1), opts.hold and "1" or "0")
  local server = { process = p }
  open_peers[server] = true
  server.port = math.tointeger(tonumber(p:read("l")))
  assert(server.port, "the python3 echo server did not start")
  function server.finish()
    if not open_peers[server] then return server.result_ok, server.result end
    open_peers[server] = nil
    local hex = p:read("l")
    local ok = p:close()
    server.result_ok, server.result = ok and hex ~= nil, hex and support.unhex(hex)
    return server.result_ok, server.result
  end
  return server
end

local PEERS = {
  { name = "asyncore echo server in the same loop", start = lua_echo_server },
  { name = "python3 echo server", start = python_echo_server },
}

-- Python's echo_client.
local EchoClient = asynchat.async_chat:subclass {
  init = function(self, terminator, port)
    asynchat.async_chat.init(self)
    self.contents = {}
    self:create_socket(asyncore.AF_INET, asyncore.SOCK_STREAM)
    self:connect(HOST, port)
    self:set_terminator(terminator)
    self.buffer = ""
  end,
  handle_connect = function() end,
  collect_incoming_data = function(self, data) self.buffer = self.buffer .. data end,
  found_terminator = function(self)
    self.contents[#self.contents + 1] = self.buffer
    self.buffer = ""
  end,
}

------------------------------------------------------------------------------
-- a connected pair for driving a chat byte by byte: the chat is the accepted
-- side (async_chat.init with a socket), the peer a dispatcher_with_send.
------------------------------------------------------------------------------

local Collector = asynchat.async_chat:subclass {
  init = function(self, sock, map)
    asynchat.async_chat.init(self, sock, map)
    self.parts, self.lines, self.errors, self.got = {}, {}, {}, 0
  end,
  recv = function(self, n)
    local data = asynchat.async_chat.recv(self, n)
    self.got = self.got + #data
    return data
  end,
  collect_incoming_data = function(self, data)
    assert(type(data) == "string" and #data > 0, "collect_incoming_data got no data")
    self.parts[#self.parts + 1] = data
  end,
  collected = function(self) return table.concat(self.parts) end,
  found_terminator = function(self)
    self.lines[#self.lines + 1] = table.concat(self.parts)
    self.parts = {}
  end,
  handle_error = function(self, err)
    self.errors[#self.errors + 1] = err
    self:close()
  end,
}

local Peer = asyncore.dispatcher_with_send:subclass {
  init = function(self)
    asyncore.dispatcher_with_send.init(self)
    self.received = ""
  end,
  handle_connect = function() end,
  handle_read = function(self) self.received = self.received .. self:recv(65536) end,
  handle_close = function(self)
    self.eof = true
    self:close()
  end,
}

-- Runs single passes until pred() holds, at most `passes` of them.
local function run_until(use_poll, pred, passes)
  for _ = 1, passes or 400 do
    if pred() then return true end
    asyncore.loop { timeout = 0.05, use_poll = use_poll, count = 1 }
  end
  return pred()
end

local function chat_pair(use_poll, Class)
  local chat
  local Listener = asyncore.dispatcher:subclass {
    handle_accepted = function(_, sock) chat = (Class or Collector)(sock) end,
  }
  local listener = Listener()
  listener:create_socket()
  listener:set_reuse_addr()
  listener:bind(HOST, 0)
  listener:listen(5)
  local peer = Peer()
  peer:create_socket()
  peer:connect(listener:getsockname())
  assert(run_until(use_poll, function() return chat ~= nil and peer.connected end, 200),
    "the pair did not connect")
  listener:close()
  return chat, peer
end

-- Sends data from the peer and runs the loop until the chat has read all of it
-- (or has closed).
local function feed(use_poll, chat, peer, data)
  local target = chat.got + #data
  peer:send(data)
  assert(run_until(use_poll, function() return chat.got >= target or not chat.connected end, 400),
    "the chat did not read what was sent")
end

local function errors_text(chat)
  local t = {}
  for i, e in ipairs(chat.errors) do t[i] = tostring(e) end
  return table.concat(t, "\n")
end

after_each(function()
  asyncore.close_all(nil, true)
  for server in pairs(open_peers) do server.finish() end
end)

------------------------------------------------------------------------------
-- TestAsynchat / TestAsynchat_WithPoll, against each peer
------------------------------------------------------------------------------

for _, backend in ipairs(BACKENDS) do
  local usepoll = backend.use_poll
  local function loop(count)
    asyncore.loop { use_poll = usepoll, count = count or 300, timeout = 0.01 }
  end

  for _, peer in ipairs(PEERS) do
    describe(("async_chat over %s (%s)"):format(backend.name, peer.name), function()
      local function start(opts) return peer.start(opts or {}) end

      -- Runs the loop and waits for the server to end (Python's join_thread).
      local function finish(s, count)
        loop(count)
        local done, received = s.finish()
        assert.is_true(done, "the echo server did not finish")
        return received
      end

      local function line_terminator_check(term, server_chunk)
        local s = start { chunk = server_chunk }
        local c = EchoClient(term, s.port)
        c:push("hello ")
        c:push("world" .. term)
        c:push("I'm not dead yet!" .. term)
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same({ "hello world", "I'm not dead yet!" }, c.contents)
      end

      -- the line terminator tests check receiving variously-sized chunks back
      -- from the server, to exercise all branches of async_chat.handle_read
      it("test_line_terminator1: a one-byte terminator", function()
        for l = 1, 3 do line_terminator_check("\n", l) end
      end)

      it("test_line_terminator2: a two-byte terminator", function()
        for l = 1, 3 do line_terminator_check("\r\n", l) end
      end)

      it("test_line_terminator3: a three-byte terminator", function()
        for l = 1, 3 do line_terminator_check("qqq", l) end
      end)

      local function numeric_terminator_check(termlen)
        local s = start()
        local c = EchoClient(termlen, s.port)
        local data = "hello world, I'm not dead yet!\n"
        c:push(data)
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same({ data:sub(1, termlen) }, c.contents)
        -- the count reached 0: what followed was all collected
        assert.are.equal(0, c:get_terminator())
        assert.are.equal(data:sub(termlen + 1), c.buffer)
      end

      it("test_numeric_terminator1: a one-byte count", function()
        numeric_terminator_check(1)
      end)

      it("test_numeric_terminator2: a six-byte count", function()
        numeric_terminator_check(6)
      end)

      it("a numeric terminator of 0 collects everything, found_terminator never runs", function()
        local s = start { chunk = 3 }
        local c = EchoClient(0, s.port)
        local data = "hello world, I'm not dead yet!\n"
        c:push(data)
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same({}, c.contents)
        assert.are.equal(data, c.buffer)
      end)

      it("test_none_terminator: everything goes to collect_incoming_data", function()
        local s = start()
        local c = EchoClient(nil, s.port)
        assert.is_nil(c:get_terminator())
        local data = "hello world, I'm not dead yet!\n"
        c:push(data)
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same({}, c.contents)
        assert.are.equal(data, c.buffer)
      end)

      it("test_simple_producer", function()
        local s = start()
        local c = EchoClient("\n", s.port)
        local data = "hello world\nI'm not dead yet!\n"
        local p = asynchat.simple_producer(data .. SERVER_QUIT, 8)
        c:push_with_producer(p)
        finish(s)
        assert.are.same({ "hello world", "I'm not dead yet!" }, c.contents)
      end)

      it("test_string_producer: push_with_producer takes a string, as Python takes bytes", function()
        local s = start()
        local c = EchoClient("\n", s.port)
        local data = "hello world\nI'm not dead yet!\n"
        c:push_with_producer(data .. SERVER_QUIT)
        finish(s)
        assert.are.same({ "hello world", "I'm not dead yet!" }, c.contents)
      end)

      it("push_with_producer with a function producer (nil when done)", function()
        local s = start()
        local c = EchoClient("\n", s.port)
        local pieces = { "hello ", "world\nI'm", " not dead", " yet!\n", SERVER_QUIT }
        local calls, i = 0, 0
        c:push_with_producer(function()
          calls = calls + 1
          i = i + 1
          return pieces[i]
        end)
        finish(s)
        assert.are.same({ "hello world", "I'm not dead yet!" }, c.contents)
        -- once it returned nil the producer is dropped, never asked again
        assert.are.equal(#pieces + 1, calls)
      end)

      it("push_with_producer with a table producer (more() returns \"\" when done)", function()
        local s = start()
        local c = EchoClient("\n", s.port)
        local pieces = { "hello world\n", "I'm not dead yet!\n", SERVER_QUIT }
        local producer = { i = 0, calls = 0 }
        function producer:more()
          self.calls = self.calls + 1
          self.i = self.i + 1
          return pieces[self.i] or ""
        end
        c:push_with_producer(producer)
        finish(s)
        assert.are.same({ "hello world", "I'm not dead yet!" }, c.contents)
        assert.are.equal(#pieces + 1, producer.calls)
      end)

      it("the output fifo keeps the order of pushes and producers", function()
        local s = start { chunk = 4 }
        local c = EchoClient("\n", s.port)
        local i, fn_pieces = 0, { "e\n", "f\n" }
        c:push("a\n")
        c:push_with_producer(asynchat.simple_producer("b\nc\n", 1))
        c:push("d\n")
        c:push_with_producer(function() i = i + 1; if i <= #fn_pieces then return fn_pieces[i] end end)
        c:push("")
        c:push("g\n")
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same({ "a", "b", "c", "d", "e", "f", "g" }, c.contents)
      end)

      it("a push larger than ac_out_buffer_size is split and arrives in order", function()
        local s = start { chunk = 5 }
        local c = EchoClient("\n", s.port)
        c.ac_out_buffer_size = 7
        c:push("hello world\nI'm not dead yet!\n")
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same({ "hello world", "I'm not dead yet!" }, c.contents)
      end)

      it("a 1 MiB push arrives intact", function()
        local s = start { chunk = 65536 }
        local c = EchoClient("\n", s.port)
        local line1 = ("0123456789abcdef"):rep(32768) -- 512 KiB
        local line2 = ("fedcba9876543210"):rep(32768)
        c:push(line1 .. "\n" .. line2 .. "\n")
        c:push(SERVER_QUIT)
        finish(s, 3000)
        assert.are.equal(2, #c.contents)
        assert.is_true(c.contents[1] == line1, "first line differs")
        assert.is_true(c.contents[2] == line2, "second line differs")
      end)

      it("test_empty_line: empty lines are reported", function()
        local s = start()
        local c = EchoClient("\n", s.port)
        c:push("hello world\n\nI'm not dead yet!\n")
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same({ "hello world", "", "I'm not dead yet!" }, c.contents)
      end)

      it("test_close_when_done: queued data is sent, then the channel closes", function()
        local s = start { hold = true }
        local c = EchoClient("\n", s.port)
        c:push("hello world\nI'm not dead yet!\n")
        c:push(SERVER_QUIT)
        c:close_when_done()
        local received = finish(s)
        assert.are.same({}, c.contents)
        assert.is_false(c.connected)
        assert.are.equal(-1, c:fileno())
        -- everything queued before close_when_done reached the server
        assert.are.equal("hello world\nI'm not dead yet!\n" .. SERVER_QUIT, received)
      end)

      it("discard_buffers drops output not yet sent", function()
        local s = start()
        local c = EchoClient("\n", s.port)
        c:push("dropped\n") -- not connected yet: queued
        c:push_with_producer(asynchat.simple_producer("dropped too\n"))
        c:discard_buffers()
        c:push("kept\n")
        c:push(SERVER_QUIT)
        local received = finish(s)
        assert.are.same({ "kept" }, c.contents)
        assert.are.equal("kept\n" .. SERVER_QUIT, received)
      end)

      it("test_push: strings and numbers are accepted, other types raise an error naming push", function()
        local s = start()
        local c = EchoClient("\n", s.port)
        local data = "bytes\n"
        c:push(data)
        c:push(data)
        c:push(10)
        c:push("\n")
        for _, bad in ipairs { {}, true, function() end, asynchat.simple_producer("x\n") } do
          local ok, err = pcall(c.push, c, bad)
          assert.is_false(ok)
          assert.matches("push", tostring(err), 1, true)
        end
        local ok, err = pcall(c.push, c, nil)
        assert.is_false(ok)
        assert.matches("push", tostring(err), 1, true)
        c:push(SERVER_QUIT)
        finish(s)
        -- the rejected values queued nothing
        assert.are.same({ "bytes", "bytes", "10" }, c.contents)
      end)

      it("binary data with zero bytes, and a terminator of zero bytes", function()
        local s = start { chunk = 7 }
        local all = {}
        for b = 0, 255 do all[#all + 1] = string.char(b) end
        local bin = table.concat(all)
        local lines = { "\0a\0b", bin, "x\0y", "" }
        local c = EchoClient("\0\0", s.port)
        c:push(table.concat(lines, "\0\0") .. "\0\0")
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same(lines, c.contents)
      end)

      it("UTF-8 text with a multi-byte terminator", function()
        local s = start { chunk = 2 }
        local lines = { "héllo wörld", "ünïcödé ✗ text", "日本語" }
        local c = EchoClient("✓", s.port)
        c:push(table.concat(lines, "✓") .. "✓")
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same(lines, c.contents)
      end)

      it("the terminator may change inside found_terminator (line, then a count)", function()
        local s = start { chunk = 3 }
        local c = EchoClient("\r\n", s.port)
        local records = {}
        c.found_terminator = function(self)
          records[#records + 1] = self.buffer
          self.buffer = ""
          local t = self:get_terminator()
          if type(t) == "string" then
            self:set_terminator(math.tointeger(tonumber(records[#records]:match("%d+$"))))
          else
            self:set_terminator("\r\n")
          end
        end
        c:push("LEN 5\r\nab\r\ncLEN 3\r\nxyzLEN 0")
        c:push("\r\n")
        c:push(SERVER_QUIT)
        finish(s)
        assert.are.same({ "LEN 5", "ab\r\nc", "LEN 3", "xyz", "LEN 0" }, records)
        -- a count of 0 collects everything after it
        assert.are.equal(0, c:get_terminator())
      end)
    end)
  end

  describe(("async_chat over %s, driven piece by piece"):format(backend.name), function()
    local function check_split(term)
      local chat, peer = chat_pair(usepoll)
      chat:set_terminator(term)
      local stream = "hello world" .. term .. "I'm not dead yet!" .. term
      local expected = {}
      for k = 1, #stream - 1 do
        local first = stream:sub(1, k)
        feed(usepoll, chat, peer, first)
        -- the complete lines so far are reported, the rest collected except a
        -- trailing prefix of the terminator (held back, as Python does)
        local done = #expected
        local pending = first
        local i = first:find(term, 1, true)
        while i do
          done = done + 1
          pending = pending:sub(i + #term)
          i = pending:find(term, 1, true)
        end
        assert.are.equal(done, #chat.lines, ("cut at %d"):format(k))
        assert.are.equal(pending:sub(1, #pending - prefix_at_end(pending, term)), chat:collected(),
          ("cut at %d"):format(k))
        feed(usepoll, chat, peer, stream:sub(k + 1))
        expected[#expected + 1] = "hello world"
        expected[#expected + 1] = "I'm not dead yet!"
        assert.are.same(expected, chat.lines)
        assert.are.equal("", chat:collected())
      end
      assert.are.equal("", errors_text(chat))
    end

    it("a one-byte terminator, the stream cut at every position", function()
      check_split("\n")
    end)

    it("a two-byte terminator split across sends at every position", function()
      check_split("\r\n")
    end)

    it("a three-byte terminator split across sends at every position", function()
      check_split("qqq")
    end)

    it("a terminator split across three sends, one byte each", function()
      local chat, peer = chat_pair(usepoll)
      chat:set_terminator("\r\n.\r\n")
      feed(usepoll, chat, peer, "line one\r\nline two\r")
      assert.are.same({}, chat.lines)
      for _, b in ipairs { "\n", ".", "\r" } do
        feed(usepoll, chat, peer, b)
        assert.are.same({}, chat.lines)
      end
      feed(usepoll, chat, peer, "\nnext")
      assert.are.same({ "line one\r\nline two" }, chat.lines)
      assert.are.equal("next", chat:collected())
      -- a false start: a prefix of the terminator that does not go on
      feed(usepoll, chat, peer, "\r\n.")
      feed(usepoll, chat, peer, "x\r\n.\r\n")
      assert.are.same({ "line one\r\nline two", "next\r\n.x" }, chat.lines)
    end)

    it("a numeric terminator counts down across reads", function()
      local chat, peer = chat_pair(usepoll)
      chat:set_terminator(10)
      feed(usepoll, chat, peer, "abcd")
      assert.are.same({}, chat.lines)
      assert.are.equal("abcd", chat:collected())
      assert.are.equal(6, chat:get_terminator())
      feed(usepoll, chat, peer, "efghijXYZ")
      assert.are.same({ "abcdefghij" }, chat.lines)
      assert.are.equal(0, chat:get_terminator())
      assert.are.equal("XYZ", chat:collected())
      chat:set_terminator(2)
      feed(usepoll, chat, peer, "12345")
      assert.are.same({ "abcdefghij", "XYZ12" }, chat.lines)
      assert.are.equal("345", chat:collected())
    end)

    it("an empty string terminator collects everything", function()
      local chat, peer = chat_pair(usepoll)
      chat:set_terminator("")
      feed(usepoll, chat, peer, "abc\r\n")
      feed(usepoll, chat, peer, "def")
      assert.are.same({}, chat.lines)
      assert.are.equal("abc\r\ndef", chat:collected())
    end)

    it("test_blockingioerror: handle_read with nothing to read is ignored", function()
      local chat = chat_pair(usepoll)
      chat:set_terminator("\n")
      chat:handle_read()
      assert.are.equal("", errors_text(chat))
      assert.is_true(chat.connected)
      assert.are.same({}, chat.parts)
    end)

    it("close_when_done with nothing queued closes on the next write", function()
      local chat, peer = chat_pair(usepoll)
      chat:set_terminator("\n")
      chat:close_when_done()
      assert.is_true(chat:writable())
      assert.is_true(run_until(usepoll, function() return not chat.connected and peer.eof end, 200))
      assert.are.equal(-1, chat:fileno())
    end)

    it("writable() follows the output queue once connected", function()
      local chat, peer = chat_pair(usepoll)
      chat:set_terminator("\n")
      assert.is_false(chat:writable())
      chat:push("hi\n")
      assert.is_true(run_until(usepoll, function() return peer.received == "hi\n" end, 200))
      assert.is_false(chat:writable())
      chat:push_with_producer(function() return nil end)
      run_until(usepoll, function() return not chat:writable() end, 50)
      assert.is_false(chat:writable())
    end)

    describe("max_in_buffer", function()
      it("defaults to 1 MiB on each instance", function()
        local a = asynchat.async_chat()
        local b = asynchat.async_chat()
        assert.are.equal(1024 * 1024, a.max_in_buffer)
        a.max_in_buffer = 5
        assert.are.equal(1024 * 1024, b.max_in_buffer)
        a:close()
        b:close()
      end)

      it("calls handle_error past the limit; the bytes before it are delivered intact", function()
        local chat, peer = chat_pair(usepoll)
        chat:set_terminator("\r\n")
        chat.max_in_buffer = 100
        feed(usepoll, chat, peer, ("a"):rep(60))
        assert.are.equal("", errors_text(chat))
        assert.are.equal(("a"):rep(60), chat:collected())
        feed(usepoll, chat, peer, ("b"):rep(60))
        assert.are.equal(1, #chat.errors)
        assert.matches("max_in_buffer", tostring(chat.errors[1]), 1, true)
        assert.are.equal(("a"):rep(60), chat:collected():sub(1, 60))
        assert.are.same({}, chat.lines)
      end)

      it("allows exactly max_in_buffer bytes, and fails at one more", function()
        local chat, peer = chat_pair(usepoll)
        chat:set_terminator("\r\n")
        chat.max_in_buffer = 100
        feed(usepoll, chat, peer, ("x"):rep(100))
        assert.are.equal("", errors_text(chat))
        assert.are.equal(("x"):rep(100), chat:collected())
        feed(usepoll, chat, peer, "y")
        assert.are.equal(1, #chat.errors)
        assert.matches("max_in_buffer", tostring(chat.errors[1]), 1, true)
      end)

      it("delivers the lines before the limit when they arrive in the same read", function()
        local chat, peer = chat_pair(usepoll)
        chat:set_terminator("\r\n")
        chat.max_in_buffer = 100
        feed(usepoll, chat, peer, "line one\r\nline two\r\n" .. ("z"):rep(300))
        assert.are.same({ "line one", "line two" }, chat.lines)
        assert.are.equal(1, #chat.errors)
        assert.matches("max_in_buffer", tostring(chat.errors[1]), 1, true)
      end)

      it("counts again from 0 after each terminator", function()
        local chat, peer = chat_pair(usepoll)
        chat:set_terminator("\n")
        chat.max_in_buffer = 100
        local expected = {}
        for i = 1, 10 do
          local line = string.char(64 + i):rep(80)
          expected[i] = line
          feed(usepoll, chat, peer, line:sub(1, 50))
          feed(usepoll, chat, peer, line:sub(51) .. "\n")
        end
        assert.are.equal("", errors_text(chat))
        assert.are.same(expected, chat.lines)
      end)

      it("holds with the default of 1 MiB", function()
        local chat, peer = chat_pair(usepoll)
        chat:set_terminator("\r\n")
        local mib = 1024 * 1024
        feed(usepoll, chat, peer, ("m"):rep(mib))
        assert.are.equal("", errors_text(chat))
        assert.are.equal(mib, #chat:collected())
        feed(usepoll, chat, peer, "n")
        assert.are.equal(1, #chat.errors)
        assert.matches("max_in_buffer", tostring(chat.errors[1]), 1, true)
      end)

      it("set to nil removes the limit: 3 MiB without a terminator are accepted", function()
        local chat, peer = chat_pair(usepoll)
        chat:set_terminator("\r\n")
        chat.max_in_buffer = nil
        local block = ("0123456789abcdef"):rep(65536) -- 1 MiB
        for _ = 1, 3 do feed(usepoll, chat, peer, block) end
        assert.are.equal("", errors_text(chat))
        feed(usepoll, chat, peer, "\r\n")
        assert.are.equal("", errors_text(chat))
        assert.are.equal(1, #chat.lines)
        assert.is_true(chat.lines[1] == block:rep(3), "the 3 MiB line differs")
      end)

      it("does not limit numeric or nil terminators", function()
        local chat, peer = chat_pair(usepoll)
        chat.max_in_buffer = 100
        chat:set_terminator(250)
        feed(usepoll, chat, peer, ("c"):rep(250))
        assert.are.same({ ("c"):rep(250) }, chat.lines)
        chat:set_terminator(nil)
        feed(usepoll, chat, peer, ("d"):rep(300))
        assert.are.equal("", errors_text(chat))
        assert.are.equal(("d"):rep(300), chat:collected())
      end)
    end)
  end)
end

------------------------------------------------------------------------------
-- TestHelperFunctions, TestNotConnected, simple_producer
------------------------------------------------------------------------------

describe("asynchat helpers", function()
  it("test_find_prefix_at_end", function()
    assert.are.equal(1, asynchat.find_prefix_at_end("qwerty\r", "\r\n"))
    assert.are.equal(0, asynchat.find_prefix_at_end("qwertydkjf", "\r\n"))
    assert.are.equal(2, asynchat.find_prefix_at_end("abcqq", "qqq"))
    assert.are.equal(1, asynchat.find_prefix_at_end("abc\r", "\r\n.\r\n"))
    assert.are.equal(3, asynchat.find_prefix_at_end("abc\r\n.", "\r\n.\r\n"))
    assert.are.equal(0, asynchat.find_prefix_at_end("", "\r\n"))
    assert.are.equal(1, asynchat.find_prefix_at_end("x\0", "\0\0"))
    assert.are.equal(0, asynchat.find_prefix_at_end("anything", "\n"))
  end)

  it("test_disallow_negative_terminator", function()
    local client = asynchat.async_chat()
    local ok, err = pcall(client.set_terminator, client, -1)
    assert.is_false(ok)
    assert.matches("set_terminator", tostring(err), 1, true)
    -- 0 is allowed, as in Python
    client:set_terminator(0)
    assert.are.equal(0, client:get_terminator())
  end)

  it("set_terminator rejects other types, naming set_terminator", function()
    local client = asynchat.async_chat()
    for _, bad in ipairs { {}, true, function() end } do
      local ok, err = pcall(client.set_terminator, client, bad)
      assert.is_false(ok)
      assert.matches("set_terminator", tostring(err), 1, true)
    end
    client:set_terminator("\r\n")
    assert.are.equal("\r\n", client:get_terminator())
    client:set_terminator(nil)
    assert.is_nil(client:get_terminator())
  end)

  it("simple_producer hands out buffer_size bytes at a time, then \"\"", function()
    local p = asynchat.simple_producer("abcdefghij", 3)
    assert.are.equal("abc", p:more())
    assert.are.equal("def", p:more())
    assert.are.equal("ghi", p:more())
    assert.are.equal("j", p:more())
    assert.are.equal("", p:more())
    assert.are.equal("", p:more())
    local exact = asynchat.simple_producer("abcdef", 3)
    assert.are.equal("abc", exact:more())
    assert.are.equal("def", exact:more())
    assert.are.equal("", exact:more())
  end)

  it("simple_producer's buffer_size defaults to 512", function()
    local data = ("x"):rep(1000) .. "\0" .. ("y"):rep(23)
    local p = asynchat.simple_producer(data)
    assert.are.equal(data:sub(1, 512), p:more())
    assert.are.equal(data:sub(513), p:more())
    assert.are.equal("", p:more())
    assert.are.equal("", asynchat.simple_producer(""):more())
  end)

  it("async_chat is a subclass of asyncore.dispatcher", function()
    local c = asynchat.async_chat()
    assert.are.equal(asyncore.dispatcher.handle_read_event, c.handle_read_event)
    assert.are.equal(65536, c.ac_in_buffer_size)
    assert.are.equal(65536, c.ac_out_buffer_size)
    assert.matches("async_chat", tostring(c), 1, true)
  end)

  it("the default collect_incoming_data and found_terminator must be overridden", function()
    local c = asynchat.async_chat()
    assert.is_false(pcall(c.collect_incoming_data, c, "data"))
    assert.is_false(pcall(c.found_terminator, c))
  end)
end)
