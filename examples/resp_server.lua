-- A key-value server that speaks the Redis protocol (RESP2), on asynchat, so
-- that redis-cli and redis-benchmark can talk to it.  Requests are arrays of
-- bulk strings:
--     *<count>\r\n  then, count times,  $<length>\r\n<length bytes>\r\n
-- framed with a string terminator for the header lines and a byte count
-- (length + 2, the payload and its CRLF) for each payload, so payloads may
-- hold any bytes.  Inline commands ("PING\r\n", "SET k v\n") work too, as in
-- Redis.  Pipelined requests are answered in order, the replies to one read
-- sent together.
--
-- Commands: PING [msg], ECHO msg, GET key, SET key value [NX|XX] [GET],
-- DEL key..., EXISTS key..., INCR/DECR key, INCRBY/DECRBY key n, DBSIZE,
-- FLUSHDB, FLUSHALL, SELECT 0, QUIT, and what clients ask at connect:
-- CONFIG GET pattern (a few read-only settings) and COMMAND [...] (an empty
-- list).  No expiry, no persistence, one database.
--
-- As a script:  lua5.4 examples/resp_server.lua [HOST [PORT]]
--   (default 127.0.0.1 6379; port 0 picks a free one) prints
--   "resp server listening on HOST port N", then serves until interrupted.
-- As a module:  local resp = require "resp_server"
--               local server = resp.RespServer(host, port [, map])
--   server.store is the key space (a table, key -> string value);
--   resp.RespHandler is the per-connection class, resp.commands the command
--   table (NAME -> {arity =, run = function(handler, args) -> reply or nil}).
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

-- Redis's own limits: an inline request or header line of at most 64 KiB, a
-- payload of at most 512 MiB; the argument count is capped lower than Redis's
-- so that one header cannot ask for a huge table.
local MAX_LINE = 64 * 1024
local MAX_BULK = 512 * 1024 * 1024
local MAX_ARGS = 1024 * 1024
local MAX_DRAIN = 1024 * 1024 -- bytes dropped after QUIT before the connection is cut

------------------------------------------------------------------------------
-- replies
------------------------------------------------------------------------------

local function simple(s) return "+" .. s .. "\r\n" end
local function integer(n) return (":%d\r\n"):format(n) end
local NIL = "$-1\r\n"
local OK = simple("OK")

-- Error text is one line on the wire, whatever the client sent.
local function err(s) return "-" .. s:gsub("[\r\n]", " ") .. "\r\n" end

local function bulk(s)
  if s == nil then return NIL end
  return "$" .. #s .. "\r\n" .. s .. "\r\n"
end

local function array(items)
  local out = { "*" .. #items .. "\r\n" }
  for i, item in ipairs(items) do out[i + 1] = bulk(item) end
  return table.concat(out)
end

local NOT_INTEGER = err("ERR value is not an integer or out of range")

-- s as an integer, if it is one written the way Redis accepts it: decimal,
-- no sign but "-", no leading zeros or spaces, within 64 bits.
local function to_integer(s)
  local n = math.tointeger(tonumber(s))
  if n ~= nil and tostring(n) == s then return n end
  return nil
end

------------------------------------------------------------------------------
-- commands
------------------------------------------------------------------------------

-- Read-only settings for CONFIG GET: redis-benchmark asks for these two and
-- warns when a server does not answer.
local CONFIG = { save = "", appendonly = "no" }

-- A Redis glob (* ? and [...]) as an anchored, case-insensitive Lua pattern.
local function glob_pattern(glob)
  local p = glob:lower():gsub("[%^%$%(%)%%%.%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".")
  return "^" .. p .. "$"
end

local function add(handler, key, by)
  local store = handler.server.store
  local n = 0
  if store[key] ~= nil then
    n = to_integer(store[key])
    if n == nil then return NOT_INTEGER end
  end
  if (by > 0 and n > math.maxinteger - by) or (by < 0 and n < math.mininteger - by) then
    return err("ERR increment or decrement would overflow")
  end
  n = n + by
  store[key] = tostring(n)
  return integer(n)
end

local function by_argument(args, negate)
  local by = to_integer(args[3])
  if by == nil or (negate and by == math.mininteger) then return nil end
  return negate and -by or by
end

local commands = {
  PING = { arity = -1, run = function(_, args)
    if #args > 2 then return err("ERR wrong number of arguments for 'ping' command") end
    return args[2] and bulk(args[2]) or simple("PONG")
  end },

  ECHO = { arity = 2, run = function(_, args) return bulk(args[2]) end },

  GET = { arity = 2, run = function(h, args) return bulk(h.server.store[args[2]]) end },

  SET = { arity = -3, run = function(h, args)
    local store, key = h.server.store, args[2]
    local nx, xx, get
    for i = 4, #args do
      local option = args[i]:upper()
      if option == "NX" and not xx then nx = true
      elseif option == "XX" and not nx then xx = true
      elseif option == "GET" then get = true
      else return err("ERR syntax error") end
    end
    local old = store[key]
    local reply = get and bulk(old) or OK
    if (nx and old ~= nil) or (xx and old == nil) then
      return get and reply or NIL
    end
    store[key] = args[3]
    return reply
  end },

  DEL = { arity = -2, run = function(h, args)
    local store, n = h.server.store, 0
    for i = 2, #args do
      if store[args[i]] ~= nil then
        store[args[i]] = nil
        n = n + 1
      end
    end
    return integer(n)
  end },

  -- Counts a key named twice twice, as Redis does.
  EXISTS = { arity = -2, run = function(h, args)
    local store, n = h.server.store, 0
    for i = 2, #args do
      if store[args[i]] ~= nil then n = n + 1 end
    end
    return integer(n)
  end },

  INCR = { arity = 2, run = function(h, args) return add(h, args[2], 1) end },
  DECR = { arity = 2, run = function(h, args) return add(h, args[2], -1) end },
  INCRBY = { arity = 3, run = function(h, args)
    local by = by_argument(args, false)
    return by and add(h, args[2], by) or NOT_INTEGER
  end },
  DECRBY = { arity = 3, run = function(h, args)
    local by = by_argument(args, true)
    return by and add(h, args[2], by) or NOT_INTEGER
  end },

  DBSIZE = { arity = 1, run = function(h)
    local n = 0
    for _ in pairs(h.server.store) do n = n + 1 end
    return integer(n)
  end },

  FLUSHDB = { arity = -1, run = function(h) h.server.store = {}; return OK end },

  SELECT = { arity = 2, run = function(_, args)
    if args[2] == "0" then return OK end
    return to_integer(args[2]) and err("ERR DB index is out of range") or NOT_INTEGER
  end },

  CONFIG = { arity = -2, run = function(_, args)
    local sub = args[2]:upper()
    if sub ~= "GET" then
      return err(("ERR unknown subcommand '%s'. Only CONFIG GET is supported."):format(args[2]))
    end
    if #args < 3 then return err("ERR wrong number of arguments for 'config|get' command") end
    local names, found = {}, {}
    for i = 3, #args do
      local pattern = glob_pattern(args[i])
      for name in pairs(CONFIG) do
        if name:match(pattern) and not found[name] then
          found[name] = true
          names[#names + 1] = name
        end
      end
    end
    table.sort(names)
    local items = {}
    for _, name in ipairs(names) do
      items[#items + 1] = name
      items[#items + 1] = CONFIG[name]
    end
    return array(items)
  end },

  -- redis-cli asks for COMMAND DOCS to show hints: there are none to give.
  COMMAND = { arity = -1, run = function(_, args)
    if args[2] and args[2]:upper() == "COUNT" then return integer(0) end
    return array({})
  end },

  QUIT = { arity = -1, run = function(h)
    h:reply(OK)
    h:stop_reading()
  end },
}
commands.FLUSHALL = commands.FLUSHDB

local function unknown_command(args)
  local shown = {}
  for i = 2, #args do
    shown[#shown + 1] = "'" .. args[i]:sub(1, 128) .. "' "
    if #table.concat(shown) >= 128 then break end
  end
  return err(("ERR unknown command '%s', with args beginning with: %s")
    :format(args[1]:sub(1, 128), table.concat(shown)))
end

------------------------------------------------------------------------------
-- inline commands
------------------------------------------------------------------------------

local ESCAPES = { n = "\n", r = "\r", t = "\t", b = "\b", a = "\a" }

-- Splits an inline request into arguments as redis-cli and Redis do: words
-- separated by spaces, "double quoted" with \-escapes (\n, \xHH, ...) or
-- 'single quoted'.  Returns nil on unbalanced quotes.
local function split_inline(line)
  local args, i, n = {}, 1, #line
  while true do
    i = line:find("[^ \t]", i)
    if i == nil then return args end
    local c = line:sub(i, i)
    if c == '"' then
      local word, j = {}, i + 1
      while true do
        local ch = line:sub(j, j)
        if ch == "" then return nil end
        if ch == '"' then break end
        if ch == "\\" then
          local hex = line:match("^x(%x%x)", j + 1)
          if hex then
            ch, j = string.char(tonumber(hex, 16)), j + 3
          else
            local e = line:sub(j + 1, j + 1)
            ch, j = ESCAPES[e] or e, j + 1
          end
        end
        word[#word + 1] = ch
        j = j + 1
      end
      -- a closing quote must end the word
      if j < n and not line:sub(j + 1, j + 1):match("[ \t]") then return nil end
      args[#args + 1], i = table.concat(word), j + 1
    elseif c == "'" then
      local close = line:find("'", i + 1, true)
      if close == nil or (close < n and not line:sub(close + 1, close + 1):match("[ \t]")) then
        return nil
      end
      args[#args + 1], i = line:sub(i + 1, close - 1), close + 1
    else
      local stop = line:find("[ \t]", i) or n + 1
      args[#args + 1], i = line:sub(i, stop - 1), stop
    end
  end
end

------------------------------------------------------------------------------
-- the connection
------------------------------------------------------------------------------

local RespHandler = async_chat:subclass {
  __name = "RespHandler",

  -- RespHandler(sock, server [, map])
  init = function(self, sock, server, map)
    async_chat.init(self, sock, map)
    self.server = server
    self.max_in_buffer = MAX_LINE -- bounds a header or inline line, not a payload
    self:expect_request()
  end,

  collect_incoming_data = async_chat._collect_incoming_data,

  -- Header and inline lines end in "\n"; a "\r" before it is dropped.  Redis
  -- accepts inline commands ended by a bare "\n" too, so "\r\n" as the
  -- terminator would be stricter than the real thing.
  expect_request = function(self)
    self.state = "request"
    self.args = nil
    self:set_terminator("\n")
  end,

  found_terminator = function(self)
    local data = self:_get_data()
    if self.stopped then return end -- requests pipelined after QUIT or an error
    local state = self.state
    if state == "payload" then
      if data:sub(-2) ~= "\r\n" then
        return self:protocol_error("bulk string not terminated by CRLF")
      end
      local args = self.args
      args[#args + 1] = data:sub(1, -3)
      if #args < self.count then
        self.state = "length"
        self:set_terminator("\n")
      else
        self:expect_request()
        self:execute(args)
      end
      return
    end
    local line = data:gsub("\r$", "")
    if state == "length" then
      local length = line:sub(1, 1) == "$" and to_integer(line:sub(2))
      if line:sub(1, 1) ~= "$" then
        return self:protocol_error(("expected '$', got '%s'"):format(line:sub(1, 1)))
      elseif not length or length < 0 or length > MAX_BULK then
        return self:protocol_error("invalid bulk length")
      end
      -- The payload and its CRLF, whatever bytes they are: a byte count.
      self.state = "payload"
      self:set_terminator(length + 2)
    elseif line:sub(1, 1) == "*" then
      local count = to_integer(line:sub(2))
      if count == nil or count > MAX_ARGS then
        return self:protocol_error("invalid multibulk length")
      end
      if count > 0 then -- Redis skips "*0" and "*-1" without a reply
        self.state, self.count, self.args = "length", count, {}
      end
    else
      local args = split_inline(line)
      if args == nil then return self:protocol_error("unbalanced quotes in request") end
      if #args > 0 then self:execute(args) end
    end
  end,

  execute = function(self, args)
    local command = commands[args[1]:upper()]
    local reply
    if command == nil then
      reply = unknown_command(args)
    elseif (command.arity > 0 and #args ~= command.arity) or #args < -command.arity then
      reply = err(("ERR wrong number of arguments for '%s' command"):format(args[1]:lower()))
    else
      reply = command.run(self, args)
    end
    if reply then self:reply(reply) end
  end,

  -- Replies made while a read is being handled wait in self.batch, so that
  -- a pipelined batch is answered with one push (one send) instead of one
  -- per command.
  reply = function(self, data)
    local batch = self.batch
    if batch then
      batch[#batch + 1] = data
    else
      self:push(data)
    end
  end,

  flush = function(self)
    local batch = self.batch
    self.batch = nil
    if batch and #batch > 0 then self:push(table.concat(batch)) end
  end,

  handle_read = function(self)
    if self.stopped then
      -- recv() sees the client's EOF and calls handle_close; a client that
      -- keeps sending is cut off after MAX_DRAIN bytes.
      self.drained = (self.drained or 0) + #self:recv(65536)
      if self.drained > MAX_DRAIN then self:handle_close() end
      return
    end
    self.batch = {}
    async_chat.handle_read(self)
    self:flush()
  end,

  -- After QUIT or a protocol error: the replies so far (the batch too) go
  -- out, then the connection is half-closed and what the client still sends
  -- is dropped until it closes its side.  Closing at once, with input
  -- unread, would reset the connection, and a reset can destroy the last
  -- replies before the client has read them.
  stop_reading = function(self)
    if self.stopped then return end
    self.stopped = true
    self:flush()
    -- A function producer runs when everything queued before it is sent.
    self:push_with_producer(function()
      if not pcall(self.shutdown, self, asyncore.SHUT_WR) then self:handle_close() end
      return nil
    end)
  end,

  protocol_error = function(self, message)
    self:reply(err("ERR Protocol error: " .. message))
    self:stop_reading()
  end,

  handle_error = function(self, e, traceback)
    if tostring(e):find("max_in_buffer", 1, true) and not self.stopped then
      -- The replies to the requests before the long line still go out first.
      self:protocol_error(self.state == "request" and "too big inline request"
        or "too big bulk count string")
      return
    end
    self.batch = nil
    async_chat.handle_error(self, e, traceback)
  end,
}

local RespServer = asyncore.dispatcher:subclass {
  __name = "RespServer",
  Handler = RespHandler,

  -- RespServer(host, port [, map]): listening; its handlers join the same map.
  init = function(self, host, port, map)
    asyncore.dispatcher.init(self, nil, map)
    self.map = map
    self.store = {}
    self:create_socket()
    self:set_reuse_addr()
    self:bind(host, port)
    self:listen(128) -- redis-benchmark opens its 50 connections at once
  end,

  handle_accepted = function(self, sock)
    self.Handler(sock, self, self.map)
  end,
}

if script then
  local host = arg[1] or "127.0.0.1"
  local port = math.tointeger(tonumber(arg[2] or "6379"))
  if port == nil then
    io.stderr:write("usage: lua5.4 examples/resp_server.lua [HOST [PORT]]\n")
    os.exit(2)
  end
  io.stdout:setvbuf("line")
  local server = RespServer(host, port)
  local bound_host, bound_port = server:getsockname()
  print(("resp server listening on %s port %d"):format(bound_host, bound_port))
  asyncore.loop()
end

return { RespServer = RespServer, RespHandler = RespHandler, commands = commands }
