-- asynchat: terminator framing and buffered, producer-driven output on top of
-- asyncore.dispatcher, with Python 3.11 asynchat's semantics.
local asyncore = require "asyncore"

local M = {}

local dispatcher = asyncore.dispatcher

-- find_prefix_at_end(haystack, needle): the length of the longest proper
-- prefix of needle that haystack ends with (0 if none).
function M.find_prefix_at_end(haystack, needle)
  local l = #needle - 1
  while l > 0 and haystack:sub(-l) ~= needle:sub(1, l) do
    l = l - 1
  end
  return l
end
local find_prefix_at_end = M.find_prefix_at_end

-- The close_when_done marker in the producer queue.
local CLOSE = setmetatable({}, { __name = "asynchat.close_when_done" })

local function is_reraised(err)
  return err == asyncore.ExitNow or (type(err) == "string" and err:find("interrupted!$") ~= nil)
end

local function would_block(err)
  return type(err) == "string" and (err:find("%(EAGAIN%)$") or err:find("%(EWOULDBLOCK%)$")) ~= nil
end

local async_chat = dispatcher:subclass {
  __name = "asynchat.async_chat",
  ac_in_buffer_size = 65536,
  ac_out_buffer_size = 65536,
}
M.async_chat = async_chat

function async_chat.init(self, sock, map)
  self.ac_in_buffer = ""
  self.incoming = {}
  self.producer_fifo = { first = 1, last = 0 }
  self.max_in_buffer = 1024 * 1024
  self._collected = 0 -- bytes passed to collect_incoming_data since the last terminator
  dispatcher.init(self, sock, map)
end

function async_chat:collect_incoming_data(data) -- luacheck: no unused args
  error("collect_incoming_data: must be implemented in subclass", 2)
end

function async_chat:_collect_incoming_data(data)
  self.incoming[#self.incoming + 1] = data
end

function async_chat:_get_data()
  local data = table.concat(self.incoming)
  self.incoming = {}
  return data
end

function async_chat:found_terminator()
  error("found_terminator: must be implemented in subclass", 2)
end

-- set_terminator(term): a string of any length, a byte count, or nil
function async_chat:set_terminator(term)
  local kind = math.type(term) or type(term)
  if kind == "integer" then
    if term < 0 then error("bad argument #1 to 'set_terminator' (the number of bytes must be positive)", 2) end
  elseif kind ~= "string" and kind ~= "nil" then
    error("bad argument #1 to 'set_terminator' (string, integer or nil expected, got " .. kind .. ")", 2)
  end
  self.terminator = term
  self._collected = 0
end

function async_chat:get_terminator()
  return self.terminator
end

-- Passes data on, holding the max_in_buffer limit while a string terminator is awaited.
local function collect(self, data, rest, string_terminator)
  if string_terminator then
    local limit = self.max_in_buffer
    local held = self._collected + #data
    if limit and held > limit then
      self.ac_in_buffer = data .. rest -- nothing is lost: the bytes wait here
      error(("async_chat: %d bytes without a terminator exceed max_in_buffer (%d)"):format(held, limit), 0)
    end
    self._collected = held
  end
  self:collect_incoming_data(data)
end

function async_chat:handle_read()
  local ok, data = pcall(self.recv, self, self.ac_in_buffer_size)
  if not ok then
    if is_reraised(data) then error(data, 0) end
    if would_block(data) then return end
    self:handle_error(data, debug.traceback())
    return
  end
  local buffer = self.ac_in_buffer .. data
  self.ac_in_buffer = ""
  while #buffer > 0 do
    local terminator = self:get_terminator()
    if terminator == nil or terminator == "" or terminator == 0 then
      -- no framing: everything goes to collect_incoming_data
      self:collect_incoming_data(buffer)
      buffer = ""
    elseif math.type(terminator) == "integer" then
      if #buffer < terminator then
        self:collect_incoming_data(buffer)
        self.terminator = terminator - #buffer
        buffer = ""
      else
        local rest = buffer:sub(terminator + 1)
        self:collect_incoming_data(buffer:sub(1, terminator))
        buffer = rest
        self.terminator = 0
        self._collected = 0
        self.ac_in_buffer = buffer
        self:found_terminator()
        buffer, self.ac_in_buffer = self.ac_in_buffer, ""
      end
    else
      local index = buffer:find(terminator, 1, true)
      if index then
        local rest = buffer:sub(index + #terminator)
        if index > 1 then collect(self, buffer:sub(1, index - 1), buffer:sub(index), true) end
        self._collected = 0
        buffer = rest
        self.ac_in_buffer = buffer
        self:found_terminator()
        buffer, self.ac_in_buffer = self.ac_in_buffer, ""
      else
        -- keep a partial terminator at the end for the next read
        local partial = find_prefix_at_end(buffer, terminator)
        if partial > 0 then
          if partial ~= #buffer then
            collect(self, buffer:sub(1, -partial - 1), buffer:sub(-partial), true)
            buffer = buffer:sub(-partial)
          end
          break
        end
        collect(self, buffer, "", true)
        buffer = ""
      end
    end
  end
  self.ac_in_buffer = buffer
end

function async_chat:handle_write()
  self:initiate_send()
end

function async_chat:handle_close()
  self:close()
end

local function fifo_push(fifo, item)
  fifo.last = fifo.last + 1
  fifo[fifo.last] = item
end

local function fifo_pop(fifo)
  fifo[fifo.first] = nil
  fifo.first = fifo.first + 1
end

local function fifo_empty(fifo)
  return fifo.first > fifo.last
end

-- push(data): queue data (a string or number) and start sending it
function async_chat:push(data)
  data = asyncore._data_arg(data, "push")
  local size = self.ac_out_buffer_size
  if #data > size then
    for i = 1, #data, size do fifo_push(self.producer_fifo, data:sub(i, i + size - 1)) end
  else
    fifo_push(self.producer_fifo, data)
  end
  self:initiate_send()
end

-- push_with_producer(producer): a table whose more() returns "" when done, a
-- function that returns nil when done, or a string (queued whole, as Python
-- queues bytes)
function async_chat:push_with_producer(producer)
  local kind = type(producer)
  if not (kind == "function" or kind == "string" or (kind == "table" and producer.more)) then
    error("bad argument #1 to 'push_with_producer' (producer table with more(), function or string expected, got "
      .. kind .. ")", 2)
  end
  fifo_push(self.producer_fifo, producer)
  self:initiate_send()
end

function async_chat:readable()
  return true
end

function async_chat:writable()
  return not fifo_empty(self.producer_fifo) or not self.connected
end

-- close_when_done(): close once everything queued before it has been sent
function async_chat:close_when_done()
  fifo_push(self.producer_fifo, CLOSE)
end

function async_chat:initiate_send()
  local fifo = self.producer_fifo
  while not fifo_empty(fifo) and self.connected do
    local first = fifo[fifo.first]
    if first == CLOSE then
      fifo_pop(fifo)
      self:handle_close()
      return
    end
    if first == "" then
      fifo_pop(fifo)
    elseif type(first) ~= "string" then
      -- a producer: its next piece goes in front of it
      local data
      if type(first) == "function" then data = first() else data = first:more() end
      if data ~= nil and type(data) ~= "string" then
        error("initiate_send: a producer returned a " .. type(data) .. ", not a string", 0)
      end
      if data ~= nil and data ~= "" then
        -- the piece goes out before the producer is asked again
        fifo.first = fifo.first - 1
        fifo[fifo.first] = data
      else
        fifo_pop(fifo)
      end
    else
      local size = self.ac_out_buffer_size
      local data = #first > size and first:sub(1, size) or first
      local ok, sent = pcall(self.send, self, data)
      if not ok then
        if is_reraised(sent) then error(sent, 0) end
        self:handle_error(sent, debug.traceback())
        return
      end
      if sent > 0 then
        if sent < #first then
          fifo[fifo.first] = first:sub(sent + 1)
        else
          fifo_pop(fifo)
        end
      end
      return
    end
  end
end

function async_chat:discard_buffers()
  self.ac_in_buffer = ""
  self.incoming = {}
  self._collected = 0
  self.producer_fifo = { first = 1, last = 0 }
end

-- simple_producer(data [, buffer_size]): hands data out buffer_size bytes at a time
local simple_producer = {}
simple_producer.__index = simple_producer
simple_producer.__name = "asynchat.simple_producer"

function M.simple_producer(data, buffer_size)
  if type(data) ~= "string" then
    error("bad argument #1 to 'simple_producer' (string expected, got " .. type(data) .. ")", 2)
  end
  if buffer_size ~= nil and (math.type(buffer_size) ~= "integer" or buffer_size < 1) then
    error("bad argument #2 to 'simple_producer' (positive integer expected)", 2)
  end
  return setmetatable({ data = data, buffer_size = buffer_size or 512 }, simple_producer)
end

function simple_producer:more()
  local data = self.data
  if #data > self.buffer_size then
    self.data = data:sub(self.buffer_size + 1)
    return data:sub(1, self.buffer_size)
  end
  self.data = ""
  return data
end

return M
