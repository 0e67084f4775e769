-- Echo server on lua-asyncore's dispatcher_with_send, as in the README: the
-- buffered send takes care of short writes.
--
--   lua5.4 bench/servers/asyncore_with_send.lua [PORT]   (0: the system picks)
-- Prints "port N" once listening, then serves until killed.
local asyncore = require "asyncore"

local Echo = asyncore.dispatcher_with_send:subclass {
  __name = "Echo",

  handle_read = function(self)
    local data = self:recv(65536)
    if data ~= "" then self:send(data) end
  end,

  handle_close = function(self)
    self:close()
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
