-- Signals: Ctrl-C ends loop() in the standalone interpreter and is never
-- swallowed by handle_error; a closed peer never kills the process with SIGPIPE.
local asyncore = require "asyncore"

local ENV = ("LUA_PATH='%s' LUA_CPATH='%s'"):format(package.path, package.cpath)

local support = require "support"
local write_file, read_file = support.write_file, support.read_file

-- Runs script with lua5.4 in the background, waits (a bounded number of
-- checks) for it to print "ready", sends SIGINT, and returns its exit code,
-- stdout and stderr.  `timeout` only keeps a broken run from hanging the suite.
local function interrupt(script)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  write_file(dir .. "/script.lua", script)
  local shell = ([[
    cd %s
    %s timeout --foreground 20 lua5.4 script.lua >out 2>err &
    pid=$!
    i=0
    while [ $i -lt 400 ] && ! grep -q ready out 2>/dev/null; do sleep 0.05; i=$((i+1)); done
    sleep 0.2
    kill -INT $pid
    wait $pid
    echo $?
  ]]):format(dir, ENV)
  local p = assert(io.popen(shell))
  local code = tonumber(p:read("a"):match("(%d+)%s*$"))
  p:close()
  local out, err = read_file(dir .. "/out"), read_file(dir .. "/err")
  os.execute("rm -rf " .. dir)
  return code, out, err
end

describe("Ctrl-C", function()
  for _, backend in ipairs(asyncore.backends()) do
    it("ends a waiting loop() with 'interrupted!' (" .. backend .. ")", function()
      local code, out, err = interrupt(([[
        local asyncore = require "asyncore"
        local d = asyncore.dispatcher()
        d:create_socket()
        d:bind("127.0.0.1", 0)
        d:listen(5)
        d.handle_error = function(self, e) io.stderr:write("HANDLE_ERROR ", tostring(e), "\n") end
        print("ready")
        io.stdout:flush()
        asyncore.loop { timeout = 30, backend = %q }
        print("loop returned")
      ]]):format(backend))
      assert.are.equal(1, code, err)
      assert.matches("interrupted!", err)
      assert.is_nil(err:find("HANDLE_ERROR", 1, true))
      assert.is_nil(out:find("loop returned", 1, true))
    end)
  end

  it("ends a loop() busy inside a handler, not caught by handle_error", function()
    local code, out, err = interrupt([[
      local asyncore = require "asyncore"
      local d = asyncore.dispatcher()
      d:create_socket()
      d.readable = function() return false end
      d.handle_write_event = function()
        print("ready")
        io.stdout:flush()
        local n = 0
        while true do n = n + 1 end
      end
      d.handle_error = function(self, e) io.stderr:write("HANDLE_ERROR ", tostring(e), "\n") end
      asyncore.loop { timeout = 30 }
      print("loop returned")
    ]])
    assert.are.equal(1, code, err)
    assert.matches("interrupted!", err)
    assert.is_nil(err:find("HANDLE_ERROR", 1, true))
    assert.is_nil(out:find("loop returned", 1, true))
  end)
end)

describe("SIGPIPE", function()
  it("is ignored once asyncore is loaded, as Python does", function()
    local status = read_file("/proc/self/status")
    local ignored = tonumber(status:match("SigIgn:%s*(%x+)"), 16)
    assert.is_truthy(ignored)
    -- SIGPIPE is signal 13: bit 12 of the mask
    assert.are.equal(1, (ignored >> 12) & 1)
  end)

  it("never kills a process sending to a closed peer; handle_close runs instead", function()
    -- In a fresh process that sets SIGPIPE back to its default first: MSG_NOSIGNAL alone must hold.
    local script = [[
      local asyncore = require "asyncore"
      local listener = asyncore.dispatcher()
      listener:create_socket()
      listener:bind("127.0.0.1", 0)
      listener:listen(5)
      local client = asyncore.dispatcher()
      client:create_socket()
      client.handle_connect = function() end
      client:connect(listener:getsockname())
      local peer
      for _ = 1, 100 do
        peer = peer or listener:accept()
        if peer and client.connected then break end
        asyncore.loop { timeout = 0.05, count = 1 }
      end
      assert(peer, "no connection")
      peer:close()
      local closes = 0
      client.handle_close = function() closes = closes + 1 end
      for _ = 1, 200 do
        client:send(string.rep("x", 65536))
        if closes > 0 then break end
      end
      print("survived", closes)
    ]]
    local path = os.tmpname()
    write_file(path, script)
    -- trap - PIPE: the shell resets the disposition to default for the child
    local p = assert(io.popen("trap - PIPE; " .. ENV .. " timeout 20 lua5.4 " .. path .. " 2>&1; echo rc=$?"))
    local out = p:read("a")
    p:close()
    os.remove(path)
    assert.matches("survived\t1", out, 1, true)
    assert.matches("rc=0", out, 1, true)
  end)
end)
