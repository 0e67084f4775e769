-- Echo server on cqueues (Debian's lua-cqueues): one coroutine per
-- connection, reading whatever is there (up to 64 KiB) and writing it back
-- unbuffered.
--
--   lua5.4 bench/servers/cqueues_echo.lua [PORT]   (0: the system picks)
-- Prints "port N" once listening, then serves until killed.
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local cq = cqueues.new()
local server = socket.listen { host = "127.0.0.1", port = math.tointeger(tonumber(arg[1] or "0")),
                               reuseaddr = true, nodelay = true, backlog = 1024 }
assert(server:listen())
local _, _, port = server:localname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()

-- A connection ends at end of file or on an error (cqueues raises some
-- socket errors, ECONNRESET among them, so the loop runs under pcall).
local function serve(con)
  con:setmode("bn", "bn")
  pcall(function()
    while true do
      local data = con:xread(-65536, "bn")
      if not data then break end
      if not con:xwrite(data, "bn") then break end
    end
  end)
  con:close()
end

cq:wrap(function()
  for con in server:clients { nodelay = true } do
    cq:wrap(serve, con)
  end
end)

assert(cq:loop())
