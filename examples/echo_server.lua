-- An echo server, after the one in Python's asyncore documentation: a
-- listening dispatcher that hands each accepted socket to an EchoHandler, a
-- dispatcher_with_send that sends back whatever it reads.
--
-- As a script:  lua5.4 examples/echo_server.lua [HOST [PORT]]
--   (default 127.0.0.1 8080; port 0 picks a free one) prints
--   "echo server listening on HOST port N", then serves until interrupted.
-- As a module:  local echo = require "echo_server"
--               local server = echo.EchoServer(host, port [, map])
--               local host, port = server:getsockname()
--   echo.EchoHandler is the per-connection class.  Override
--   EchoServer:on_connection(host, port) to change or silence the message
--   printed for each accepted connection.
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

local EchoHandler = asyncore.dispatcher_with_send:subclass {
  __name = "EchoHandler",

  handle_read = function(self)
    local data = self:recv(8192)
    if data ~= "" then
      self:send(data)
    end
  end,
}

local EchoServer = asyncore.dispatcher:subclass {
  __name = "EchoServer",
  Handler = EchoHandler,

  -- EchoServer(host, port [, map]): listening; its handlers join the same map.
  init = function(self, host, port, map)
    asyncore.dispatcher.init(self, nil, map)
    self.map = map
    self:create_socket()
    self:set_reuse_addr()
    self:bind(host, port)
    self:listen(5)
  end,

  handle_accepted = function(self, sock, host, port)
    self:on_connection(host, port)
    self.Handler(sock, self.map)
  end,

  on_connection = function(self, host, port) -- luacheck: no unused args
    print(("Incoming connection from %s:%s"):format(host, tostring(port)))
  end,
}

if script then
  local host = arg[1] or "127.0.0.1"
  local port = math.tointeger(tonumber(arg[2] or "8080"))
  if port == nil then
    io.stderr:write("usage: lua5.4 examples/echo_server.lua [HOST [PORT]]\n")
    os.exit(2)
  end
  io.stdout:setvbuf("line")
  local server = EchoServer(host, port)
  local bound_host, bound_port = server:getsockname()
  print(("echo server listening on %s port %d"):format(bound_host, bound_port))
  asyncore.loop()
end

return { EchoServer = EchoServer, EchoHandler = EchoHandler }
