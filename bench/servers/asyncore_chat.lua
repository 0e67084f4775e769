-- Line echo server on lua-asynchat: async_chat frames the input on "\n" (in
-- C, gathering the bytes with the C helper _collect_incoming_data), and each
-- complete line is pushed back with its terminator.
--
--   lua5.4 bench/servers/asyncore_chat.lua [PORT]   (0: the system picks)
-- Prints "port N" once listening, then serves until killed.
local asyncore = require "asyncore"
local asynchat = require "asynchat"

local Echo = asynchat.async_chat:subclass {
  __name = "LineEcho",

  init = function(self, sock)
    asynchat.async_chat.init(self, sock)
    self:set_terminator("\n")
  end,

  collect_incoming_data = asynchat.async_chat._collect_incoming_data,

  found_terminator = function(self)
    self:push(self:_get_data() .. "\n")
  end,
}

local Server = asyncore.dispatcher:subclass {
  __name = "Server",

  init = function(self, host, port)
    asyncore.dispatcher.init(self)
    self:create_socket()
    self:set_reuse_addr()
    self:bind(host, port)
    self:listen(1024)
  end,

  handle_accepted = function(_, sock)
    sock:setsockopt(asyncore.IPPROTO_TCP, asyncore.TCP_NODELAY, 1)
    Echo(sock)
  end,
}

local server = Server("127.0.0.1", math.tointeger(tonumber(arg[1] or "0")))
local _, port = server:getsockname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()
asyncore.loop()
