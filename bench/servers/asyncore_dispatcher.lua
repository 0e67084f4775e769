-- Echo server on lua-asyncore's plain dispatcher, written the way Python's
-- asyncore documentation teaches: handle_read receives and sends back what
-- it can; bytes the socket does not take wait in self.pending, and writable()
-- asks for write events only while there are some.
--
--   lua5.4 bench/servers/asyncore_dispatcher.lua [PORT]   (0: the system picks)
-- Prints "port N" once listening, then serves until killed.
local asyncore = require "asyncore"

local Echo = asyncore.dispatcher:subclass {
  __name = "Echo",

  pending = "", -- bytes not yet echoed; on the class, so an idle channel stores none

  writable = function(self)
    return self.pending ~= ""
  end,

  handle_read = function(self)
    local data = self:recv(65536)
    if data == "" then return end            -- end of file: recv closed us
    if self.pending ~= "" then               -- keep the order of the bytes
      self.pending = self.pending .. data
      return
    end
    local n = self:send(data)
    if n < #data then self.pending = data:sub(n + 1) end
  end,

  handle_write = function(self)
    local n = self:send(self.pending)
    self.pending = self.pending:sub(n + 1)
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
