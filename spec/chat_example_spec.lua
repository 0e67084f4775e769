-- examples/chat_server.lua as users meet it: the server in a lua5.4 child
-- process, several nc and telnet clients connected at once, each fed through a
-- pipe and writing what it receives to a file that the tests read.  Run from
-- the checkout root.
local asyncore = require "asyncore"
local support = require "support"

local quote = support.shell_quote

-- The server child finds the modules (and, under make asan, the instrumented
-- core) where this process does.
local LUA = ("env LUA_PATH=%s LUA_CPATH=%s lua5.4"):format(quote(package.path), quote(package.cpath))

local wait_until = support.wait_until

local make_tmpdir = support.make_tmpdir

local read_file = support.read_file_or_empty

-- Whether pid is a live (not zombie) process running the program comm.
local function running(pid, comm)
  local stat = read_file("/proc/" .. pid .. "/stat")
  local name, state = stat:match("^%d+ %((.-)%) (%S)")
  return name == comm and state ~= "Z"
end

------------------------------------------------------------------------------
-- the server child
------------------------------------------------------------------------------

local function start_server()
  local out = assert(io.popen(("echo $$; exec timeout 60 %s examples/chat_server.lua 127.0.0.1 0 2>&1")
    :format(LUA), "r"))
  local server = { pid = math.tointeger(tonumber(out:read("l"))), out = out }
  local line = out:read("l")
  server.port = math.tointeger(tonumber(line and line:match("^chat server listening on 127%.0%.0%.1 port (%d+)$")))
  return server, line
end

local function stop_server(server)
  if server and server.out then
    os.execute("kill " .. server.pid .. " 2>/dev/null")
    server.out:close()
    server.out = nil
  end
end

------------------------------------------------------------------------------
-- clients: nc or telnet, stdin a pipe from this process, stdout to a file
------------------------------------------------------------------------------

local Client = {}
Client.__index = Client

-- Starts `program args...` (nc or telnet) as client `name`.  When the program
-- ends, cat drains the pipe, so a write to a client that has gone never
-- raises SIGPIPE here; cat is retried because telnet leaves the pipe
-- non-blocking (EAGAIN).  popen'ed children do not inherit the other
-- clients' pipes, so closing one pipe is an EOF that only its client sees.
local DRAIN = "until env -u LD_PRELOAD cat > /dev/null 2>&1; do sleep 0.05; done"

local function start_client(dir, name, program, args)
  local self = setmetatable({ name = name, program = program,
                              path = dir .. "/" .. name .. ".out" }, Client)
  local pidfile = dir .. "/" .. name .. ".pid"
  local inner = ("echo $$ > %s; exec %s %s"):format(quote(pidfile), program, args)
  self.input = assert(io.popen(("env -u LD_PRELOAD timeout 30 sh -c %s > %s 2>&1; %s")
    :format(quote(inner), quote(self.path), DRAIN), "w"))
  assert(wait_until(function()
    self.pid = math.tointeger(tonumber(read_file(pidfile):match("%d+")))
    return self.pid ~= nil
  end), name .. ": no pid")
  return self
end

function Client:send(text)
  assert(self.input:write(text))
  assert(self.input:flush())
end

-- Everything received so far, as it came.
function Client:output()
  return read_file(self.path)
end

-- The lines received so far, each without its "\r\n" (or "\n").
function Client:lines()
  local t = {}
  for line in self:output():gmatch("([^\n]*)\n") do t[#t + 1] = (line:gsub("\r$", "")) end
  return t
end

function Client:has_line(line)
  for _, l in ipairs(self:lines()) do
    if l == line then return true end
  end
  return false
end

-- Waits for a line equal to `line`; fails the test, showing the output, if none comes.
function Client:expect(line, step)
  assert(wait_until(function() return self:has_line(line) end, step),
    ("%s never received %q; it received:\n%s"):format(self.name, line, self:output()))
end

-- The lines that start with prefix, in order.
function Client:lines_from(prefix)
  local t = {}
  for _, l in ipairs(self:lines()) do
    if l:sub(1, #prefix) == prefix then t[#t + 1] = l end
  end
  return t
end

function Client:alive()
  return self.pid ~= nil and running(self.pid, self.program)
end

-- Ends the client program (its socket closes) by its pid.
function Client:kill()
  if self:alive() then os.execute("kill " .. self.pid .. " 2>/dev/null") end
end

-- Ends its input and waits for its shell to finish.
function Client:close()
  if self.input then
    self.input:close()
    self.input = nil
  end
end

------------------------------------------------------------------------------

describe("examples/chat_server.lua", function()
  local dir, server, clients

  before_each(function()
    clients = {}
    dir = make_tmpdir()
    local line
    server, line = start_server()
    assert(server.port, "chat_server.lua did not start: " .. tostring(line))
  end)

  after_each(function()
    for _, client in ipairs(clients) do client:kill() end
    for _, client in ipairs(clients) do client:close() end
    stop_server(server)
    os.execute("rm -rf " .. quote(dir))
  end)

  -- A client connected and welcomed; guests are numbered in order of arrival.
  local function connect(name, program, flags)
    program = program or "nc"
    local client = start_client(dir, name, program, ("%s 127.0.0.1 %d"):format(flags or "", server.port))
    clients[#clients + 1] = client
    assert(wait_until(function() return client:output():find("* welcome, you are ", 1, true) ~= nil end),
      name .. " was not welcomed:\n" .. client:output())
    client.nick = client:output():match("%* welcome, you are (%S+) ")
    return client
  end

  it("relays each line to every other client, in order, after the sender's nick", function()
    local a = connect("a")
    local b = connect("b", "nc", "-C") -- sends "\r\n" line endings
    local c = connect("c")
    assert.are.same({ "guest1", "guest2", "guest3" }, { a.nick, b.nick, c.nick })
    a:expect("* guest2 has joined")
    a:expect("* guest3 has joined")
    b:expect("* guest3 has joined")

    local from_a, from_b = {}, {}
    for i = 1, 50 do
      from_a[i] = ("<guest1> message %d from a"):format(i)
      from_b[i] = ("<guest2> message %d from b, with CRLF"):format(i)
    end
    -- Both write all their lines at once, so the server reads many per recv.
    a:send(table.concat(from_a, "\n"):gsub("<guest1> ", "") .. "\n")
    b:send(table.concat(from_b, "\n"):gsub("<guest2> ", "") .. "\n")

    c:expect(from_a[50])
    c:expect(from_b[50])
    b:expect(from_a[50])
    a:expect(from_b[50])
    assert.are.same(from_a, c:lines_from("<guest1> "))
    assert.are.same(from_b, c:lines_from("<guest2> "))
    assert.are.same(from_a, b:lines_from("<guest1> "))
    assert.are.same(from_b, a:lines_from("<guest2> "))
    -- nobody hears their own lines; the "\r" of b's lines is not relayed
    assert.are.same({}, a:lines_from("<guest1> "))
    assert.are.same({}, b:lines_from("<guest2> "))
    assert.is_nil(c:output():find("\r\r", 1, true))
    assert.is_truthy(c:output():find("<guest2> message 1 from b, with CRLF\r\n", 1, true))
  end)

  it("renames with /nick, lists with /who, and refuses a taken or bad nick", function()
    local a = connect("a")
    local b = connect("b", "telnet") -- telnet sends "\r\n"
    local c = connect("c")
    a:send("/nick alice\n")
    a:expect("* you are now alice")
    b:expect("* guest1 is now known as alice")
    c:expect("* guest1 is now known as alice")

    b:send("/nick alice\n/nick two words\n/nick bob\n")
    b:expect("* the nick alice is taken")
    b:expect("* a nick is 1 to 16 letters, digits, - or _")
    b:expect("* you are now bob")
    c:expect("* guest2 is now known as bob")

    c:send("/who\n")
    c:expect("* 3 online: alice, bob, guest3")

    a:send("hello under a new name\n//slash is not a command\n/frobnicate\n")
    b:expect("<alice> hello under a new name")
    c:expect("<alice> /slash is not a command")
    a:expect("* unknown command /frobnicate (try /nick, /who, /paste, /quit)")
    assert.is_false(c:has_line("<alice> /frobnicate"))
    assert.are.same({}, c:lines_from("<guest1> "))
  end)

  it("says bye on /quit, closes the connection and tells the others", function()
    local a = connect("a", "telnet")
    local b = connect("b")
    -- The line after /quit in the same write is never relayed.
    a:send("last words\n/quit see you\nnot relayed\n")
    a:expect("* bye")
    -- telnet reports the server's close and exits
    a:expect("Connection closed by foreign host.")
    assert.is_true(wait_until(function() return not a:alive() end), "telnet did not exit")
    b:expect("<guest1> last words")
    b:expect("* guest1 has left (see you)")
    b:send("/who\n")
    b:expect("* 1 online: guest2")
    assert.is_false(b:has_line("<guest1> not relayed"))
  end)

  it("announces a client that disconnects, killed or at the end of its input", function()
    local a = connect("a")
    local b = connect("b")
    -- -N: half-close the connection at the end of input, as a finished script does
    local c = connect("c", "nc", "-N")
    b:kill()
    a:expect("* guest2 has left")
    c:expect("* guest2 has left")

    c:send("going now\n")
    a:expect("<guest3> going now")
    c:close() -- returns once nc exits: the server closed its side too
    a:expect("* guest3 has left")
    assert.is_false(c:alive())

    a:send("/who\n")
    a:expect("* 1 online: guest1")
  end)

  it("relays a /paste block of exactly BYTES bytes, newlines and all", function()
    local a = connect("a")
    local b = connect("b")
    local block = "first line\n/quit is only text here\r\nno newline at the end"
    a:send(("/paste %d\n%safter the paste\n"):format(#block, block))
    b:expect("<guest1> after the paste")
    local header = ("* guest1 pastes %d bytes:\r\n"):format(#block)
    local expected = header .. block .. "\r\n<guest1> after the paste\r\n"
    assert.is_truthy(b:output():find(expected, 1, true), "b received:\n" .. b:output())
    assert.is_true(a:alive())

    a:send("/paste nothing\n")
    a:expect("* usage: /paste BYTES (1 to 1048576)")
  end)

  it("drops a client whose line has no end, and says why", function()
    local a = connect("a")
    local b = connect("b")
    a:send("fine\n" .. ("x"):rep(10000))
    b:expect("<guest1> fine")
    a:expect("* line too long (the limit is 4096 bytes), bye")
    b:expect("* guest1 has left (line too long)")
    assert.is_nil(b:output():find("xxxx", 1, true))
  end)
end)

describe("examples/chat_server.lua as a module", function()
  it("serves nc clients from the caller's map and loop", function()
    local chat = dofile("examples/chat_server.lua")
    local map = {}
    local server = chat.ChatServer("127.0.0.1", 0, map)
    local dir = make_tmpdir()
    local a, b
    finally(function()
      for _, client in ipairs { a, b } do client:kill() end
      for _, client in ipairs { a, b } do client:close() end
      asyncore.close_all(map, true)
      os.execute("rm -rf " .. quote(dir))
    end)
    local _, port = server:getsockname()
    local function pass() asyncore.loop(0.05, nil, map, 1) end

    a = start_client(dir, "a", "nc", "127.0.0.1 " .. port)
    a:expect("* welcome, you are guest1 (/nick NAME, /who, /paste BYTES, /quit)", pass)
    b = start_client(dir, "b", "nc", "127.0.0.1 " .. port)
    b:expect("* welcome, you are guest2 (/nick NAME, /who, /paste BYTES, /quit)", pass)
    a:send("/nick ann\nhi b\n")
    b:expect("<ann> hi b", pass)
    assert.are.equal(2, #server.clients)
    assert.are.equal("ann", server.clients[1].nick)
    assert.is_true(server:find_nick("guest2") == server.clients[2])

    b:kill()
    assert.is_true(wait_until(function() return #server.clients == 1 end, pass))
    a:expect("* guest2 has left", pass)
  end)
end)
