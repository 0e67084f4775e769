-- An echo client: connects, sends its lines one at a time, waits for each to
-- come back before sending the next, and closes once every line is echoed.
--
-- As a script:  lua5.4 examples/echo_client.lua HOST PORT [LINE ...]
--   sends the LINEs (or, with none, the lines of stdin), prints each line as
--   it comes back, and exits 0 only if every byte came back unchanged.
-- As a module:  local EchoClient = require "echo_client"
--               local c = EchoClient(host, port, {"one", "two"} [, map])
--               asyncore.loop(); assert(c:succeeded(), c.failure)
--   Hooks to override: on_sent(line), on_echo(line) (default: print it),
--   on_done().  Fields: done, failure (a message, or nil), echoed (the
--   lines received), bytes_sent, bytes_received.
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

local EchoClient = asyncore.dispatcher_with_send:subclass {
  __name = "EchoClient",

  -- EchoClient(host, port, lines [, map]); lines must not contain "\n".
  init = function(self, host, port, lines, map)
    asyncore.dispatcher_with_send.init(self, nil, map)
    for i, line in ipairs(lines) do
      if line:find("\n", 1, true) then
        error(("bad argument #3 to 'EchoClient' (line %d contains a newline)"):format(i), 3)
      end
    end
    self.lines = lines
    self.next_line = 0
    self.pending = ""
    self.echoed = {}
    self.bytes_sent, self.bytes_received = 0, 0
    self.done = false
    self.failure = nil
    self:create_socket()
    self:connect(host, port)
  end,

  handle_connect = function(self)
    self:send_next()
  end,

  -- Sends the next line, or closes when none is left.
  send_next = function(self)
    self.next_line = self.next_line + 1
    local line = self.lines[self.next_line]
    if line == nil then
      self.done = true
      self:close()
      self:on_done()
      return
    end
    self:on_sent(line)
    self.bytes_sent = self.bytes_sent + #line + 1
    self:send(line .. "\n")
  end,

  handle_read = function(self)
    local data = self:recv(8192)
    self.bytes_received = self.bytes_received + #data
    self.pending = self.pending .. data
    while not self.done do
      local newline = self.pending:find("\n", 1, true)
      if newline == nil then break end
      local line = self.pending:sub(1, newline - 1)
      self.pending = self.pending:sub(newline + 1)
      self.echoed[#self.echoed + 1] = line
      self:on_echo(line)
      if line ~= self.lines[#self.echoed] then
        self:fail(("line %d came back changed"):format(#self.echoed))
        return
      end
      self:send_next()
    end
  end,

  handle_close = function(self)
    if not self.done then
      self:fail(("connection closed with %d of %d lines echoed"):format(#self.echoed, #self.lines))
    end
    self:close()
  end,

  handle_error = function(self, err)
    self:fail(tostring(err))
  end,

  fail = function(self, message)
    self.failure = self.failure or message
    self.done = true
    self:close()
  end,

  -- True when every line came back unchanged and nothing else did.
  succeeded = function(self)
    if not self.done or self.failure or self.pending ~= "" or #self.echoed ~= #self.lines then
      return false
    end
    for i, line in ipairs(self.lines) do
      if self.echoed[i] ~= line then return false end
    end
    return true
  end,

  on_sent = function(self, line) end, -- luacheck: no unused args
  on_echo = function(self, line) print(line) end, -- luacheck: no unused args
  on_done = function(self) end, -- luacheck: no unused args
}

if script then
  local host, port = arg[1], math.tointeger(tonumber(arg[2]))
  if host == nil or port == nil then
    io.stderr:write("usage: lua5.4 examples/echo_client.lua HOST PORT [LINE ...]\n")
    os.exit(2)
  end
  local lines = table.move(arg, 3, #arg, 1, {})
  if #lines == 0 then
    for line in io.lines() do lines[#lines + 1] = line end
  end
  io.stdout:setvbuf("line")
  local client = EchoClient(host, port, lines)
  asyncore.loop()
  if not client:succeeded() then
    io.stderr:write("echo_client: ", client.failure or "not every line came back", "\n")
    os.exit(1)
  end
end

return EchoClient
