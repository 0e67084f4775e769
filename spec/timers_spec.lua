-- Timers: call_later, call_at, cancel, the loop waking for them, and their
-- errors.  Timers are global, so every test cancels what it left pending.
local asyncore = require "asyncore"
local support = require "support"

local made = {}
local function later(delay, fn, ...)
  local t = asyncore.call_later(delay, fn, ...)
  made[#made + 1] = t
  return t
end
local function at(when, fn, ...)
  local t = asyncore.call_at(when, fn, ...)
  made[#made + 1] = t
  return t
end

-- A map whose only channel is a UDP socket that never becomes readable: a
-- loop over it waits the whole timeout unless a timer ends the wait.
local function idle_map()
  local map = {}
  local d = asyncore.dispatcher(nil, map)
  d:create_socket(asyncore.AF_INET, asyncore.SOCK_DGRAM)
  d.readable = function() return false end
  d.writable = function() return false end
  return map, d
end

-- A connected TCP pair on 127.0.0.1: a listening dispatcher accepts, and the
-- client end is a dispatcher in the same map.
local function tcp_pair(map)
  local server = asyncore.dispatcher(nil, map)
  server:create_socket()
  server:set_reuse_addr()
  server:bind("127.0.0.1", 0)
  server:listen(5)
  local accepted
  server.handle_accepted = function(_, sock) accepted = asyncore.dispatcher(sock, map) end
  local client = asyncore.dispatcher(nil, map)
  client:create_socket()
  client:connect(server:getsockname())
  client.handle_connect = function() end
  client.writable = function(self) return not self.connected end
  for _ = 1, 100 do
    if accepted and client.connected then break end
    asyncore.loop { map = map, timeout = 0.05, count = 1 }
  end
  assert(accepted and client.connected, "no connection")
  server:close()
  accepted.writable = function() return false end
  return client, accepted
end

after_each(function()
  for _, t in ipairs(made) do t:cancel() end
  made = {}
end)

describe("call_later and call_at", function()
  it("run in order of due time, ties in the order they were made", function()
    local order = {}
    local function note(name) order[#order + 1] = name end
    later(0.03, note, "c")
    later(0.01, note, "a1")
    later(0.01, note, "a2")
    later(0.02, note, "b")
    later(0, note, "zero")
    asyncore.loop()
    assert.same({ "zero", "a1", "a2", "b", "c" }, order)
  end)

  it("keep due order over thousands of timers, also after random cancels", function()
    math.randomseed(6)
    local now = asyncore.time()
    local fired, expected, entries = {}, {}, {}
    for i = 1, 5000 do
      -- all in the past, so one pass runs every one still pending
      local when = now - math.random(0, 300) / 1000
      entries[i] = { when = when, i = i, timer = at(when, function() fired[#fired + 1] = i end) }
    end
    for i = 1, 5000, 3 do assert.is_true(entries[i].timer:cancel()) end
    for _, e in ipairs(entries) do
      if not e.timer:cancelled() then expected[#expected + 1] = e end
    end
    table.sort(expected, function(x, y) return x.when < y.when or (x.when == y.when and x.i < y.i) end)
    for k, e in ipairs(expected) do expected[k] = e.i end
    asyncore.poll(0, {})
    assert.are.equal(#expected, #fired)
    assert.same(expected, fired)
  end)

  it("keep due order under random interleaved adds, cancels and passes", function()
    math.randomseed(66)
    local pending, serial = {}, 0 -- serial -> entry, for the timers not yet run or cancelled
    local base = asyncore.time()
    for _ = 1, 40 do
      local fired = {}
      for _ = 1, math.random(1, 400) do
        if math.random() < 0.3 and next(pending) then
          -- cancel a random pending timer
          local keys = {}
          for k in pairs(pending) do keys[#keys + 1] = k end
          local k = keys[math.random(#keys)]
          assert.is_true(pending[k].timer:cancel())
          pending[k] = nil
        else
          serial = serial + 1
          local id = serial
          -- due in the past (runs at the next pass) or far ahead (stays)
          local when = math.random() < 0.8 and base - math.random(0, 50) / 100 or base + 3600
          pending[id] = { when = when, id = id,
            timer = at(when, function() fired[#fired + 1] = id; pending[id] = nil end) }
        end
      end
      local due = {}
      for _, e in pairs(pending) do if e.when <= base then due[#due + 1] = e end end
      table.sort(due, function(x, y) return x.when < y.when or (x.when == y.when and x.id < y.id) end)
      for i, e in ipairs(due) do due[i] = e.id end
      asyncore.poll(0, {})
      assert.same(due, fired)
    end
  end)

  it("pass their extra arguments, nils included", function()
    local got
    later(0, function(...) got = table.pack(...) end, nil, 2, nil)
    asyncore.loop()
    assert.are.equal(3, got.n)
    assert.is_nil(got[1])
    assert.are.equal(2, got[2])
  end)

  it("accept a callable table", function()
    local hits = 0
    later(0, setmetatable({}, { __call = function(_, x) hits = hits + x end }), 5)
    asyncore.loop()
    assert.are.equal(5, hits)
  end)

  it("call_at runs a time in the past at the next pass, and when() gives the due time", function()
    local ran = false
    local when = asyncore.time() - 10
    local t = at(when, function() ran = true end)
    assert.are.equal(when, t:when())
    asyncore.poll(0, {})
    assert.is_true(ran)
  end)

  it("time() is monotonic and in seconds", function()
    local a = asyncore.time()
    local b = asyncore.time()
    assert.is_true(b >= a)
    assert.are.equal("float", math.type(a))
  end)

  it("tostring tells the state", function()
    local t = later(60, function() end)
    assert.matches("^<asyncore%.timer pending when=[%d.]+ at 0x%x+>$", tostring(t))
    t:cancel()
    assert.matches("^<asyncore%.timer cancelled", tostring(t))
    local u = later(0, function() end)
    asyncore.loop()
    assert.matches("^<asyncore%.timer done", tostring(u))
  end)
end)

describe("cancel", function()
  it("stops a pending timer and says whether it was pending", function()
    local ran = false
    local t = later(0, function() ran = true end)
    assert.is_false(t:cancelled())
    assert.is_true(t:cancel())
    assert.is_true(t:cancelled())
    assert.is_false(t:cancel())
    asyncore.loop()
    assert.is_false(ran)
  end)

  it("of a timer that has run returns false and leaves it not cancelled", function()
    local t = later(0, function() end)
    asyncore.loop()
    assert.is_false(t:cancel())
    assert.is_false(t:cancelled())
  end)

  it("from inside a timer stops a later timer due in the same pass", function()
    local ran = {}
    local second
    at(asyncore.time() - 2, function() ran[#ran + 1] = 1; assert.is_true(second:cancel()) end)
    second = at(asyncore.time() - 1, function() ran[#ran + 1] = 2 end)
    at(asyncore.time() - 0.5, function() ran[#ran + 1] = 3 end)
    asyncore.poll(0, {})
    assert.same({ 1, 3 }, ran)
  end)

  it("of the running timer itself returns false", function()
    local result
    local t
    t = later(0, function() result = t:cancel() end)
    asyncore.loop()
    assert.is_false(result)
  end)

  it("lets go of the function and its arguments", function()
    local weak = setmetatable({}, { __mode = "v" })
    local t
    do
      local arg, fn = {}, function() end
      weak.arg, weak.fn = arg, fn
      t = later(60, fn, arg)
    end
    assert.is_true(t:cancel())
    collectgarbage(); collectgarbage()
    assert.is_nil(weak.arg)
    assert.is_nil(weak.fn)
  end)
end)

describe("timers that make timers", function()
  it("run the new ones in a later pass, even with delay 0", function()
    local log = {}
    later(0, function()
      log[#log + 1] = "first"
      later(0, function() log[#log + 1] = "second" end)
    end)
    asyncore.loop { count = 1, map = {} }
    assert.same({ "first" }, log)
    asyncore.loop { count = 1, map = {} }
    assert.same({ "first", "second" }, log)
  end)

  it("a timer re-arming itself with delay 0 does not starve I/O", function()
    local map = {}
    local client, peer = tcp_pair(map)
    local ticks, got = 0, {}
    local function tick()
      ticks = ticks + 1
      if ticks < 1000 then later(0, tick) end
    end
    later(0, tick)
    peer.handle_read = function(self) got[#got + 1] = self:recv(100) end
    client:send("ping")
    for _ = 1, 50 do
      if #got > 0 then break end
      asyncore.loop { map = map, count = 1, timeout = 0.05 }
    end
    assert.same({ "ping" }, got)
    assert.is_true(ticks < 1000)
    client:close(); peer:close()
  end)

  it("a timer re-armed with a time in the past holds back no other due timer", function()
    local steps, other_ran_at = 0, nil
    local function step()
      steps = steps + 1
      if steps < 1000 then made[#made + 1] = asyncore.call_at(0, step) end
    end
    at(0, step)
    later(0, function() other_ran_at = steps end)
    asyncore.poll(0, {})
    assert.are.equal(1, other_ran_at)
    assert.are.equal(1, steps)
  end)

  it("a chain of timers ends, and loop() without count returns when it does", function()
    local n = 0
    local function step()
      n = n + 1
      if n < 20 then later(0.001, step) end
    end
    later(0, step)
    asyncore.loop { map = {} }
    assert.are.equal(20, n)
  end)
end)

describe("the loop and timers", function()
  it("loop() with an empty map and no timer returns at once", function()
    local start = asyncore.time()
    asyncore.loop { map = {}, timeout = 20 }
    assert.is_true(asyncore.time() - start < 10, "an empty loop waited")
  end)

  it("loop() without count runs while a timer is pending, with an empty map", function()
    local ran = false
    later(0.05, function() ran = true end)
    asyncore.loop { map = {}, timeout = 30 }
    assert.is_true(ran)
  end)

  for _, backend in ipairs(asyncore.backends()) do
    it("a waiting pass ends at the next timer (" .. backend .. ")", function()
      local map, d = idle_map()
      local ran = false
      local start = asyncore.time()
      later(0.05, function() ran = true end)
      -- one pass whose timeout is 20 s: the timer must end its wait
      asyncore.loop { map = map, timeout = 20, count = 1, backend = backend }
      assert.is_true(ran)
      assert.is_true(asyncore.time() - start < 15, "the pass waited out its timeout")
      d:close()
    end)

    it("timers and I/O interleave (" .. backend .. ")", function()
      local map = {}
      local client, peer = tcp_pair(map)
      local received = {}
      peer.handle_read = function(self)
        local data = self:recv(100)
        received[#received + 1] = data
        if data == "3" then self:close(); client:close() end
      end
      -- each timer sends a byte from the client; the peer's reads see them in order
      for i = 1, 3 do later(0.01 * i, function() client:send(tostring(i)) end) end
      for _ = 1, 200 do
        if next(map) == nil then break end
        asyncore.loop { map = map, count = 1, timeout = 1, backend = backend }
      end
      assert.same({ "1", "2", "3" }, received)
    end)
  end

  it("timers run in poll() and poll2() passes too, whatever the map", function()
    local ran = 0
    later(0, function() ran = ran + 1 end)
    later(0, function() ran = ran + 1 end)
    asyncore.poll(0, {})
    assert.are.equal(2, ran)
    later(0, function() ran = ran + 1 end)
    asyncore.poll2(0, {})
    assert.are.equal(3, ran)
  end)

  it("a timer may run a nested loop", function()
    local inner = false
    later(0, function()
      later(0, function() inner = true end)
      asyncore.loop { map = {}, count = 5 }
    end)
    asyncore.loop { map = {} }
    assert.is_true(inner)
  end)

  it("a timer may close channels and end the loop", function()
    local map, d = idle_map()
    later(0.01, function() d:close() end)
    asyncore.loop { map = map, timeout = 20 }
    assert.is_nil(next(map))
  end)
end)

describe("errors in timers", function()
  local saved
  before_each(function() saved = asyncore.handle_timer_error end)
  after_each(function() asyncore.handle_timer_error = saved end)

  it("go to handle_timer_error with the raised value and a traceback; the loop goes on", function()
    local errs, after = {}, false
    local value = { code = 7 }
    asyncore.handle_timer_error = function(err, tb) errs[#errs + 1] = { err = err, tb = tb } end
    later(0, function() error(value) end)
    later(0.01, function() error("plain") end)
    later(0.02, function() after = true end)
    asyncore.loop { map = {} }
    assert.are.equal(2, #errs)
    assert.are.equal(value, errs[1].err)
    assert.matches("stack traceback", errs[1].tb)
    assert.matches("plain$", errs[2].err)
    assert.is_true(after)
  end)

  it("by default print the error and traceback to stderr", function()
    later(0, function() error("kaboom") end)
    local out = support.capture_stderr(function() asyncore.loop { map = {} } end)
    assert.matches("error in timer: .*kaboom", out)
    assert.matches("stack traceback", out)
  end)

  it("ExitNow leaves loop(); timers still due run in the next loop", function()
    local ran = false
    at(asyncore.time() - 2, function() error(asyncore.ExitNow) end)
    at(asyncore.time() - 1, function() ran = true end)
    local ok, err = pcall(asyncore.loop, { map = {} })
    assert.is_false(ok)
    assert.are.equal(asyncore.ExitNow, err)
    assert.is_false(ran)
    asyncore.loop { map = {} }
    assert.is_true(ran)
  end)

  it("a handle_timer_error that is not a function leaves the loop with the error it could not take", function()
    asyncore.handle_timer_error = 42
    later(0, function() error("original", 0) end)
    local ok, err = pcall(asyncore.loop, { map = {} })
    assert.is_false(ok)
    assert.are.equal("handle_timer_error: asyncore.handle_timer_error is a number, not a function, to take: original", err)
  end)

  it("an error inside handle_timer_error leaves the loop", function()
    asyncore.handle_timer_error = function() error("handler broke", 0) end
    later(0, function() error("first") end)
    local ok, err = pcall(asyncore.loop, { map = {} })
    assert.is_false(ok)
    assert.are.equal("handler broke", err)
  end)

  it("a timer's error does not reach a channel's handle_error", function()
    local map, d = idle_map()
    local channel_errors = 0
    d.handle_error = function() channel_errors = channel_errors + 1 end
    asyncore.handle_timer_error = function() end
    later(0, function() error("timer") end)
    later(0.02, function() d:close() end)
    asyncore.loop { map = map, timeout = 1 }
    assert.are.equal(0, channel_errors)
  end)
end)

describe("timer lifetime", function()
  it("a pending timer runs though the script dropped it", function()
    local ran = false
    asyncore.call_later(0, function() ran = true end)
    collectgarbage(); collectgarbage()
    asyncore.loop { map = {} }
    assert.is_true(ran)
  end)

  it("a timer that has run lets go of its function and arguments", function()
    local weak = setmetatable({}, { __mode = "v" })
    local t
    do
      local arg = {}
      weak.arg = arg
      t = later(0, function(_) end, arg)
    end
    asyncore.loop { map = {} }
    collectgarbage(); collectgarbage()
    assert.is_nil(weak.arg)
    assert.is_false(t:cancel())
  end)
end)

describe("timers and the core", function()
  it("a second copy of the core keeps its timers apart", function()
    local saved = package.loaded["asyncore.core"]
    package.loaded["asyncore.core"] = nil
    local other = require "asyncore.core"
    package.loaded["asyncore.core"] = saved
    assert.are_not.equal(saved, other)
    local ran = false
    local t = saved.call_later(0, function() ran = true end)
    made[#made + 1] = t
    local u = other.call_later(60, function() end)
    assert.is_true(t:cancel())
    assert.is_true(t:cancelled())
    assert.is_true(u:cancel())
    saved.pass(0, {}, "poll", true)
    assert.is_false(ran)
  end)

  it("a finalizer run at exit after the core's own gets errors naming the call, not a crash", function()
    -- Lua finalizes newest first: guard, made before require, runs its __gc
    -- after the core has freed its loop and timer heap.
    local script = support.tmppath(".lua")
    support.write_file(script, [[
      local guard = setmetatable({}, {__gc = function()
        local a = package.loaded.asyncore
        print("call_later", select(2, pcall(a.call_later, 0, print)))
        print("poll", select(2, pcall(a.poll, 0)))
        print("poll2", select(2, pcall(a.poll2, 0, {})))
        print("loop", select(2, pcall(a.loop, 0, nil, {}, 1)))
        local d = a.dispatcher(a.socket(a.AF_INET, a.SOCK_STREAM))
        d:close()
        print("closed", d:fileno())
      end})
      local a = require "asyncore"
      local pending = a.call_later(60, print) -- pending when the core goes
      print("exiting")
    ]])
    local p = assert(io.popen(("LUA_PATH=%s LUA_CPATH=%s lua5.4 %s 2>&1; echo \"rc=$?\""):format(
      support.shell_quote(package.path), support.shell_quote(package.cpath), support.shell_quote(script))))
    local out = p:read("a")
    p:close()
    support.unlink(script)
    local closed = "the asyncore core is closed %(the Lua state is closing%)"
    assert.matches("^exiting\n", out)
    assert.matches("\ncall_later\tcall_later: " .. closed .. "\n", out)
    assert.matches("\npoll\t[^\n]*poll: " .. closed .. "\n", out)
    assert.matches("\npoll2\t[^\n]*poll2: " .. closed .. "\n", out)
    assert.matches("\nloop\t[^\n]*loop: " .. closed .. "\n", out)
    assert.matches("\nclosed\t%-1\nrc=0\n$", out)
  end)

  it("memory taken by a burst of timers is given back once they have run", function()
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    local f = function() end
    for _ = 1, 100000 do asyncore.call_later(0, f) end
    asyncore.poll(0, {})
    later(0, f)
    asyncore.poll(0, {})
    collectgarbage(); collectgarbage()
    -- 100,000 pending timers take about 14 MB; what stays must be far less
    assert.is_true(collectgarbage("count") - before < 1024,
      ("%.0f KiB kept"):format(collectgarbage("count") - before))
  end)
end)

describe("timer bad input", function()
  local P = table.pack
  local cases = {
    { "call_later", P(-1, print), "bad argument 'delay' to 'call_later' %(finite number >= 0 expected, got %-1%)" },
    { "call_later", P(0 / 0, print), "bad argument 'delay' to 'call_later' %(finite number >= 0 expected, got nan%)" },
    { "call_later", P(math.huge, print), "bad argument 'delay' to 'call_later'" },
    { "call_later", P("soon", print), "bad argument 'delay' to 'call_later' %(finite number >= 0 expected, got string%)" },
    { "call_later", P(nil, print), "bad argument 'delay' to 'call_later'" },
    { "call_later", P(1, 5), "bad argument 'fn' to 'call_later' %(function expected, got number%)" },
    { "call_later", P(1), "bad argument 'fn' to 'call_later' %(function expected, got no value%)" },
    { "call_later", P(1, {}), "bad argument 'fn' to 'call_later' %(function expected, got table%)" },
    { "call_later", P("1", print), "bad argument 'delay' to 'call_later' %(finite number >= 0 expected, got string%)" },
    { "call_at", P("x", print), "bad argument 'when' to 'call_at' %(finite number expected, got string%)" },
    { "call_at", P(-math.huge, print), "bad argument 'when' to 'call_at'" },
    { "call_at", P(1, nil), "bad argument 'fn' to 'call_at'" },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " rejects " .. c[3]:gsub("%%", ""), function()
      local ok, err = pcall(asyncore[c[1]], table.unpack(c[2], 1, c[2].n))
      assert.is_false(ok)
      assert.matches(c[3], err)
    end)
  end

  it("timer methods name themselves when called on something else", function()
    local t = later(60, function() end)
    local methods = getmetatable(t).__index
    for _, name in ipairs { "cancel", "cancelled", "when" } do
      local ok, err = pcall(methods[name], {})
      assert.is_false(ok)
      assert.matches("bad argument 'self' to '" .. name .. "' %(asyncore%.timer expected, got table%)", err)
    end
  end)

  it("a negative delay that is zero is fine", function()
    local ran = false
    later(-0.0, function() ran = true end)
    asyncore.loop { map = {} }
    assert.is_true(ran)
  end)
end)
