-- Echo server on LuaSocket (Debian's lua-socket) with a socket.select loop:
-- non-blocking sockets, bytes the socket does not take wait in pending[c]
-- and c joins the write set until they are gone.  select() is limited to
-- FD_SETSIZE (1024) descriptors.
--
--   lua5.4 bench/servers/luasocket_echo.lua [PORT]   (0: the system picks)
-- Prints "port N" once listening, then serves until killed.
local socket = require "socket"

local server = assert(socket.bind("127.0.0.1", math.tointeger(tonumber(arg[1] or "0")), 1024))
server:settimeout(0)
local _, port = server:getsockname()
io.stdout:write("port ", port, "\n")
io.stdout:flush()

local recvt, sendt = { server }, {}
local rpos, spos = {}, {}          -- socket -> its index in recvt / sendt
local pending = {}                 -- socket -> bytes not yet sent

local function add(set, pos, s)
  set[#set + 1] = s
  pos[s] = #set
end

local function remove(set, pos, s)
  local i, last = pos[s], #set
  if not i then return end
  set[i] = set[last]
  pos[set[i]] = i
  set[last] = nil
  pos[s] = nil
end

local function drop(c)
  remove(recvt, rpos, c)
  remove(sendt, spos, c)
  pending[c] = nil
  c:close()
end

-- Sends data (or what is pending) on c; keeps the rest.
local function flush(c, data)
  local last, err, partial = c:send(data)
  local sent = last or partial or 0
  if err and err ~= "timeout" then drop(c) return end
  if sent < #data then
    pending[c] = data:sub(sent + 1)
    if not spos[c] then add(sendt, spos, c) end
  else
    pending[c] = nil
    remove(sendt, spos, c)
  end
end

while true do
  local readable, writable = socket.select(recvt, sendt)
  for _, s in ipairs(readable) do
    if s == server then
      local c = server:accept()
      while c do
        c:settimeout(0)
        c:setoption("tcp-nodelay", true)
        add(recvt, rpos, c)
        c = server:accept()
      end
    elseif rpos[s] then
      local data, err, partial = s:receive(65536)
      data = data or partial
      if data and #data > 0 then
        if pending[s] then pending[s] = pending[s] .. data else flush(s, data) end
      end
      if err == "closed" then drop(s) end
    end
  end
  for _, s in ipairs(writable) do
    if pending[s] then flush(s, pending[s]) end
  end
end
