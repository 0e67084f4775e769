-- Timer cost at scale: lua-asyncore's C timer heap against luv's (libuv's)
-- on the same work, each in its own child process, interleaved round by round.
--
--   lua5.4 bench/timers.lua [rounds [sizes...]]     (default: 5 rounds; 1000 10000 100000)
--
-- The work for n timers: make n one-shot timers with delays spread over
-- 0..100 ms (the same pseudo-random delays for both), cancel every fourth,
-- then run the loop until the rest have fired.  Each phase is timed in CPU
-- seconds (os.clock), so the real 100 ms of waiting does not count.  A heap
-- makes each timer cost O(log n): the cost per timer grows by a small factor
-- from 1,000 to 100,000 timers, where a list would grow a hundredfold.
local function here()
  return (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
end

local function delays(n)
  local out, x = {}, 12345
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648 -- a fixed LCG: the same for both
    out[i] = x % 101                            -- milliseconds
  end
  return out
end

local impls = {}

function impls.asyncore(n)
  local asyncore = require "asyncore"
  local ms = delays(n)
  local fired = 0
  local function hit() fired = fired + 1 end
  local timers = {}
  local t0 = os.clock()
  for i = 1, n do timers[i] = asyncore.call_later(ms[i] / 1000, hit) end
  local t1 = os.clock()
  for i = 1, n, 4 do timers[i]:cancel() end
  local t2 = os.clock()
  asyncore.loop { map = {} }
  local t3 = os.clock()
  return fired, t1 - t0, t2 - t1, t3 - t2
end

function impls.luv(n)
  local uv = require "luv"
  local ms = delays(n)
  local fired = 0
  local timers = {}
  local function hit(timer) fired = fired + 1; timer:close() end
  local t0 = os.clock()
  for i = 1, n do
    local t = uv.new_timer()
    t:start(ms[i], 0, function() hit(t) end)
    timers[i] = t
  end
  local t1 = os.clock()
  for i = 1, n, 4 do timers[i]:stop(); timers[i]:close() end
  local t2 = os.clock()
  uv.run("default")
  local t3 = os.clock()
  return fired, t1 - t0, t2 - t1, t3 - t2
end

-- child: lua5.4 bench/timers.lua --child IMPL N
if arg[1] == "--child" then
  local impl, n = arg[2], math.tointeger(tonumber(arg[3]))
  local fired, make, cancel, run = impls[impl](n)
  local expected = n - (n + 3) // 4
  if fired ~= expected then
    io.stderr:write(("%s: %d timers fired, expected %d\n"):format(impl, fired, expected))
    os.exit(1)
  end
  print(("%.6f %.6f %.6f"):format(make, cancel, run))
  os.exit(0)
end

local rounds = math.tointeger(tonumber(arg[1] or "5")) or 5
local sizes = {}
for i = 2, #arg do sizes[#sizes + 1] = math.tointeger(tonumber(arg[i])) end
if #sizes == 0 then sizes = { 1000, 10000, 100000 } end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local lua = arg[-1] or "lua5.4"
local script = here() .. "/timers.lua"
local env = ("env LUA_PATH=%s LUA_CPATH=%s"):format(quote(package.path), quote(package.cpath))

local have_luv = pcall(require, "luv")
local names = have_luv and { "asyncore", "luv" } or { "asyncore" }
if not have_luv then io.stderr:write("luv not installed (make bench-deps): asyncore alone\n") end

local function child(impl, n)
  local p = assert(io.popen(("%s %s %s --child %s %d"):format(env, quote(lua), quote(script), impl, n)))
  local line = p:read("l")
  local ok = p:close()
  assert(ok and line, impl .. " " .. n .. ": the child failed")
  local make, cancel, run = line:match("^(%S+) (%S+) (%S+)$")
  return { make = tonumber(make), cancel = tonumber(cancel), run = tonumber(run) }
end

local samples = {} -- samples[impl][n] = list of results
for _, impl in ipairs(names) do
  samples[impl] = {}
  for _, n in ipairs(sizes) do samples[impl][n] = {} end
end
for r = 1, rounds do
  for _, n in ipairs(sizes) do
    for _, impl in ipairs(names) do
      table.insert(samples[impl][n], child(impl, n))
    end
  end
  io.stderr:write(("round %d/%d done\n"):format(r, rounds))
end

local function median_of(xs)
  table.sort(xs)
  local m = #xs
  return m % 2 == 1 and xs[(m + 1) // 2] or (xs[m // 2] + xs[m // 2 + 1]) / 2
end

-- the median of one phase (field) or of the total over a list of results
local function median(list, field)
  local xs = {}
  for i, s in ipairs(list) do xs[i] = field and s[field] or (s.make + s.cancel + s.run) end
  return median_of(xs)
end

local function us_per(impl, n, field) return median(samples[impl][n], field) / n * 1e6 end

print(("timers: %d rounds, medians of CPU time per timer (µs); make n, cancel n/4, run the rest"):format(rounds))
print()
local header = "| n | " .. table.concat((function()
  local h = {}
  for _, impl in ipairs(names) do
    h[#h + 1] = impl .. " make"; h[#h + 1] = impl .. " cancel"; h[#h + 1] = impl .. " run"
    h[#h + 1] = impl .. " total"
  end
  if have_luv then h[#h + 1] = "total × luv" end
  return h
end)(), " | ") .. " |"
print(header)
print((header:gsub("[^|]+", "---")))
for _, n in ipairs(sizes) do
  local cells = { tostring(n) }
  for _, impl in ipairs(names) do
    for _, f in ipairs { "make", "cancel", "run" } do cells[#cells + 1] = ("%.3f"):format(us_per(impl, n, f)) end
    cells[#cells + 1] = ("%.3f"):format(us_per(impl, n))
  end
  if have_luv then
    -- the median over rounds of each round's asyncore/luv ratio of totals
    local ratios = {}
    for i = 1, rounds do
      local a, b = samples.asyncore[n][i], samples.luv[n][i]
      ratios[i] = (a.make + a.cancel + a.run) / (b.make + b.cancel + b.run)
    end
    cells[#cells + 1] = ("%.2f"):format(median_of(ratios))
  end
  print("| " .. table.concat(cells, " | ") .. " |")
end
print()
local small, large = sizes[1], sizes[#sizes]
-- make and cancel are the heap's insert and delete alone; run also pays for
-- the passes, a fixed cost spread over fewer timers when n is small.
for _, impl in ipairs(names) do
  local function heap_ops(n) return us_per(impl, n, "make") + us_per(impl, n, "cancel") end
  print(("%s: per timer at n=%d against n=%d: make+cancel %.2f×, total %.2f× (log2 ratio %.2f; a list ~%d×)"):format(
    impl, large, small, heap_ops(large) / heap_ops(small), us_per(impl, large) / us_per(impl, small),
    math.log(large, 2) / math.log(small, 2), large // small))
end
