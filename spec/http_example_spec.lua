-- examples/http_server.lua against clients this project did not write: curl,
-- wrk and Python (http.client and raw sockets), each test with its own server
-- in a child lua5.4 process.  Run from the checkout root.
local asyncore = require "asyncore"

local LUA = "lua5.4"
-- Non-Lua children must not inherit a sanitizer runtime preloaded for this
-- process (make asan): its checks would fail them.
local NOPRELOAD = "env -u LD_PRELOAD "

------------------------------------------------------------------------------
-- helpers
------------------------------------------------------------------------------

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs command (under a time limit) to completion: its output, and exit code.
local function run(command)
  local p = assert(io.popen(NOPRELOAD .. "timeout 60 " .. command, "r"))
  local output = p:read("a")
  local _, _, code = p:close()
  return output, code
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

-- n bytes covering every byte value, in no simple repeating order.
local function binary_data(n)
  local bytes = {}
  for i = 1, n do bytes[i] = string.char((i * 7 + i // 256) % 256) end
  return table.concat(bytes)
end

-- What /bytes/n serves: byte i is i % 256.
local function pattern(n)
  local block = {}
  for i = 0, 255 do block[#block + 1] = string.char(i) end
  block = table.concat(block)
  return (block:rep(n // 256 + 1):sub(1, n))
end

-- Splits a stream of HTTP/1.1 responses into {status =, headers = (lower-case
-- names), body =}; with head_only (answers to HEAD) no body follows a head.
local function parse_responses(stream, head_only)
  local responses, pos = {}, 1
  while pos <= #stream do
    local head_end = stream:find("\r\n\r\n", pos, true)
    assert(head_end, "incomplete response head at byte " .. pos)
    local head = stream:sub(pos, head_end + 1)
    local status = math.tointeger(tonumber(head:match("^HTTP/1%.[01] (%d%d%d) ")))
    assert(status, "no status line at byte " .. pos)
    local headers = {}
    for line in head:gmatch("\n([^\r\n]*)") do
      local name, value = line:match("^([^:]+): (.*)$")
      if name then headers[name:lower()] = value end
    end
    local length = head_only and 0 or math.tointeger(tonumber(headers["content-length"] or "0"))
    local body = stream:sub(head_end + 4, head_end + 3 + length)
    assert(#body == length, "response body cut short")
    responses[#responses + 1] = { status = status, headers = headers, body = body }
    pos = head_end + 4 + length
  end
  return responses
end

------------------------------------------------------------------------------
-- the server as a child process
------------------------------------------------------------------------------

-- Starts the example on a free loopback port: {pid =, out =, port =}.  The
-- child gets this process's module paths (busted sets them, the environment
-- may not).
local function start_server()
  local command = ("echo $$; exec env LUA_PATH=%s LUA_CPATH=%s timeout 60 %s examples/http_server.lua 127.0.0.1 0 2>&1")
    :format(quote(package.path), quote(package.cpath), LUA)
  local out = assert(io.popen(command, "r"))
  local proc = { pid = math.tointeger(tonumber(out:read("l"))), out = out }
  local line = out:read("l")
  proc.port = line and math.tointeger(tonumber(line:match("^http server listening on 127%.0%.0%.1 port (%d+)$")))
  return proc, line
end

local function stop_server(proc)
  if proc and proc.out then
    if proc.pid then os.execute("kill " .. proc.pid .. " 2>/dev/null") end
    proc.out:close()
    proc.out = nil
  end
end

------------------------------------------------------------------------------

describe("examples/http_server.lua", function()
  local server, url, dir

  before_each(function()
    local line
    server, line = start_server()
    if not server.port then
      stop_server(server)
      error("http_server.lua did not start: " .. tostring(line))
    end
    url = "http://127.0.0.1:" .. server.port
    dir = assert(run("mktemp -d")):match("^(%S+)")
    assert(dir, "mktemp -d failed")
  end)

  after_each(function()
    stop_server(server)
    if dir then os.execute(NOPRELOAD .. "rm -rf " .. quote(dir)) end
    server, dir = nil, nil
  end)

  -- curl with a time limit; -sS: no progress meter, but errors.
  local function curl(args)
    return run("curl -sS --max-time 30 " .. args)
  end

  -- One response fetched with curl -i: parsed, with curl's exit code.
  local function fetch(args)
    local output, code = curl("-i " .. args)
    assert.are.equal(0, code, output)
    local responses = parse_responses(output)
    assert.are.equal(1, #responses)
    return responses[1]
  end

  -- Python (file name in dir, source) run with arguments: output and exit code.
  local function python(name, source, ...)
    local path = dir .. "/" .. name
    write_file(path, source)
    local args = {}
    for _, a in ipairs { ... } do args[#args + 1] = quote(a) end
    return run("python3 " .. quote(path) .. " " .. table.concat(args, " "))
  end

  -- Sends request bytes on one raw connection ("shut": then half-closes) and
  -- returns all that comes back until the server closes.
  local function raw_exchange(request, mode)
    write_file(dir .. "/request", request)
    local output, code = python("raw.py", [[
import socket, sys
port, path, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(open(path, "rb").read())
if mode == "shut":
    s.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
sys.stdout.buffer.write(bytes(got))
]], server.port, dir .. "/request", mode or "")
    assert.are.equal(0, code, output)
    return output
  end

  ----------------------------------------------------------------------------
  -- curl
  ----------------------------------------------------------------------------

  it("serves the index page with a minimal header set", function()
    local r = fetch(url .. "/")
    assert.are.equal(200, r.status)
    assert.are.equal("lua-asyncore-example", r.headers.server)
    assert.are.equal(tostring(#r.body), r.headers["content-length"])
    assert.is_truthy(r.body:find("Hello from lua-asyncore", 1, true))
    assert.is_nil(r.headers.date)
    assert.is_nil(r.headers.connection)
  end)

  it("sends /bytes/1048576 byte for byte, and /bytes/0 empty", function()
    local out = dir .. "/bytes"
    local output, code = curl("-o " .. quote(out) .. " -w '%{http_code} %{size_download}' " .. url .. "/bytes/1048576")
    assert.are.equal(0, code, output)
    assert.are.equal("200 1048576", output)
    local got = read_file(out)
    assert.are.equal(1048576, #got)
    assert.is_true(got == pattern(1048576), "the body differs from the pattern")

    local r = fetch(url .. "/bytes/0")
    assert.are.equal(200, r.status)
    assert.are.equal("0", r.headers["content-length"])
    assert.are.equal("", r.body)
  end)

  it("echoes a 200 KB binary POST body", function()
    local body = binary_data(200 * 1024)
    write_file(dir .. "/in.bin", body)
    local output, code = curl(("--data-binary @%s -H 'Content-Type: application/octet-stream' -o %s -w '%%{http_code}' %s/echo")
      :format(quote(dir .. "/in.bin"), quote(dir .. "/out.bin"), url))
    assert.are.equal(0, code, output)
    assert.are.equal("200", output)
    local echoed = read_file(dir .. "/out.bin")
    assert.are.equal(#body, #echoed)
    assert.is_true(echoed == body, "the echoed body differs")
  end)

  it("answers Expect: 100-continue before reading the body", function()
    local body = binary_data(100000)
    write_file(dir .. "/in.bin", body)
    local log, code = curl(("-v -H 'Expect: 100-continue' --data-binary @%s -o %s %s/echo 2>&1")
      :format(quote(dir .. "/in.bin"), quote(dir .. "/out.bin"), url))
    assert.are.equal(0, code, log)
    assert.is_truthy(log:find("\n< HTTP/1.1 100 Continue\r?\n"), log)
    assert.is_truthy(log:find("\n< HTTP/1.1 200 OK\r?\n"), log)
    assert.is_true(read_file(dir .. "/out.bin") == body, "the echoed body differs")
  end)

  it("answers HEAD with the headers of GET and no body", function()
    for _, path in ipairs { "/", "/bytes/5000" } do
      local get = fetch(url .. path)
      local output, code = curl("-I " .. url .. path)
      assert.are.equal(0, code, output)
      assert.are.equal("\r\n\r\n", output:sub(-4)) -- the head only
      local head = parse_responses(output, true)[1]
      assert.are.equal(200, head.status)
      assert.are.same(get.headers, head.headers)
    end
  end)

  it("gives 404 for other paths and 405 with Allow for other methods", function()
    for _, path in ipairs { "/nowhere", "/bytes/", "/bytes/x", "/echo/more" } do
      local r = fetch(url .. path)
      assert.are.equal(404, r.status, path)
      assert.are.equal(tostring(#r.body), r.headers["content-length"])
    end
    local r = fetch("-X DELETE " .. url .. "/")
    assert.are.equal(405, r.status)
    assert.are.equal("GET, HEAD", r.headers.allow)
    r = fetch("-d x " .. url .. "/bytes/10")
    assert.are.equal(405, r.status)
    r = fetch(url .. "/echo")
    assert.are.equal(405, r.status)
    assert.are.equal("POST", r.headers.allow)
  end)

  it("keeps the connection alive across several URLs in one curl", function()
    local urls = { url .. "/", url .. "/bytes/100000", url .. "/nowhere", url .. "/bytes/7" }
    local log, code = curl("-v " .. ("-o /dev/null "):rep(#urls) .. table.concat(urls, " ") .. " 2>&1")
    assert.are.equal(0, code, log)
    assert.are.equal(1, count(log, "\n%* Connected to "), log)
    assert.are.equal(#urls - 1, count(log, "\n%* Re%-using existing connection"), log)
    assert.are.equal(0, count(log, "\n< Connection: close"), log)
  end)

  it("closes the connection after a request with Connection: close", function()
    local log, code = curl("-v -H 'Connection: close' -o /dev/null -o /dev/null " .. url .. "/ " .. url .. "/ 2>&1")
    assert.are.equal(0, code, log)
    assert.are.equal(2, count(log, "\n%* Connected to "), log)
    assert.are.equal(2, count(log, "\n< Connection: close\r?\n"), log)
    assert.are.equal(0, count(log, "Re%-using existing connection"), log)
  end)

  it("closes after HTTP/1.0 requests unless they ask for keep-alive", function()
    local two = " -o /dev/null -o /dev/null " .. url .. "/ " .. url .. "/bytes/10 2>&1"
    local log, code = curl("-v --http1.0" .. two)
    assert.are.equal(0, code, log)
    assert.are.equal(2, count(log, "\n> GET [^\n]* HTTP/1%.0\r?\n"), log)
    assert.are.equal(2, count(log, "\n%* Connected to "), log)
    assert.are.equal(2, count(log, "\n< Connection: close\r?\n"), log)

    log, code = curl("-v --http1.0 -H 'Connection: keep-alive'" .. two)
    assert.are.equal(0, code, log)
    assert.are.equal(1, count(log, "\n%* Connected to "), log)
    assert.are.equal(1, count(log, "\n%* Re%-using existing connection"), log)
    assert.are.equal(2, count(log, "\n< Connection: keep%-alive\r?\n"), log)
  end)

  it("rejects a chunked request body with 411 and closes", function()
    write_file(dir .. "/in.bin", binary_data(5000))
    local log, code = curl(("-v -H 'Transfer-Encoding: chunked' --data-binary @%s %s/echo 2>&1")
      :format(quote(dir .. "/in.bin"), url))
    assert.are.equal(0, code, log)
    assert.is_truthy(log:find("\n< HTTP/1.1 411 Length Required\r?\n"), log)
    assert.is_truthy(log:find("\n< Connection: close\r?\n"), log)
    assert.is_truthy(log:find("\n< Content%-Length: %d+\r?\n"), log)

    local r = parse_responses(raw_exchange(
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nzzzz"))
    assert.are.equal(1, #r)
    assert.are.equal(501, r[1].status)
    assert.are.equal("close", r[1].headers.connection)
  end)

  ----------------------------------------------------------------------------
  -- raw sockets and http.client (Python)
  ----------------------------------------------------------------------------

  it("answers pipelined requests in order and stops after Connection: close", function()
    local r = parse_responses(raw_exchange(table.concat {
      "GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
      "\r\n", -- a stray CRLF before a request line is ignored
      "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
      "GET /bytes/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n", -- after the close: not answered
    }))
    assert.are.equal(5, #r)
    assert.are.same({ 200, 200, 404, 200, 200 }, { r[1].status, r[2].status, r[3].status, r[4].status, r[5].status })
    assert.are.equal("\0\1\2\3\4", r[1].body)
    assert.are.equal("abc", r[2].body)
    assert.are.equal("", r[4].body)
    assert.are.equal("\0\1\2", r[5].body)
    assert.are.equal("close", r[5].headers.connection)
  end)

  it("answers 40 pipelined requests in order", function()
    local requests, n = {}, 40
    for i = 1, n do
      requests[i] = ("GET /bytes/%d HTTP/1.1\r\nHost: x\r\n%s\r\n")
        :format(100000 + i, i == n and "Connection: close\r\n" or "")
    end
    local r = parse_responses(raw_exchange(table.concat(requests)))
    assert.are.equal(n, #r)
    for i = 1, n do
      assert.are.equal(200, r[i].status)
      assert.are.equal(100000 + i, #r[i].body)
    end
    assert.is_true(r[n].body == pattern(100000 + n), "the last body differs")
  end)

  it("answers everything a client asked for before it half-closed", function()
    local r = parse_responses(raw_exchange(
      "GET /bytes/3000000 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/300 HTTP/1.1\r\nHost: x\r\n\r\n", "shut"))
    assert.are.equal(2, #r)
    assert.is_true(r[1].body == pattern(3000000), "the first body differs")
    assert.is_true(r[2].body == pattern(300), "the second body differs")
  end)

  it("answers malformed requests with 400 and closes", function()
    local malformed = {
      "GARBAGE\r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n", -- no Host
      "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    }
    for _, request in ipairs(malformed) do
      -- a good request follows: it must not be answered
      local r = parse_responses(raw_exchange(request .. "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert.are.equal(1, #r, request)
      assert.are.equal(400, r[1].status, request)
      assert.are.equal("close", r[1].headers.connection, request)
    end
    -- A too large /bytes is well framed: 400, and the connection goes on.
    local r = parse_responses(raw_exchange(
      "GET /bytes/99999999999 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert.are.same({ 400, 200 }, { r[1].status, r[2].status })
    -- A head past the limit: 431.
    r = parse_responses(raw_exchange("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("b"):rep(100000) .. "\r\n\r\n"))
    assert.are.equal(431, r[1].status)
  end)

  it("serves three requests on one connection to Python's http.client", function()
    local output, code = python("client.py", [[
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=20)
ports, results = set(), []
for method, path, body in (("GET", "/", None), ("POST", "/echo", b"\x00\xffpython"), ("GET", "/bytes/1000", None)):
    conn.request(method, path, body=body)
    ports.add(conn.sock.getsockname()[1])
    r = conn.getresponse()
    data = r.read()
    results.append("%d %d %s" % (r.status, len(data), data == (body or data)))
print(" / ".join(results), "connections:", len(ports))
]], server.port)
    assert.are.equal(0, code, output)
    local first = output:match("^200 (%d+) True / 200 8 True / 200 1000 True connections: 1\n$")
    assert.is_not_nil(first, output)
  end)

  ----------------------------------------------------------------------------
  -- wrk
  ----------------------------------------------------------------------------

  local function assert_clean_wrk(output, code)
    assert.are.equal(0, code, output)
    assert.is_truthy(output:find("\nRequests/sec:", 1, true), output)
    assert.is_falsy(output:find("Socket errors", 1, true), output)
    assert.is_falsy(output:find("Non-2xx", 1, true), output)
  end

  it("runs wrk with 50 connections to completion without errors", function()
    assert_clean_wrk(run("wrk -t2 -c50 -d3s " .. url .. "/ 2>&1"))
    -- and still serves afterwards
    assert.are.equal(200, fetch(url .. "/").status)
  end)

  it("runs wrk over a single connection without errors", function()
    assert_clean_wrk(run("wrk -t1 -c1 -d1s " .. url .. "/bytes/10000 2>&1"))
  end)
end)

------------------------------------------------------------------------------
-- as a module, in this process
------------------------------------------------------------------------------

describe("examples/http_server.lua as a module", function()
  it("runs in the caller's map, with a route added by a Handler subclass", function()
    local HTTPServer = dofile("examples/http_server.lua")
    local Handler = HTTPServer.Handler:subclass {
      route = function(self, req)
        if req.target == "/hello" then return 200, { ["Content-Type"] = "text/plain" }, "hi\n" end
        return HTTPServer.Handler.route(self, req)
      end,
    }
    local Server = HTTPServer:subclass {
      Handler = Handler,
      handle_accepted = function(self, sock)
        self.accepted = (self.accepted or 0) + 1
        HTTPServer.handle_accepted(self, sock)
      end,
    }
    local map = {}
    local server = Server("127.0.0.1", 0, map)
    finally(function() asyncore.close_all(map, true) end)
    local _, port = server:getsockname()
    local base = "http://127.0.0.1:" .. port
    local p = assert(io.popen(("%stimeout 60 curl -sS --max-time 30 -w ' %%{http_code} ' %s/hello %s/bytes/4 %s/nowhere")
      :format(NOPRELOAD, base, base, base), "r"))
    -- curl's one connection comes and goes: the map is back to the listener alone
    local done = false
    for _ = 1, 400 do
      asyncore.loop(0.25, nil, map, 1)
      local n = 0
      for _ in pairs(map) do n = n + 1 end
      done = server.accepted == 1 and n == 1
      if done then break end
    end
    local output = p:read("a")
    local _, _, code = p:close()
    assert.is_true(done)
    assert.are.equal(0, code)
    assert.are.equal("hi\n 200 \0\1\2\3 200 not found\n 404 ", output)
  end)
end)
