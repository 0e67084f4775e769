-- examples/resp_server.lua against the real Redis tools: the server in a
-- lua5.4 child process, driven by redis-cli (one command at a time, -x, --pipe),
-- redis-benchmark and nc.  Run from the checkout root.
local asyncore = require "asyncore"
local support = require "support"

local quote = support.shell_quote

-- The server child finds the modules (and, under make asan, the instrumented
-- core) where this process does.
local LUA = ("env LUA_PATH=%s LUA_CPATH=%s lua5.4"):format(quote(package.path), quote(package.cpath))

local make_tmpdir = support.make_tmpdir

-- n bytes covering every byte value ("\0", "\r", "\n" among them).
local function binary_data(n)
  local bytes = {}
  for i = 1, n do bytes[i] = string.char((i * 31 + i // 251) % 256) end
  return table.concat(bytes)
end

-- Runs a shell command line to completion: its stdout (and stderr), exit code.
local function run(command)
  local p = assert(io.popen(command .. " 2>&1", "r"))
  local output = p:read("a")
  local _, _, code = p:close()
  return output, code
end

local function start_server()
  local out = assert(io.popen(("echo $$; exec timeout 60 %s examples/resp_server.lua 127.0.0.1 0 2>&1")
    :format(LUA), "r"))
  local server = { pid = math.tointeger(tonumber(out:read("l"))), out = out }
  local line = out:read("l")
  server.port = math.tointeger(tonumber(line and line:match("^resp server listening on 127%.0%.0%.1 port (%d+)$")))
  return server, line
end

local function stop_server(server)
  if server and server.out then
    os.execute("kill " .. server.pid .. " 2>/dev/null")
    server.out:close()
    server.out = nil
  end
end

describe("examples/resp_server.lua", function()
  local dir, server

  before_each(function()
    dir = make_tmpdir()
    local line
    server, line = start_server()
    assert(server.port, "resp_server.lua did not start: " .. tostring(line))
  end)

  after_each(function()
    stop_server(server)
    os.execute("rm -rf " .. quote(dir))
  end)

  -- redis-cli with the given (already quoted) arguments.  Its stdout is not a
  -- terminal, so replies print raw: a bulk string as its bytes, an integer as
  -- digits, nil as an empty line, an error as its text.
  local function cli(args, stdin)
    local command = ("env -u LD_PRELOAD timeout 20 redis-cli -h 127.0.0.1 -p %d %s"):format(server.port, args)
    if stdin then command = command .. " < " .. quote(stdin) end
    return run(command)
  end

  -- redis-cli with one command, each argument quoted: the reply, without the final newline.
  local function redis(...)
    local args = {}
    for i, a in ipairs { ... } do args[i] = quote(a) end
    local output, code = cli(table.concat(args, " "))
    assert.are.equal(0, code, output)
    return (output:gsub("\n$", ""))
  end

  -- Sends bytes with nc and returns what came back (the server closes or nc's input ends).
  local function nc(bytes)
    local path = dir .. "/nc.in"
    support.write_file(path, bytes)
    return run(("env -u LD_PRELOAD timeout 20 nc -N 127.0.0.1 %d < %s"):format(server.port, quote(path)))
  end

  it("answers PING, ECHO, SET, GET, DEL, EXISTS and INCR as Redis does", function()
    assert.are.equal("PONG", redis("ping"))
    assert.are.equal("hello there", redis("PING", "hello there"))
    assert.are.equal("echo me", redis("echo", "echo me"))

    assert.are.equal("OK", redis("set", "greeting", "hi"))
    assert.are.equal("hi", redis("get", "greeting"))
    assert.are.equal("", redis("get", "missing"))
    assert.are.equal("2", redis("exists", "greeting", "missing", "greeting"))
    assert.are.equal("OK", redis("set", "other", "x"))
    assert.are.equal("2", redis("del", "greeting", "other", "missing"))
    assert.are.equal("0", redis("exists", "greeting", "other"))
    assert.are.equal("0", redis("del", "greeting"))

    assert.are.equal("1", redis("incr", "counter"))
    assert.are.equal("2", redis("INCR", "counter"))
    assert.are.equal("2", redis("get", "counter"))
    assert.are.equal("OK", redis("set", "counter", "-41"))
    assert.are.equal("-40", redis("incr", "counter"))
    assert.are.equal("OK", redis("set", "word", "12 apples"))
    assert.are.equal("ERR value is not an integer or out of range", redis("incr", "word"):match("^[^\n]*"))
    assert.are.equal("12 apples", redis("get", "word"))
    assert.are.equal("OK", redis("set", "big", "9223372036854775807"))
    assert.are.equal("ERR increment or decrement would overflow", redis("incr", "big"):match("^[^\n]*"))
  end)

  it("answers unknown commands and wrong argument counts with Redis's errors", function()
    assert.are.equal("ERR unknown command 'frobnicate', with args beginning with: 'a' 'b c' ",
      redis("frobnicate", "a", "b c"):match("^[^\n]*"))
    assert.are.equal("ERR wrong number of arguments for 'get' command", redis("get"):match("^[^\n]*"))
    assert.are.equal("ERR wrong number of arguments for 'incr' command", redis("incr", "a", "b"):match("^[^\n]*"))
    assert.are.equal("ERR syntax error", redis("set", "k", "v", "EX", "10"):match("^[^\n]*"))
    -- the server is still there for the next client
    assert.are.equal("PONG", redis("ping"))
  end)

  it("keeps a value with spaces, quotes and control bytes unchanged", function()
    local value = "  two  spaces, 'quotes' \"and\" tabs\t\1\2\27[0m \127\200\255 caf\195\169\r\nend "
    assert.are.equal("OK", redis("set", "odd key with spaces", value))
    assert.is_true(redis("get", "odd key with spaces") == value)
    assert.are.equal("1", redis("exists", "odd key with spaces"))

    -- NUL bytes cannot pass through a command line: -x reads the value from stdin
    local path = dir .. "/nul.bin"
    local with_nul = "\0a\0\r\n\0\255"
    support.write_file(path, with_nul)
    local output, code = cli("-x set nul", path)
    assert.are.equal(0, code)
    assert.are.equal("OK\n", output)
    assert.is_true(redis("get", "nul") == with_nul)
  end)

  it("stores a 100 KB value sent with redis-cli -x and returns it byte for byte", function()
    local data = binary_data(100 * 1024)
    local path = dir .. "/big.bin"
    support.write_file(path, data)
    local output, code = cli("-x set big", path)
    assert.are.equal(0, code)
    assert.are.equal("OK\n", output)
    output, code = cli("get big")
    assert.are.equal(0, code)
    assert.are.equal(#data + 1, #output)
    assert.is_true(output == data .. "\n", "the value came back changed")
  end)

  it("answers a pipelined batch from redis-cli --pipe, inline commands included", function()
    local function command(...)
      local parts = { "*" .. select("#", ...) .. "\r\n" }
      for _, a in ipairs { ... } do parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n" end
      return table.concat(parts)
    end
    local batch = {}
    for i = 1, 1000 do
      batch[#batch + 1] = command("SET", "key:" .. i, "value " .. i .. "\r\n" .. binary_data(i % 50))
      batch[#batch + 1] = command("INCR", "counter")
    end
    for _ = 1, 10 do batch[#batch + 1] = "PING\r\n" end -- inline, as Redis accepts
    batch[#batch + 1] = "incr counter\n"
    local path = dir .. "/batch.resp"
    support.write_file(path, table.concat(batch))
    local output, code = cli("--pipe", path)
    assert.are.equal(0, code, output)
    assert.is_truthy(output:find("errors: 0, replies: " .. #batch, 1, true), output)
    assert.are.equal("1001", redis("get", "counter"))
    assert.is_true(redis("get", "key:777") == "value 777\r\n" .. binary_data(777 % 50))

    -- an error reply is one reply: the commands after it are answered too
    support.write_file(path, command("SET", "s", "text") .. command("INCR", "s") .. command("GET", "s"))
    output, code = cli("--pipe", path)
    assert.is_truthy(output:find("ERR value is not an integer or out of range", 1, true), output)
    assert.is_truthy(output:find("errors: 1, replies: 3", 1, true), output)
    assert.are_not.equal(0, code)
  end)

  it("runs redis-benchmark's pipelined SET and GET tests to completion", function()
    local output, code = run(("env -u LD_PRELOAD timeout 50 redis-benchmark -h 127.0.0.1 -p %d -t set,get -P 16 -q -n 20000")
      :format(server.port))
    assert.are.equal(0, code, output)
    assert.is_truthy(output:find("SET: [%d.]+ requests per second"), output)
    assert.is_truthy(output:find("GET: [%d.]+ requests per second"), output)
    assert.is_nil(output:find("ERR", 1, true), output)
    assert.is_nil(output:lower():find("error", 1, true), output)
    -- it found the settings it asks for at connect
    assert.is_nil(output:find("WARNING", 1, true), output)
    assert.are.equal("PONG", redis("ping"))
  end)

  it("reads inline and RESP requests from nc, and closes on QUIT or a protocol error", function()
    local output, code = nc("PING\r\nset k \"two words\\x21\"\nGET k\r\n*1\r\n$4\r\nPING\r\n"
      .. "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n*0\r\n\r\nQUIT\r\nPING\r\n")
    assert.are.equal(0, code)
    assert.are.equal("+PONG\r\n+OK\r\n$10\r\ntwo words!\r\n+PONG\r\n$0\r\n\r\n+OK\r\n", output)

    output = nc("PING\r\n*1\r\n$x\r\nPING\r\n")
    assert.are.equal("+PONG\r\n-ERR Protocol error: invalid bulk length\r\n", output)
    output = nc("*1\r\n$4\r\nPINGxx\r\nPING\r\n")
    assert.are.equal("-ERR Protocol error: bulk string not terminated by CRLF\r\n", output)
    output = nc("ECHO 'unbalanced\r\n")
    assert.are.equal("-ERR Protocol error: unbalanced quotes in request\r\n", output)
    output = nc("PING\r\n" .. ("x"):rep(100 * 1024))
    assert.are.equal("+PONG\r\n-ERR Protocol error: too big inline request\r\n", output)
  end)
end)

describe("examples/resp_server.lua as a module", function()
  it("serves redis-cli from the caller's map and loop, its store open to the caller", function()
    local resp = dofile("examples/resp_server.lua")
    local map = {}
    local server = resp.RespServer("127.0.0.1", 0, map)
    finally(function() asyncore.close_all(map, true) end)
    local _, port = server:getsockname()
    server.store.preset = "from the caller"

    local p = assert(io.popen(("env -u LD_PRELOAD timeout 20 redis-cli -h 127.0.0.1 -p %d get preset"):format(port)))
    local p2 = assert(io.popen(("env -u LD_PRELOAD timeout 20 redis-cli -h 127.0.0.1 -p %d set made here"):format(port)))
    -- redis-cli's connections come and go: serve until both have closed theirs
    local served = 0
    server.handle_accepted = function(self, sock)
      served = served + 1
      resp.RespServer.handle_accepted(self, sock)
    end
    local function channels()
      local n = 0
      for _ in pairs(map) do n = n + 1 end
      return n
    end
    for _ = 1, 400 do
      if served == 2 and channels() == 1 then break end
      asyncore.loop(0.05, nil, map, 1)
    end
    local got, made = p:read("a"), p2:read("a")
    p:close()
    p2:close()
    assert.are.equal(2, served)
    assert.are.equal("from the caller\n", got)
    assert.are.equal("OK\n", made)
    assert.are.equal("here", server.store.made)
  end)
end)
