-- The loop keeps each channel's interest between passes and looks only at the
-- channels that may have changed: idle channels with the built-in readable()
-- and writable() cost nothing per pass, overridden ones are asked every pass,
-- and changes made through methods, or before loop() starts, are seen.
local asyncore = require "asyncore"
local support = require "support"

-- An idle UDP channel (never readable, not writable) whose field lookups are
-- counted; it uses the built-in readable() and dispatcher_with_send's writable().
local function counted_idle(map, counter)
  local sock = assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM))
  local ch = asyncore.dispatcher_with_send(sock, map)
  ch.connected = true -- nothing to send: not writable
  local fields = {}
  for k, v in pairs(ch) do fields[k] = v; ch[k] = nil end
  return setmetatable(ch, {
    __index = function(_, k)
      counter.n = counter.n + 1
      local v = fields[k]
      if v == nil then v = asyncore.dispatcher_with_send[k] end
      return v
    end,
    __newindex = fields,
  })
end

-- A channel that is always writable: it keeps each pass from waiting.
local function busy(map)
  local sock = assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM))
  local ch = asyncore.dispatcher(sock, map)
  ch.writes = 0
  ch.handle_write = function(self) self.writes = self.writes + 1 end
  return ch
end

for _, backend in ipairs(asyncore.backends()) do
  describe("the registry with " .. backend, function()
    local map
    before_each(function() map = {} end)
    after_each(function() asyncore.close_all(map) end)

    it("looks at idle channels with built-in methods only when loop() starts", function()
      local counter = { n = 0 }
      for _ = 1, 50 do counted_idle(map, counter) end
      local b = busy(map)
      counter.n = 0
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 1 }
      local one_pass = counter.n
      assert.is_true(one_pass > 0)
      counter.n = 0
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 40 }
      assert.are.equal(one_pass, counter.n)
      assert.are.equal(41, b.writes)
    end)

    it("asks overridden readable() and writable() every pass", function()
      local asked = 0
      local ch = busy(map)
      ch.readable = function() asked = asked + 1; return false end
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 25 }
      assert.are.equal(25, asked)
      assert.are.equal(25, ch.writes)
    end)

    it("sees an override assigned on an instance before loop() starts", function()
      local ch = busy(map)
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 3 }
      assert.are.equal(3, ch.writes)
      ch.writable = function() return false end
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 3 }
      assert.are.equal(3, ch.writes)
    end)

    it("sees a channel put in the map directly before loop() starts", function()
      local sock = assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM))
      local writes = 0
      map[sock:fileno()] = {
        socket = sock,
        readable = function() return false end,
        writable = function() return true end,
        handle_write_event = function() writes = writes + 1 end,
        handle_error = function(_, err) error(err, 0) end,
      }
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 2 }
      assert.are.equal(2, writes)
      map[sock:fileno()] = nil
      sock:close()
    end)

    it("sees output queued on an idle channel from another channel's handler", function()
      local server_sock = assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM))
      assert(server_sock:bind("127.0.0.1", 0))
      local host, port = server_sock:getsockname()
      local sender_sock = assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM))
      assert(sender_sock:connect(host, port))
      local sender = asyncore.dispatcher_with_send(sender_sock, map)
      sender.connected = true
      local b = busy(map)
      b.handle_write = function(self)
        self.writes = self.writes + 1
        if self.writes == 3 then sender:send("ping") end
      end
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 6 }
      assert.are.equal("ping", server_sock:recv(100))
      assert.are.equal("", sender.out_buffer)
      server_sock:close()
    end)

    it("drops a channel removed from the map directly, and serves its fd's next channel", function()
      local first = busy(map)
      local fd = first:fileno()
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 2 }
      map[fd] = nil
      first.socket:close()
      local second = busy(map) -- likely the same fd number
      asyncore.loop { timeout = 0, backend = backend, map = map, count = 2 }
      assert.are.equal(2, first.writes)
      assert.are.equal(2, second.writes)
    end)
  end)
end

describe("the epoll backend", function()
  if asyncore.backend() ~= "epoll" then
    pending("epoll is not built here")
    return
  end

  it("is the default on Linux", function()
    assert.are.equal("epoll", asyncore.backend())
    assert.are.equal("epoll", asyncore.backends()[1])
  end)

  it("treats a regular file as always ready, as poll does", function()
    local path = support.tmppath(".txt")
    support.write_file(path, "file contents\n")
    local f = assert(io.open(path, "rb"))
    local map = {}
    local got = {}
    local d = asyncore.file_dispatcher(f, map)
    d.writable = function() return false end
    d.handle_read = function(self)
      local data = self:recv(100)
      if data ~= "" then got[#got + 1] = data end
    end
    asyncore.loop { timeout = 1, backend = "epoll", map = map, count = 5 }
    assert.are.equal("file contents\n", table.concat(got))
    f:close()
    support.unlink(path)
  end)
end)
