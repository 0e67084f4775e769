-- A line chat server on asynchat: each connection is an async_chat that frames
-- its input into lines; every line a client sends goes to all the others,
-- prefixed by the sender's nick.  Lines may end in "\n" or "\r\n" (nc, telnet);
-- the server sends "\r\n".
--
--   hello             others see "<nick> hello"
--   //hello           a line that starts with "/": others see "<nick> /hello"
--   /nick NAME        rename (1-16 letters, digits, "-" or "_"; nicks are unique)
--   /who              "* N online: a, b, c" (in order of arrival)
--   /paste BYTES      the next BYTES bytes, newlines and all, go to the others
--                     as they are, after a "* NICK pastes BYTES bytes:" line
--   /quit [REASON]    "* bye", then the server ends the connection; the
--                     others see "* NICK has left (REASON)"
-- Arrivals, renames and departures (a /quit or a dropped connection) are
-- announced to the others as lines that start with "* ".
--
-- As a script:  lua5.4 examples/chat_server.lua [HOST [PORT]]
--   (default 127.0.0.1 8080; port 0 picks a free one) prints
--   "chat server listening on HOST port N", then serves until interrupted.
-- As a module:  local chat = require "chat_server"
--               local server = chat.ChatServer(host, port [, map])
--   chat.ChatHandler is the per-connection class; server.clients lists the
--   connected handlers in order of arrival.
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

local MAX_LINE = 4096        -- bytes a line may hold before the client is dropped
local MAX_PASTE = 1024 * 1024
local MAX_DRAIN = 1024 * 1024 -- bytes dropped after /quit before the connection is cut

local ChatHandler = async_chat:subclass {
  __name = "ChatHandler",

  -- ChatHandler(sock, server [, map])
  init = function(self, sock, server, map)
    async_chat.init(self, sock, map)
    self.server = server
    self.max_in_buffer = MAX_LINE -- a client that never ends its line costs at most this
    self.nick = server:guest_nick()
    self:set_terminator("\n")     -- "\r\n" ends in "\n" too; the "\r" is dropped below
    server:join(self)
  end,

  -- Lines and pasted blocks are gathered by async_chat's own list, read back
  -- with _get_data() when the terminator (a string or a count) is reached.
  collect_incoming_data = async_chat._collect_incoming_data,

  found_terminator = function(self)
    local data = self:_get_data()
    if self.leaving then return end -- lines pipelined after /quit are dropped
    if self.pasting then
      self.pasting = nil
      self:set_terminator("\n")
      local header = ("* %s pastes %d bytes:\r\n"):format(self.nick, #data)
      -- the block may not end a line; the next relayed line must start one
      if data:sub(-1) ~= "\n" then data = data .. "\r\n" end
      self.server:broadcast(self, header .. data)
      return
    end
    local line = data:gsub("\r$", "")
    if line == "" then return end
    if line:sub(1, 1) ~= "/" then
      self.server:broadcast(self, ("<%s> %s\r\n"):format(self.nick, line))
    elseif line:sub(1, 2) == "//" then
      self.server:broadcast(self, ("<%s> %s\r\n"):format(self.nick, line:sub(2)))
    else
      local command, rest = line:match("^/(%S*)%s*(.-)%s*$")
      local handler = self.commands[command:lower()]
      if handler then
        handler(self, rest)
      else
        self:say("* unknown command /" .. command .. " (try /nick, /who, /paste, /quit)")
      end
    end
  end,

  commands = {
    nick = function(self, name)
      if not name:match("^[%w_%-]+$") or #name > 16 then
        self:say("* a nick is 1 to 16 letters, digits, - or _")
      elseif name == self.nick then
        self:say("* you are already " .. name)
      elseif self.server:find_nick(name) then
        self:say("* the nick " .. name .. " is taken")
      else
        local old = self.nick
        self.nick = name
        self:say("* you are now " .. name)
        self.server:broadcast(self, ("* %s is now known as %s\r\n"):format(old, name))
      end
    end,

    who = function(self)
      local nicks = {}
      for i, client in ipairs(self.server.clients) do nicks[i] = client.nick end
      self:say(("* %d online: %s"):format(#nicks, table.concat(nicks, ", ")))
    end,

    paste = function(self, count)
      local n = math.tointeger(tonumber(count))
      if n == nil or n < 1 or n > MAX_PASTE then
        self:say(("* usage: /paste BYTES (1 to %d)"):format(MAX_PASTE))
        return
      end
      -- A byte count as terminator: the block may hold any bytes, "\n" included.
      self.pasting = true
      self:set_terminator(n)
    end,

    quit = function(self, reason)
      self:say("* bye")
      self:finish(reason ~= "" and reason or nil)
    end,
  },

  say = function(self, line)
    self:push(line .. "\r\n")
  end,

  -- Ends the session: the client leaves the room now, what is queued for it
  -- still goes out, then its connection is half-closed and its input dropped
  -- until it closes its side.  Closing at once, with its input unread,
  -- would reset the connection, and a reset can destroy "* bye" before the
  -- client has read it.
  finish = function(self, reason)
    if self.leaving then return end
    self.leaving = true
    self.quit_reason = reason
    self.server:leave(self)
    -- A function producer runs when everything queued before it is sent.
    self:push_with_producer(function()
      if not pcall(self.shutdown, self, asyncore.SHUT_WR) then self:handle_close() end
      return nil
    end)
  end,

  handle_read = function(self)
    if not self.leaving then return async_chat.handle_read(self) end
    -- recv() sees the client's EOF and calls handle_close; a client that
    -- keeps sending is cut off after MAX_DRAIN bytes.
    self.drained = (self.drained or 0) + #self:recv(65536)
    if self.drained > MAX_DRAIN then self:handle_close() end
  end,

  -- Every way out (EOF, a reset, an error) ends here: leave() only announces once.
  handle_close = function(self)
    self.server:leave(self)
    async_chat.handle_close(self)
  end,

  handle_error = function(self, err, traceback)
    if tostring(err):find("max_in_buffer", 1, true) and not self.leaving then
      self:say(("* line too long (the limit is %d bytes), bye"):format(MAX_LINE))
      self:finish("line too long")
      return
    end
    async_chat.handle_error(self, err, traceback)
  end,
}

local ChatServer = asyncore.dispatcher:subclass {
  __name = "ChatServer",
  Handler = ChatHandler,

  -- ChatServer(host, port [, map]): listening; its handlers join the same map.
  init = function(self, host, port, map)
    asyncore.dispatcher.init(self, nil, map)
    self.map = map
    self.clients = {}
    self.guests = 0
    self:create_socket()
    self:set_reuse_addr()
    self:bind(host, port)
    self:listen(16)
  end,

  handle_accepted = function(self, sock)
    self.Handler(sock, self, self.map)
  end,

  guest_nick = function(self)
    repeat
      self.guests = self.guests + 1
    until not self:find_nick("guest" .. self.guests)
    return "guest" .. self.guests
  end,

  find_nick = function(self, nick)
    for _, client in ipairs(self.clients) do
      if client.nick == nick then return client end
    end
    return nil
  end,

  join = function(self, client)
    self.clients[#self.clients + 1] = client
    client:say(("* welcome, you are %s (/nick NAME, /who, /paste BYTES, /quit)"):format(client.nick))
    self:broadcast(client, ("* %s has joined\r\n"):format(client.nick))
  end,

  leave = function(self, client)
    for i, c in ipairs(self.clients) do
      if c == client then
        table.remove(self.clients, i)
        local reason = client.quit_reason and " (" .. client.quit_reason .. ")" or ""
        self:broadcast(client, ("* %s has left%s\r\n"):format(client.nick, reason))
        return
      end
    end
  end,

  -- Sends data to every client but sender.  A failing push may close a
  -- client (and so leave()), so the list is copied first.
  broadcast = function(self, sender, data)
    local targets = table.move(self.clients, 1, #self.clients, 1, {})
    for _, client in ipairs(targets) do
      if client ~= sender and not client.leaving and client.connected then
        client:push(data)
      end
    end
  end,
}

if script then
  local host = arg[1] or "127.0.0.1"
  local port = math.tointeger(tonumber(arg[2] or "8080"))
  if port == nil then
    io.stderr:write("usage: lua5.4 examples/chat_server.lua [HOST [PORT]]\n")
    os.exit(2)
  end
  io.stdout:setvbuf("line")
  local server = ChatServer(host, port)
  local bound_host, bound_port = server:getsockname()
  print(("chat server listening on %s port %d"):format(bound_host, bound_port))
  asyncore.loop()
end

return { ChatServer = ChatServer, ChatHandler = ChatHandler }
