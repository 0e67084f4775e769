-- The HTTP client from Python's asyncore documentation, ported to lua-asyncore.
--
-- As a script:  lua5.4 examples/http_client.lua HOST PORT [PATH]
--   sends "GET PATH HTTP/1.0" and writes the whole response (status line,
--   headers and body, byte for byte) to stdout.
-- As a module:  local HTTPClient = require "http_client"
--               HTTPClient(host, port, path [, map]); asyncore.loop()
--
-- Differences from the Python original: the port is an argument (Python's
-- example always uses 80), and handle_read writes the bytes with io.write,
-- because Lua's print would add a newline after every chunk.
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

local HTTPClient = asyncore.dispatcher:subclass {
  __name = "HTTPClient",

  init = function(self, host, port, path, map)
    asyncore.dispatcher.init(self, nil, map)
    self:create_socket()
    self:connect(host, port)
    self.buffer = ("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n"):format(path, host)
  end,

  handle_connect = function(self) -- luacheck: no unused args
  end,

  handle_close = function(self)
    self:close()
  end,

  handle_read = function(self)
    io.write(self:recv(8192))
  end,

  writable = function(self)
    return #self.buffer > 0
  end,

  handle_write = function(self)
    local sent = self:send(self.buffer)
    self.buffer = self.buffer:sub(sent + 1)
  end,
}

if script then
  local host, port, path = arg[1], math.tointeger(tonumber(arg[2])), arg[3] or "/"
  if host == nil or port == nil then
    io.stderr:write("usage: lua5.4 examples/http_client.lua HOST PORT [PATH]\n")
    os.exit(2)
  end
  local client, failed = HTTPClient(host, port, path), false
  function client:handle_error(err, traceback)
    failed = true
    HTTPClient.handle_error(self, err, traceback)
  end
  asyncore.loop()
  io.stdout:flush()
  os.exit(failed and 1 or 0)
end

return HTTPClient
