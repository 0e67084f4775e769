-- The lua-asyncore demo: one process, one loop.  Starts the echo server on a
-- free loopback port, runs several echo clients against it at once, prints
-- what each one sends and gets back, and checks that every byte returned.
-- Exits 0 when all did, 1 otherwise.
--
--   lua5.4 examples/demo.lua        (or: make demo)

-- Run from a checkout: find the examples beside this file, and fall back on
-- ../lua and ../build for asyncore itself.
local here = debug.getinfo(1, "S").source:match("^@(.-)[^/\\]*$") or ""
if here == "" then here = "./" end
package.path = here .. "?.lua;" .. package.path .. ";" .. here .. "../lua/?.lua"
package.cpath = package.cpath .. ";" .. here .. "../build/?.so"

local asyncore = require "asyncore"
local echo = require "echo_server"
local EchoClient = require "echo_client"

io.stdout:setvbuf("line")

-- A line as the transcript shows it: escapes for unprintable bytes, and long
-- lines cut short.
local function show(line)
  local shown = line
  if #shown > 48 then shown = shown:sub(1, 40) end
  shown = shown:gsub("[^\32-\126]", function(c) return ("\\%d"):format(c:byte()) end)
  if #line > 48 then shown = ("%s... (%d bytes)"):format(shown, #line) end
  return '"' .. shown .. '"'
end

local function big_line(size)
  local parts = {}
  for i = 1, size // 16 do parts[i] = ("%015x "):format(i * 2654435761 % (1 << 48)) end
  return table.concat(parts)
end

local conversations = {
  { name = "alice", lines = { "hello", "how are you?", "bye" } },
  { name = "bob", lines = { "the quick brown fox", "jumps over", "the lazy dog", "" } },
  { name = "carol", lines = { big_line(256 * 1024), "and a short one after it" } },
  { name = "dave", lines = { "nul \0 and friends \1\2\127\255", "tab\there\r" } },
  { name = "erin", lines = { "first", "second", "third", "fourth", "fifth" } },
}

local map = {}

local Server = echo.EchoServer:subclass {
  on_connection = function(_, host, port)
    print(("server: connection from %s:%d"):format(host, port))
  end,
}

local DemoClient = EchoClient:subclass {
  on_sent = function(self, line) print(("%-5s -> %s"):format(self.name, show(line))) end,
  on_echo = function(self, line) print(("%-5s <- %s"):format(self.name, show(line))) end,
  on_done = function(self)
    print(("%-5s done: %d lines, %d bytes echoed"):format(self.name, #self.echoed, self.bytes_received))
  end,
}

local server = Server("127.0.0.1", 0, map)
local host, port = server:getsockname()
print(("server: listening on %s port %d"):format(host, port))

local clients = {}
for i, conversation in ipairs(conversations) do
  local client = DemoClient(host, port, conversation.lines, map)
  client.name = conversation.name
  clients[i] = client
end

local function all_done()
  for _, client in ipairs(clients) do
    if not client.done then return false end
  end
  return true
end

-- Bounded: at most this many passes, each waiting at most a second.
local MAX_PASSES = 10000
local passes = 0
while not all_done() and passes < MAX_PASSES do
  asyncore.loop(1.0, nil, map, 1)
  passes = passes + 1
end

-- Let the server's handlers see their clients leave, then stop listening.
server:close()
asyncore.loop(1.0, nil, map, 100)

print()
local failures, sent, received = 0, 0, 0
for _, client in ipairs(clients) do
  sent, received = sent + client.bytes_sent, received + client.bytes_received
  if not client:succeeded() then
    failures = failures + 1
    print(("FAIL %s: %s"):format(client.name, client.failure or "did not finish"))
  end
end
local leftover = 0
for _ in pairs(map) do leftover = leftover + 1 end
if leftover > 0 then
  failures = failures + 1
  print(("FAIL %d channels still open after the clients finished"):format(leftover))
end

print(("%d clients, %d passes, %d bytes sent, %d bytes echoed back"):format(#clients, passes, sent, received))
if failures > 0 or sent ~= received then
  print("demo FAILED")
  os.exit(1)
end
print("every byte came back: OK")
os.exit(0)
