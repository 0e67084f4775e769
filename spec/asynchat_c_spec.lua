-- What moving asynchat into C must keep and must gain: the loop decides in C
-- only where the script kept the built-in method, overrides are still called,
-- bad values give errors naming the method, and a line protocol costs one Lua
-- call per message.
local asyncore = require "asyncore"
local asynchat = require "asynchat"
local support = require "support"

local HOST = "127.0.0.1"

-- A connected pair over loopback TCP: `server` (a socket object, non-blocking,
-- for a channel) and `client` (the spec's own end, non-blocking).
local function open_pair()
  local listener = assert(asyncore.socket(asyncore.AF_INET))
  assert(listener:bind(HOST, 0))
  assert(listener:listen(1))
  local client = assert(asyncore.socket(asyncore.AF_INET))
  assert(client:setblocking(true))
  assert(client:connect(listener:getsockname()))
  assert(client:setblocking(false))
  local server
  for _ = 1, 100 do
    server = listener:accept()
    if server then break end
    support.pause(0.01)
  end
  listener:close()
  assert(server, "accept() found no connection")
  return server, client
end

-- Sends all of data from the non-blocking client, running passes over map
-- while the kernel buffers are full.
local function send_all(client, data, map)
  local i = 1
  for _ = 1, 10000 do
    if i > #data then return end
    local n = client:send(data:sub(i, i + 65535))
    if n then i = i + n else asyncore.loop(0.01, nil, map, 1) end
  end
  error("send_all: gave up with " .. (#data - i + 1) .. " bytes unsent")
end

-- Reads what the client can get, at most `passes` waits, until want bytes came.
local function read_upto(client, want, map)
  local parts, got = {}, 0
  for _ = 1, 2000 do
    if got >= want then break end
    local data = client:recv(65536)
    if data and #data > 0 then
      parts[#parts + 1] = data
      got = got + #data
    else
      asyncore.loop(0.01, nil, map, 1)
    end
  end
  return table.concat(parts)
end

local Collector = asynchat.async_chat:subclass {
  collect_incoming_data = asynchat.async_chat._collect_incoming_data,
  found_terminator = function(self) self.messages[#self.messages + 1] = self:_get_data() end,
}

local function new_chat(class, map)
  local server, client = open_pair()
  local chat = (class or Collector)(server, map)
  chat.messages = {}
  return chat, client
end

describe("async_chat in C", function()
  local map, chat, client
  before_each(function() map = {} end)
  after_each(function()
    if chat then chat:close() end
    if client then client:close() end
    chat, client = nil, nil
  end)

  describe("a line protocol", function()
    it("costs one Lua call per message with the built-in collector", function()
      chat, client = new_chat(nil, map)
      chat:set_terminator("\r\n")
      local lines = {}
      for i = 1, 200 do lines[i] = ("line %03d"):format(i) end
      send_all(client, table.concat(lines, "\r\n") .. "\r\n", map)
      support.pause(0.05)
      local lua_calls = 0
      debug.sethook(function()
        if debug.getinfo(2, "S").what == "Lua" then lua_calls = lua_calls + 1 end
      end, "c")
      for _ = 1, 50 do
        if #chat.messages == 200 then break end
        asyncore.loop(0.05, nil, map, 1)
      end
      debug.sethook()
      assert.same(lines, chat.messages)
      -- found_terminator per message, plus per pass: loop's own functions and
      -- handle_read_event; far fewer than two calls per message
      assert.is_true(lua_calls >= 200 and lua_calls < 260, "Lua calls: " .. lua_calls)
    end)
  end)

  describe("replies to one read", function()
    it("leave together when the read is framed", function()
      local Replier = Collector:subclass {
        found_terminator = function(self)
          self:push(self:_get_data():upper() .. "\n")
          self.queued[#self.queued + 1] = self:_out_buffered()
        end,
      }
      chat, client = new_chat(Replier, map)
      chat.queued = {}
      chat:set_terminator("\n")
      send_all(client, "a\nbb\nccc\n", map)
      support.loop_until(function() return #chat.queued == 3 end, { map = map })
      assert.same({ 2, 5, 9 }, chat.queued)
      assert.equal(0, chat:_out_buffered())
      assert.equal("A\nBB\nCCC\n", read_upto(client, 9, map))
    end)

    it("are sent before close() in found_terminator closes", function()
      local Quitter = Collector:subclass {
        found_terminator = function(self)
          self:push("bye " .. self:_get_data() .. "\n")
          self:close()
        end,
      }
      chat, client = new_chat(Quitter, map)
      chat:set_terminator("\n")
      send_all(client, "now\n", map)
      support.loop_until(function() return not chat.connected end, { map = map })
      assert.equal("bye now\n", read_upto(client, 8, map))
    end)
  end)

  describe("overridden methods are still called", function()
    it("get_terminator", function()
      local Switching = Collector:subclass {
        get_terminator = function(self)
          self.asked = (self.asked or 0) + 1
          return #self.messages % 2 == 0 and ";" or 3
        end,
      }
      chat, client = new_chat(Switching, map)
      send_all(client, "ab;cdeXY;fgh", map)
      support.loop_until(function() return #chat.messages == 4 end, { map = map })
      assert.same({ "ab", "cde", "XY", "fgh" }, chat.messages)
      assert.is_true(chat.asked >= 4)
    end)

    it("recv", function()
      local Upper = Collector:subclass {
        recv = function(self, n) return asyncore.dispatcher.recv(self, n):upper() end,
      }
      chat, client = new_chat(Upper, map)
      chat:set_terminator("\n")
      send_all(client, "abc\ndef\n", map)
      support.loop_until(function() return #chat.messages == 2 end, { map = map })
      assert.same({ "ABC", "DEF" }, chat.messages)
    end)

    it("send, initiate_send and collect_incoming_data", function()
      local calls = {}
      local Counting = asynchat.async_chat:subclass {
        send = function(self, data)
          calls.send = (calls.send or 0) + 1
          return asyncore.dispatcher.send(self, data)
        end,
        initiate_send = function(self)
          calls.initiate_send = (calls.initiate_send or 0) + 1
          asynchat.async_chat.initiate_send(self)
        end,
        collect_incoming_data = function(self, data) self.got = (self.got or "") .. data end,
        found_terminator = function(self) self:push(self.got .. "!") end,
      }
      chat, client = new_chat(Counting, map)
      chat:set_terminator(2)
      send_all(client, "hi", map)
      assert.equal("hi!", read_upto(client, 3, map))
      assert.equal(1, calls.send)
      assert.equal(1, calls.initiate_send)
    end)
  end)

  describe("writable()", function()
    it("is what the loop asks the socket for", function()
      chat, client = new_chat(nil, map)
      chat.ac_out_buffer_size = 1
      local writes = 0
      local real = chat.handle_write
      chat.handle_write = function(self) writes = writes + 1; real(self) end
      assert.is_false(chat:writable())
      asyncore.loop(0.01, nil, map, 1)
      assert.equal(0, writes)
      chat:push("abc") -- one byte goes at once, two wait
      assert.is_true(chat:writable())
      assert.equal(2, chat:_out_buffered())
      asyncore.loop(0.1, nil, map, 1)
      assert.equal(1, writes)
      asyncore.loop(0.1, nil, map, 1)
      assert.is_false(chat:writable())
      assert.equal("abc", read_upto(client, 3, map))
    end)

    it("of dispatcher_with_send follows out_buffer and connected", function()
      local server
      server, client = open_pair()
      local d = asyncore.dispatcher_with_send(server, map)
      chat = d
      assert.is_false(d:writable())
      d.out_buffer = "x"
      assert.is_true(d:writable())
      d.out_buffer = ""
      d.connected = false
      assert.is_true(d:writable())
    end)
  end)

  describe("output", function()
    it("buffers no more than was pushed while the peer does not read", function()
      chat, client = new_chat(nil, map)
      local block = ("0123456789abcdef"):rep(4096) -- 64 KiB
      for _ = 1, 64 do chat:push(block) end
      for _ = 1, 20 do asyncore.loop(0.01, nil, map, 1) end
      local queued = chat:_out_buffered()
      assert.is_true(queued > 0 and queued < 64 * #block, "queued " .. queued)
      local got = read_upto(client, 64 * #block, map)
      assert.equal(64 * #block, #got)
      assert.equal(block:rep(64), got)
      assert.equal(0, chat:_out_buffered())
    end)

    it("treats a function producer's nil or \"\" as its end", function()
      chat, client = new_chat(nil, map)
      local pieces = { "ab", "cd" }
      chat:push_with_producer(function() return table.remove(pieces, 1) end)
      local empty_then = { "ef", "", "never" }
      chat:push_with_producer(function() return table.remove(empty_then, 1) end)
      chat:push("gh")
      assert.equal("abcdefgh", read_upto(client, 8, map))
      assert.same({ "never" }, empty_then)
    end)
  end)

  describe("bad values", function()
    local function error_of(setup, input)
      chat, client = new_chat(nil, map)
      local seen
      chat.handle_error = function(_, err) seen = err end
      setup(chat)
      if input then send_all(client, input, map) end
      support.loop_until(function() return seen ~= nil end, { map = map, passes = 20 })
      return tostring(seen)
    end

    it("ac_in_buffer_size that is not a positive integer", function()
      assert.matches("handle_read: ac_in_buffer_size must be a positive integer",
        error_of(function(c) c.ac_in_buffer_size = 0 end, "x"), 1, true)
    end)

    it("a terminator of the wrong type set directly", function()
      assert.matches("handle_read: the terminator must be a string, an integer or nil, not table",
        error_of(function(c) c.terminator = {} end, "x"), 1, true)
    end)

    it("max_in_buffer that is not an integer", function()
      assert.matches("max_in_buffer must be an integer or nil",
        error_of(function(c) c:set_terminator("\n"); c.max_in_buffer = "big" end, "x"), 1, true)
    end)

    it("a producer returning something other than a string", function()
      chat, client = new_chat(nil, map)
      local ok, err = pcall(chat.push_with_producer, chat, function() return 42 end)
      assert.is_false(ok)
      assert.matches("initiate_send: a producer returned a number, not a string", err, 1, true)
    end)

    it("ac_out_buffer_size that is not a positive integer", function()
      chat, client = new_chat(nil, map)
      chat.ac_out_buffer_size = -1
      local ok, err = pcall(chat.push, chat, "x")
      assert.is_false(ok)
      assert.matches("push: ac_out_buffer_size must be a positive integer", err, 1, true)
    end)

    it("arguments of push, push_with_producer and set_terminator", function()
      chat, client = new_chat(nil, map)
      local cases = {
        { function() chat:push({}) end, "bad argument #1 to 'push' (string expected, got table)" },
        { function() chat:push() end, "bad argument #1 to 'push' (string expected, got no value)" },
        { function() chat:push_with_producer({}) end, "bad argument #1 to 'push_with_producer'" },
        { function() chat:push_with_producer(1) end, "bad argument #1 to 'push_with_producer'" },
        { function() chat:set_terminator(-1) end, "bad argument #1 to 'set_terminator'" },
        { function() chat:set_terminator(1.5) end, "bad argument #1 to 'set_terminator'" },
        { function() chat:set_terminator({}) end, "bad argument #1 to 'set_terminator'" },
        { function() asynchat.async_chat.push("x", "y") end, "table expected" },
        { function() asynchat.find_prefix_at_end("x") end, "bad argument #2 to 'find_prefix_at_end'" },
      }
      for i, case in ipairs(cases) do
        local ok, err = pcall(case[1])
        assert.is_false(ok, "case " .. i)
        assert.matches(case[2], err, 1, true)
      end
      assert.equal(0, chat:_out_buffered())
    end)
  end)
end)

-- Channels without sockets: recv and send are the script's, so each case
-- controls exactly what arrives and what leaves.
describe("async_chat in C against scripts that change things under it", function()
  local function bare(class_fields)
    local Chat = asynchat.async_chat:subclass(class_fields)
    local ch = setmetatable({}, Chat)
    ch:discard_buffers()
    ch.connected = true
    return ch, Chat
  end

  it("survives a field lookup that empties the input while collecting", function()
    local ch, Chat = bare {
      recv = function() return ("x"):rep(10000) end,
      collect_incoming_data = function(self, d) self.got = (self.got or 0) + #d end,
      found_terminator = function() end,
    }
    ch:set_terminator("\n")
    setmetatable(ch, { __index = function(t, k)
      if k == "max_in_buffer" then t:discard_buffers(); return nil end
      return Chat[k]
    end })
    ch:handle_read()
    assert.is_nil(ch.got) -- the bytes went with discard_buffers; none invented
  end)

  it("survives a field lookup that empties or grows the queue while sending", function()
    local sent = {}
    local ch, Chat = bare {
      send = function(_, d) sent[#sent + 1] = d; return #d end,
      collect_incoming_data = function() end,
      found_terminator = function() end,
    }
    ch.connected = false
    ch:push("hello")
    ch.connected = true
    setmetatable(ch, { __index = function(t, k)
      if k == "ac_out_buffer_size" then t:discard_buffers(); return 65536 end
      return Chat[k]
    end })
    ch:initiate_send()
    assert.same({}, sent)
    ch = bare {
      send = function(_, d) sent[#sent + 1] = d; return #d end,
      collect_incoming_data = function() end,
      found_terminator = function() end,
    }
    ch.connected = false
    ch:push("hello")
    ch.connected = nil
    local grow = true
    local Chat2 = getmetatable(ch)
    setmetatable(ch, { __index = function(t, k)
      if k == "connected" then
        if grow then grow = false; for _ = 1, 16 do t:close_when_done() end end
        return true
      end
      return Chat2[k]
    end })
    ch:initiate_send()
    assert.same({ "hello" }, sent)
  end)

  it("does not count a message twice towards max_in_buffer after a handler error", function()
    local reads, fail = { "0123456789", "\n" }, true
    local ch = bare {
      recv = function() return table.remove(reads, 1) end,
      collect_incoming_data = function(self, d)
        if fail then fail = false; error("transient") end
        self.got = d
      end,
      found_terminator = function(self) self.message = self.got end,
    }
    ch.max_in_buffer = 15
    ch:set_terminator("\n")
    assert.is_false(pcall(ch.handle_read, ch))
    assert.is_true(pcall(ch.handle_read, ch))
    assert.equal("0123456789", ch.message)
  end)

  it("accepts whole floats for limits and counts", function()
    local reads = { "abcd" }
    local ch = bare {
      recv = function() return table.remove(reads, 1) or "" end,
      collect_incoming_data = asynchat.async_chat._collect_incoming_data,
      found_terminator = function(self) self.message = self:_get_data() end,
    }
    ch.max_in_buffer = 2 ^ 20
    ch.ac_in_buffer_size = 2 ^ 16
    ch:set_terminator(4 / 2)
    assert.equal(2, ch:get_terminator())
    assert.equal("integer", math.type(ch:get_terminator()))
    ch:handle_read()
    assert.equal("ab", ch.message)
  end)

  it("sends what a producer returns even when it discarded the queue, as Python", function()
    local sent = {}
    local ch
    ch = bare {
      send = function(_, d) sent[#sent + 1] = d; return #d end,
      collect_incoming_data = function() end,
      found_terminator = function() end,
    }
    local n = 0
    ch:push_with_producer { more = function()
      n = n + 1
      if n == 1 then ch:discard_buffers(); return "last-words" end
      return ""
    end }
    ch:push("after")
    for _ = 1, 5 do if ch:writable() then ch:handle_write() end end
    assert.equal("last-words|after", table.concat(sent, "|"))
  end)

  it("find_prefix_at_end with an empty needle is -1, as Python's", function()
    assert.equal(-1, asynchat.find_prefix_at_end("abc", ""))
    assert.equal(2, asynchat.find_prefix_at_end("xxab", "abc"))
  end)

  it("a map entry that is not a table never reaches the C buffers", function()
    local sock = assert(asyncore.socket(asyncore.AF_INET))
    local saved = { string.readable, string.writable }
    string.readable = function() return false end
    string.writable = asynchat.async_chat.writable
    -- (a crash would end the whole run; an error is what Python gives too)
    local ok, err = pcall(asyncore.loop, 0, false, { [sock:fileno()] = "not a channel" }, 1)
    string.readable, string.writable = saved[1], saved[2]
    sock:close()
    assert.is_true(ok or type(err) == "string")
  end)
end)
