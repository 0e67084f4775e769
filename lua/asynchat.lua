-- asynchat: terminator framing and buffered, producer-driven output on top of
-- asyncore.dispatcher, with Python 3.11 asynchat's semantics.
local asyncore = require "asyncore"

local M = {}

local dispatcher = asyncore.dispatcher

local core = require "asyncore.core"

-- find_prefix_at_end(haystack, needle): the length of the longest proper
-- prefix of needle that haystack ends with (0 if none).
M.find_prefix_at_end = core.find_prefix_at_end

-- Framing and the output queue are C (src/lchat.c, src/framing.c,
-- src/buffer.c); each instance keeps its buffers in its _chat field.
local async_chat = dispatcher:subclass {
  __name = "asynchat.async_chat",
  ac_in_buffer_size = 65536,
  ac_out_buffer_size = 65536,
  set_terminator = core.chat_set_terminator,
  get_terminator = core.chat_get_terminator,
  _collect_incoming_data = core.chat_collect,
  _get_data = core.chat_get_data,
  handle_read = core.chat_handle_read,
  handle_write = core.chat_handle_write,
  push = core.chat_push,
  push_with_producer = core.chat_push_with_producer,
  close_when_done = core.chat_close_when_done,
  initiate_send = core.chat_initiate_send,
  writable = core.chat_writable,
  discard_buffers = core.chat_discard_buffers,
  _out_buffered = core.chat_out_buffered,
}
M.async_chat = async_chat

-- The buffers (the _chat field) are made on first use: an idle channel has none.
function async_chat.init(self, sock, map)
  self.max_in_buffer = 1024 * 1024
  dispatcher.init(self, sock, map)
end

function async_chat:collect_incoming_data(data) -- luacheck: no unused args
  error("collect_incoming_data: must be implemented in subclass", 2)
end

function async_chat:found_terminator()
  error("found_terminator: must be implemented in subclass", 2)
end

function async_chat:handle_close()
  self:close()
end

-- close(): replies pushed by the handlers of the read being framed go first
local flush = core.chat_flush
function async_chat:close()
  flush(self)
  dispatcher.close(self)
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
