-- Echo server on luv (libuv for Lua, Debian's lua-luv): read_start hands each
-- chunk to a callback, which writes it back.
--
--   lua5.4 bench/servers/luv_echo.lua [PORT]   (0: the system picks)
-- Prints "port N" once listening, then serves until killed.
local uv = require "luv"

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", math.tointeger(tonumber(arg[1] or "0"))))
assert(server:listen(1024, function(err)
  assert(not err, err)
  local client = uv.new_tcp()
  server:accept(client)
  client:nodelay(true)
  client:read_start(function(rerr, data)
    if data then
      client:write(data)
    elseif not client:is_closing() then   -- end of file (or rerr, an error)
      client:close()
    end
  end)
end))

io.stdout:write("port ", server:getsockname().port, "\n")
io.stdout:flush()
uv.run()
