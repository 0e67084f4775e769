-- The examples as a user runs them: the HTTP client against Python's
-- http.server, the echo server and client in one process, in two processes and
-- against a Python peer, and the demo end to end.  Run from the checkout root.
local asyncore = require "asyncore"
local support = require "support"

-- The examples as modules, loaded without adding examples/ to package.path.
local function example(name)
  return dofile("examples/" .. name .. ".lua")
end
local HTTPClient = example "http_client"
local echo = example "echo_server"
local EchoClient = example "echo_client"

local LUA = "lua5.4"

-- Each loop in this file runs at most MAX_PASSES passes of PASS_TIMEOUT seconds.
local MAX_PASSES, PASS_TIMEOUT = 400, 0.25

------------------------------------------------------------------------------
-- helpers
------------------------------------------------------------------------------

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Children other than Lua do not inherit a sanitizer runtime preloaded for
-- this process (make asan): its leak check would fail them at exit.
local PYTHON = "env -u LD_PRELOAD python3"

-- Runs passes over map until done() is true or the passes run out; returns done().
local function run_until(done, map)
  for _ = 1, MAX_PASSES do
    if done() then return true end
    asyncore.loop(PASS_TIMEOUT, nil, map, 1)
  end
  return done()
end

local function count(map)
  local n = 0
  for _ in pairs(map) do n = n + 1 end
  return n
end

-- Starts command in the background, stdout (and stderr) to a pipe, bounded by
-- timeout(1).  Returns {pid =, out =}; stop() ends it.
local function spawn(command)
  local out = assert(io.popen("echo $$; exec timeout 60 " .. command .. " 2>&1", "r"))
  local pid = math.tointeger(tonumber(out:read("l")))
  assert(pid, "spawn: no pid for " .. command)
  return { pid = pid, out = out }
end

local function stop(proc)
  if proc and proc.out then
    os.execute("kill " .. proc.pid .. " 2>/dev/null")
    proc.out:close()
    proc.out = nil
  end
end

-- The first of the next few lines of proc's output that matches pattern, and
-- the captures; or nil and the lines read.
local function expect_line(proc, pattern)
  local seen = {}
  for _ = 1, 20 do
    local line = proc.out:read("l")
    if line == nil then break end
    seen[#seen + 1] = line
    if line:match(pattern) then return line:match(pattern) end
  end
  return nil, table.concat(seen, "\n")
end

-- Runs command to completion: its stdout, and its exit code.
local function run(command)
  local p = assert(io.popen("timeout 120 " .. command, "r"))
  local output = p:read("a")
  local _, _, code = p:close()
  return output, code
end

local make_tmpdir = support.make_tmpdir

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- n bytes covering every byte value, in no simple repeating order.
local function binary_data(n)
  local bytes = {}
  for i = 1, n do bytes[i] = string.char((i * 7 + i // 256) % 256) end
  return table.concat(bytes)
end

-- A port nothing listens on: bound, then released.
local function closed_port()
  local probe = asyncore.dispatcher(nil, {})
  probe:create_socket()
  probe:bind("127.0.0.1", 0)
  local _, port = probe:getsockname()
  probe:close()
  return port
end

-- Python's http.server serving dir on a free loopback port: proc, port.
local function start_http_server(dir)
  local proc = spawn(PYTHON .. " -u -m http.server 0 --bind 127.0.0.1 --directory " .. quote(dir))
  local port, seen = expect_line(proc, "^Serving HTTP on 127%.0%.0%.1 port (%d+)")
  if port == nil then
    stop(proc)
    error("http.server did not start:\n" .. tostring(seen))
  end
  return proc, math.tointeger(tonumber(port))
end

-- An echo server that counts its connections and prints nothing.
local CountingServer = echo.EchoServer:subclass {
  init = function(self, host, port, map)
    self.accepted = 0
    echo.EchoServer.init(self, host, port, map)
  end,
  on_connection = function(self) self.accepted = self.accepted + 1 end,
}

local QuietClient = EchoClient:subclass { on_echo = function() end }

------------------------------------------------------------------------------
-- http_client
------------------------------------------------------------------------------

describe("examples/http_client.lua", function()
  local dir, server, port
  local body = binary_data(100000)

  setup(function()
    dir = make_tmpdir()
    write_file(dir .. "/data.bin", body)
    write_file(dir .. "/hello.txt", "Hello from http.server\n")
    server, port = start_http_server(dir)
  end)

  teardown(function()
    stop(server)
    if dir then os.execute("rm -rf " .. quote(dir)) end
  end)

  local function fetch(path)
    return run(("%s examples/http_client.lua 127.0.0.1 %d %s"):format(LUA, port, quote(path)))
  end

  it("as a script, prints the status line, headers and the file's exact bytes", function()
    local output, code = fetch("/data.bin")
    assert.are.equal(0, code)
    assert.are.equal("HTTP/1.0 200 OK\r\n", output:sub(1, 17))
    local header_end = output:find("\r\n\r\n", 1, true)
    assert.is_not_nil(header_end)
    local headers = output:sub(1, header_end)
    assert.is_truthy(headers:find("\r\nContent%-Length: 100000\r\n"))
    local received = output:sub(header_end + 4)
    assert.are.equal(#body, #received)
    assert.is_true(received == body, "the body differs from the file")
  end)

  it("prints a small text file and the 404 of a missing one", function()
    local output, code = fetch("/hello.txt")
    assert.are.equal(0, code)
    assert.is_truthy(output:match("^HTTP/1%.0 200 OK\r\n"))
    assert.is_truthy(output:find("\r\n\r\nHello from http.server\n$"))

    output, code = fetch("/no-such-file")
    assert.are.equal(0, code)
    assert.is_truthy(output:match("^HTTP/1%.0 404 "))
  end)

  it("as a module, runs in the caller's loop and map", function()
    local map, chunks = {}, {}
    local Collecting = HTTPClient:subclass {
      handle_read = function(self) chunks[#chunks + 1] = self:recv(8192) end,
    }
    local client = Collecting("127.0.0.1", port, "/data.bin", map)
    assert.are.equal(client, map[client:fileno()])
    assert.is_true(run_until(function() return next(map) == nil end, map))
    local output = table.concat(chunks)
    assert.is_truthy(output:match("^HTTP/1%.0 200 OK\r\n"))
    assert.is_true(output:sub(-#body) == body, "the body differs from the file")
    assert.are.equal("", client.buffer)
  end)

  it("sends exactly the request of Python's example", function()
    local map, request = {}, ""
    local Recorder = asyncore.dispatcher_with_send:subclass {
      handle_read = function(self)
        request = request .. self:recv(8192)
        if request:find("\r\n\r\n", 1, true) then
          self.replied = true
          self:send("HTTP/1.0 204 No Content\r\n\r\n")
          self:close_when_sent()
        end
      end,
      handle_write = function(self)
        asyncore.dispatcher_with_send.handle_write(self)
        self:close_when_sent()
      end,
      close_when_sent = function(self)
        if self.replied and self.out_buffer == "" then self:close() end
      end,
    }
    local Listener = asyncore.dispatcher:subclass {
      handle_accepted = function(self, sock) Recorder(sock, self.map) end,
    }
    local listener = Listener(nil, map)
    listener.map = map
    listener:create_socket()
    listener:bind("127.0.0.1", 0)
    listener:listen(5)
    local host, listen_port = listener:getsockname()
    local output = {}
    local Client = HTTPClient:subclass {
      handle_read = function(self) output[#output + 1] = self:recv(8192) end,
    }
    local client = Client(host, listen_port, "/some/path?q=1", map)
    assert.is_true(run_until(function() return client.socket:fileno() == -1 end, map))
    listener:close()
    assert.are.equal("GET /some/path?q=1 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", request)
    assert.are.equal("HTTP/1.0 204 No Content\r\n\r\n", table.concat(output))
  end)

  it("as a script, exits 1 when the connection is refused", function()
    local output, code = run(("%s examples/http_client.lua 127.0.0.1 %d / 2>&1"):format(LUA, closed_port()))
    assert.are.equal(1, code)
    assert.is_truthy(output:find("ECONNREFUSED", 1, true))
  end)
end)

------------------------------------------------------------------------------
-- echo_server and echo_client
------------------------------------------------------------------------------

describe("examples/echo_server.lua with examples/echo_client.lua", function()
  it("echoes every line of several clients served at once by one loop", function()
    local map = {}
    local server = CountingServer("127.0.0.1", 0, map)
    finally(function() asyncore.close_all(map, true) end)
    local host, port = server:getsockname()
    local conversations = {
      { "one", "two", "three" },
      { "", "an empty line came first", "" },
      { (binary_data(300000):gsub("\n", "N")) },
      { "\0\1\2\255", "tab\there\r" },
      {},
    }
    local clients = {}
    for i, lines in ipairs(conversations) do clients[i] = QuietClient(host, port, lines, map) end
    local function all_done()
      for _, client in ipairs(clients) do
        if not client.done then return false end
      end
      return true
    end
    assert.is_true(run_until(all_done, map))
    for i, client in ipairs(clients) do
      assert.is_nil(client.failure)
      assert.is_true(client:succeeded())
      assert.are.same(conversations[i], client.echoed)
      assert.are.equal(client.bytes_sent, client.bytes_received)
    end
    assert.are.equal(#conversations, server.accepted)
    -- The server closes each handler when its client leaves.
    assert.is_true(run_until(function() return count(map) == 1 end, map))
    assert.are.equal(server, map[server:fileno()])
  end)

  it("calls on_echo with each line, in order, as it comes back", function()
    local map = {}
    local server = CountingServer("127.0.0.1", 0, map)
    finally(function() asyncore.close_all(map, true) end)
    local heard = {}
    local Listening = EchoClient:subclass {
      on_sent = function(_, line) heard[#heard + 1] = "-> " .. line end,
      on_echo = function(_, line) heard[#heard + 1] = "<- " .. line end,
      on_done = function() heard[#heard + 1] = "done" end,
    }
    local host, port = server:getsockname()
    local client = Listening(host, port, { "a", "b" }, map)
    assert.is_true(run_until(function() return client.done end, map))
    assert.are.same({ "-> a", "<- a", "-> b", "<- b", "done" }, heard)
  end)

  it("serves a client in this process from a separate lua5.4 process", function()
    local proc = spawn(LUA .. " examples/echo_server.lua 127.0.0.1 0")
    finally(function() stop(proc) end)
    local port, seen = expect_line(proc, "^echo server listening on 127%.0%.0%.1 port (%d+)$")
    assert(port, "echo_server.lua did not start:\n" .. tostring(seen))
    port = math.tointeger(tonumber(port))

    local map = {}
    local lines = { "hello, other process", (binary_data(100000):gsub("\n", "")), "bye" }
    local first = QuietClient("127.0.0.1", port, lines, map)
    local second = QuietClient("127.0.0.1", port, { "second client" }, map)
    assert.is_true(run_until(function() return first.done and second.done end, map))
    assert.is_nil(first.failure)
    assert.is_true(first:succeeded())
    assert.is_true(second:succeeded())
    assert.are.equal(0, count(map))
    local connection = expect_line(proc, "^Incoming connection from 127%.0%.0%.1:%d+$")
    assert.is_not_nil(connection)
  end)

  it("echoes a python3 peer's binary data byte for byte", function()
    local map = {}
    local server = CountingServer("127.0.0.1", 0, map)
    finally(function() asyncore.close_all(map, true) end)
    local _, port = server:getsockname()
    local dir = make_tmpdir()
    local data = binary_data(200000)
    write_file(dir .. "/in.bin", data)
    local peer = [[
import socket, sys
data = open(sys.argv[2], "rb").read()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(data)
got = bytearray()
while len(got) < len(data):
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
s.close()
sys.stdout.buffer.write(bytes(got))
]]
    write_file(dir .. "/peer.py", peer)
    local p = assert(io.popen(("timeout 60 %s %s %d %s"):format(
      PYTHON, quote(dir .. "/peer.py"), port, quote(dir .. "/in.bin")), "r"))
    local served = run_until(function() return server.accepted == 1 and count(map) == 1 end, map)
    local echoed = p:read("a")
    local _, _, code = p:close()
    os.execute("rm -rf " .. quote(dir))
    assert.is_true(served)
    assert.are.equal(0, code)
    assert.are.equal(#data, #echoed)
    assert.is_true(echoed == data, "the echoed bytes differ")
  end)

  it("serves echo_client.lua run as a script", function()
    local map = {}
    local server = CountingServer("127.0.0.1", 0, map)
    finally(function() asyncore.close_all(map, true) end)
    local _, port = server:getsockname()
    local p = assert(io.popen(("timeout 60 %s examples/echo_client.lua 127.0.0.1 %d alpha '' 'gamma delta'")
      :format(LUA, port), "r"))
    local served = run_until(function() return server.accepted == 1 and count(map) == 1 end, map)
    local output = p:read("a")
    local _, _, code = p:close()
    assert.is_true(served)
    assert.are.equal(0, code)
    assert.are.equal("alpha\n\ngamma delta\n", output)
  end)

  it("reports a refused connection as the client's failure", function()
    local map = {}
    local client = QuietClient("127.0.0.1", closed_port(), { "nobody hears this" }, map)
    assert.is_true(run_until(function() return client.done end, map))
    assert.is_false(client:succeeded())
    assert.is_truthy(tostring(client.failure):find("ECONNREFUSED", 1, true))
    assert.are.equal(0, count(map))
  end)

  it("reports a server that leaves before echoing everything", function()
    local map = {}
    local Mute = asyncore.dispatcher:subclass {
      handle_accepted = function(_, sock) sock:close() end,
    }
    local listener = Mute(nil, map)
    finally(function() asyncore.close_all(map, true) end)
    listener:create_socket()
    listener:bind("127.0.0.1", 0)
    listener:listen(5)
    local client = QuietClient("127.0.0.1", select(2, listener:getsockname()), { "x" }, map)
    assert.is_true(run_until(function() return client.done end, map))
    assert.is_false(client:succeeded())
    assert.is_truthy(client.failure)
  end)

  it("rejects a line that contains a newline", function()
    assert.has_error(function() EchoClient("127.0.0.1", 1, { "two\nlines" }, {}) end,
      "bad argument #3 to 'EchoClient' (line 1 contains a newline)")
  end)
end)

------------------------------------------------------------------------------
-- demo
------------------------------------------------------------------------------

describe("examples/demo.lua", function()
  it("runs end to end, prints the transcript and exits 0", function()
    local output, code = run(LUA .. " examples/demo.lua 2>&1")
    assert.are.equal(0, code, output)
    assert.is_truthy(output:match("^server: listening on 127%.0%.0%.1 port %d+\n"))
    for _, name in ipairs { "alice", "bob", "carol", "dave", "erin" } do
      assert.is_truthy(output:find("\n" .. name .. " +%-> "), name .. " sent nothing")
      assert.is_truthy(output:find("\n" .. name .. " +<%- "), name .. " got nothing back")
      assert.is_truthy(output:find("\n" .. name .. " +done: "), name .. " did not finish")
    end
    local sent, echoed = output:match("\n5 clients, %d+ passes, (%d+) bytes sent, (%d+) bytes echoed back\n")
    assert.is_not_nil(sent)
    assert.are.equal(sent, echoed)
    assert.is_true(tonumber(sent) > 256 * 1024)
    assert.is_truthy(output:find("\nevery byte came back: OK\n$"))
    assert.is_falsy(output:find("FAIL", 1, true))
  end)
end)
