-- bench/report.lua: turns build/bench/results.tsv (written by bench/run) into
-- the markdown report, printed and written to a file.
--
--   lua5.4 bench/report.lua RESULTS.TSV [RESULTS.MD]
--
-- Each scenario's table gives, per server, the median over rounds of req/s,
-- latency, CPU per request and RSS, and the ratios of those medians to the raw
-- C server and to luv.  Then the memory per idle connection and the targets of
-- the issue, checked for the three lua-asyncore servers.

local tsv, mdpath = arg[1], arg[2]
if not tsv then
  io.stderr:write("usage: lua5.4 bench/report.lua RESULTS.TSV [RESULTS.MD]\n")
  os.exit(2)
end

local SERVERS = {
  { "epoll_c", "raw C epoll" },
  { "asyncore_dispatcher", "lua-asyncore dispatcher" },
  { "asyncore_with_send", "lua-asyncore dispatcher_with_send" },
  { "asyncore_chat", "lua-asyncore async_chat" },
  { "luv", "luv" },
  { "cqueues", "cqueues" },
  { "luasocket", "LuaSocket select" },
  { "py_asyncore", "Python asyncore" },
  { "py_asyncio", "Python asyncio" },
}
local OURS = { "asyncore_dispatcher", "asyncore_with_send", "asyncore_chat" }
local BASE, PEER = "epoll_c", "luv"

-- ------------------------------------------------------------------ input
local meta = {}
local runs = {}        -- runs[scenario][server] = list of records
local scen_order, seen_scen = {}, {}

local function split(line, sep)
  local out, start = {}, 1
  while true do
    local i = line:find(sep, start, true)
    if not i then out[#out + 1] = line:sub(start); return out end
    out[#out + 1] = line:sub(start, i - 1)
    start = i + #sep
  end
end

local function kv(text)
  local t = {}
  for k, v in (text or ""):gmatch("([%w_]+)=(%S+)") do t[k] = tonumber(v) or v end
  return t
end

local f = assert(io.open(tsv))
for line in f:lines() do
  local cols = split(line, "\t")
  if cols[1] == "#meta" then
    for i = 2, #cols do
      local k, v = cols[i]:match("^([%w_]+)=(.*)$")
      if k then meta[k] = v end
    end
  elseif #cols >= 4 then
    local round, scen, server, status, reason, values = table.unpack(cols)
    if not seen_scen[scen] then
      seen_scen[scen] = true
      scen_order[#scen_order + 1] = scen
    end
    runs[scen] = runs[scen] or {}
    runs[scen][server] = runs[scen][server] or {}
    local r = kv(values)
    r.status, r.reason, r.round = status, reason, tonumber(round)
    table.insert(runs[scen][server], r)
  end
end
f:close()

-- ------------------------------------------------------------------ stats
local function median(list)
  if #list == 0 then return nil end
  table.sort(list)
  local n = #list
  if n % 2 == 1 then return list[(n + 1) // 2] end
  return (list[n // 2] + list[n // 2 + 1]) / 2
end

-- Summary of one server in one scenario.
local function summary(scen, server)
  local list = runs[scen] and runs[scen][server]
  if not list then return nil end
  local s = { ok = 0, fail = 0, na = 0, reasons = {}, errors = 0, stalled = 0, unprimed = 0, by_round = {} }
  local cols = { rps = {}, p50_us = {}, p99_us = {}, srv_cpu_us_per_req = {}, srv_rss_kb = {},
                 srv_hwm_kb = {}, srv_rss0_kb = {}, idle_rss_kb = {}, idle_bytes_per_conn = {},
                 setup_s = {} }
  for _, r in ipairs(list) do
    if r.status == "ok" then
      s.ok = s.ok + 1
      s.by_round[r.round] = r
      for k, c in pairs(cols) do
        local v = r[k]
        if type(v) == "number" and v >= 0 then c[#c + 1] = v end
      end
      s.errors = s.errors + (r.errors or 0)
      s.stalled = s.stalled + (r.stalled or 0)
      s.unprimed = s.unprimed + (r.unprimed or 0)
      if r.idle_ok == 0 then s.reasons["the server did not hold every idle connection"] = true end
    else
      s[r.status] = (s[r.status] or 0) + 1
      if r.reason and r.reason ~= "" then s.reasons[r.reason] = true end
    end
  end
  local rps = cols.rps
  if #rps > 0 then
    local lo, hi = math.huge, -math.huge
    for _, v in ipairs(rps) do lo = math.min(lo, v); hi = math.max(hi, v) end
    s.spread = hi > 0 and (hi - lo) / median({ table.unpack(rps) }) or 0
  end
  for k, c in pairs(cols) do s[k] = median(c) end
  return s
end

local cache = {}
local function get(scen, server)
  cache[scen] = cache[scen] or {}
  if cache[scen][server] == nil then cache[scen][server] = summary(scen, server) or false end
  return cache[scen][server] or nil
end

local function ratio(a, b)
  if a and b and b > 0 then return a / b end
  return nil
end

-- The median over rounds of field(scen, server) / field(oscen, other), each
-- round's value divided by the other's from the same round (the runs closest
-- in time), so that a slow phase of the machine affects both sides.
local function paired(scen, server, oscen, other, field)
  local a, b = get(scen, server), get(oscen, other)
  if not (a and b) then return nil end
  local list = {}
  for round, ra in pairs(a.by_round) do
    local rb = b.by_round[round]
    local va, vb = ra[field], rb and rb[field]
    if type(va) == "number" and type(vb) == "number" and va >= 0 and vb > 0 then
      list[#list + 1] = va / vb
    end
  end
  return median(list)
end

-- ------------------------------------------------------------- formatting
local out = {}
local function emit(s) out[#out + 1] = s or "" end

local function thousands(n)
  local s = string.format("%d", math.floor(n + 0.5))
  local r = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (r:gsub("^,", ""))
end

local function fmt(v, spec)
  if v == nil then return "—" end
  if spec == "int" then return thousands(v) end
  return string.format(spec or "%.2f", v)
end

local function reason_text(s)
  local r = {}
  for k in pairs(s.reasons) do r[#r + 1] = k end
  table.sort(r)
  return table.concat(r, "; "):gsub("|", "\\|")
end

local IDLE = tonumber(meta.idle) or 10000
local function scen_title(id)
  local c, m = id:match("^c(%d+)_s(%w+)$")
  if c then
    return string.format("%s connection%s × %s", thousands(tonumber(c)), c == "1" and "" or "s",
                         m == "64" and "64 B" or m == "16k" and "16 KiB" or m)
  end
  if id == "p16_c50_s64" then return "50 connections × 64 B, 16 requests pipelined" end
  if id == "idle_c50_s64" then
    return string.format("50 busy connections × 64 B + %s idle connections", thousands(IDLE))
  end
  return id
end

local function notes(s)
  local n = {}
  if s.fail > 0 then n[#n + 1] = string.format("%d/%d rounds failed: %s", s.fail, s.fail + s.ok, reason_text(s)) end
  if s.errors > 0 then n[#n + 1] = "connection errors " .. s.errors end
  if s.stalled > 0 then n[#n + 1] = "stalled " .. s.stalled end
  if s.unprimed > 0 then n[#n + 1] = "never answered in setup " .. s.unprimed end
  if s.fail == 0 and next(s.reasons) then n[#n + 1] = reason_text(s) end
  if s.setup_s and s.setup_s >= 1 then n[#n + 1] = string.format("setup %.1f s", s.setup_s) end
  return table.concat(n, "; ")
end

-- ----------------------------------------------------------------- report
emit("# lua-asyncore echo benchmark")
emit()
emit(string.format("%s; library `%s`, backend `%s`; %s round%s of %s s (after %s s warmup) per server and "
  .. "scenario; %s CPUs, kernel %s.", meta.date or "?", meta.lib or "?", meta.backend or "?", meta.rounds or "?",
  meta.rounds == "1" and "" or "s", meta.duration or "?", meta.warmup or "?", meta.nproc or "?", meta.kernel or "?"))
emit()
emit("Values are medians over the rounds. A ratio is the median over rounds of the ratio within each round "
  .. "(each round runs every server in turn, so the two runs of a ratio are close in time and share the "
  .. "machine's mood). `spread` is (max − min) / median of req/s over the rounds. CPU is the server's "
  .. "utime+stime during the measured window divided by the requests answered in it. RSS is the server's "
  .. "at the end of the window.")
emit()

-- Overview: ratio to raw C for every scenario.
emit("## Overview: req/s as a ratio to the raw C server")
emit()
local head = { "server" }
for _, scen in ipairs(scen_order) do head[#head + 1] = "`" .. scen .. "`" end
emit("| " .. table.concat(head, " | ") .. " |")
emit("|" .. string.rep("---|", #head))
for _, sv in ipairs(SERVERS) do
  local row, any = { sv[2] }, false
  for _, scen in ipairs(scen_order) do
    local s = get(scen, sv[1])
    if s then any = true end
    if not s then row[#row + 1] = ""
    elseif s.ok == 0 then row[#row + 1] = s.na > 0 and "n/a" or "FAIL"
    else row[#row + 1] = fmt(paired(scen, sv[1], scen, BASE, "rps")) end
  end
  if any then emit("| " .. table.concat(row, " | ") .. " |") end
end
emit()

for _, scen in ipairs(scen_order) do
  local idle = scen:match("^idle")
  emit(string.format("## %s (`%s`)", scen_title(scen), scen))
  emit()
  local cols = { "server", "req/s", "spread", "× raw C", "× luv" }
  if idle then cols[#cols + 1] = "× without idle" end
  for _, c in ipairs { "p50 µs", "p99 µs", "CPU µs/req", "CPU × raw C", "RSS KiB", "peak RSS KiB", "notes" } do
    cols[#cols + 1] = c
  end
  emit("| " .. table.concat(cols, " | ") .. " |")
  emit("|---|" .. string.rep("--:|", #cols - 2) .. "---|")
  for _, sv in ipairs(SERVERS) do
    local s = get(scen, sv[1])
    if s then
      local row = { sv[2] }
      if s.ok == 0 then
        local tag = s.na > 0 and "n/a" or "FAIL"
        row[#row + 1] = tag
        while #row < #cols - 1 do row[#row + 1] = "" end
        row[#row + 1] = reason_text(s)
      else
        row[#row + 1] = fmt(s.rps, "int")
        row[#row + 1] = s.spread and string.format("%.0f%%", s.spread * 100) or "—"
        row[#row + 1] = fmt(paired(scen, sv[1], scen, BASE, "rps"))
        row[#row + 1] = fmt(paired(scen, sv[1], scen, PEER, "rps"))
        if idle then
          row[#row + 1] = fmt(paired(scen, sv[1], "c50_s64", sv[1], "rps"))
        end
        row[#row + 1] = fmt(s.p50_us, "%.0f")
        row[#row + 1] = fmt(s.p99_us, "%.0f")
        row[#row + 1] = fmt(s.srv_cpu_us_per_req, "%.2f")
        row[#row + 1] = fmt(paired(scen, sv[1], scen, BASE, "srv_cpu_us_per_req"))
        row[#row + 1] = fmt(s.srv_rss_kb, "int")
        row[#row + 1] = fmt(s.srv_hwm_kb, "int")
        row[#row + 1] = notes(s)
      end
      emit("| " .. table.concat(row, " | ") .. " |")
    end
  end
  emit()
end

-- Memory per idle connection.
local mem_scen = "idle_c50_s64"
if runs[mem_scen] then
  emit(string.format("## Memory per idle connection (%s idle connections)", thousands(IDLE)))
  emit()
  emit("(RSS with the idle connections open and accepted − RSS of the fresh server) / connections; "
    .. "sampled before any busy connection opens.")
  emit()
  emit("| server | RSS at start KiB | RSS with idle KiB | bytes per idle connection | notes |")
  emit("|---|--:|--:|--:|---|")
  for _, sv in ipairs(SERVERS) do
    local s = get(mem_scen, sv[1])
    if s then
      if s.ok == 0 then
        emit(string.format("| %s | %s | | | %s |", sv[2], s.na > 0 and "n/a" or "FAIL", reason_text(s)))
      else
        emit(string.format("| %s | %s | %s | %s | %s |", sv[2], fmt(s.srv_rss0_kb, "int"),
          fmt(s.idle_rss_kb, "int"), fmt(s.idle_bytes_per_conn, "int"), notes(s)))
      end
    end
  end
  emit()
end

-- Targets of the issue, for the lua-asyncore servers.
local have_ours = false
for _, n in ipairs(OURS) do
  for _, scen in ipairs(scen_order) do if get(scen, n) then have_ours = true end end
end
if have_ours then
  emit("## Targets (lua-asyncore servers)")
  emit()
  local function rps_ratio(scen, other)
    return function(n) return paired(scen, n, scen, other, "rps") end
  end
  local function cpu_ratio(scen)
    return function(n) return paired(scen, n, scen, BASE, "srv_cpu_us_per_req") end
  end
  local targets = {
    { "50 conns × 64 B: req/s ≥ 0.9 × raw C", rps_ratio("c50_s64", BASE), ">=", 0.9 },
    { "50 conns × 64 B: req/s ≥ 1.1 × luv", rps_ratio("c50_s64", PEER), ">=", 1.1 },
    { "50 conns × 64 B: CPU/req ≤ 1.15 × raw C", cpu_ratio("c50_s64"), "<=", 1.15 },
    { "1,000 conns × 64 B: req/s ≥ 0.9 × raw C", rps_ratio("c1000_s64", BASE), ">=", 0.9 },
    { "1,000 conns × 64 B: req/s ≥ 1.1 × luv", rps_ratio("c1000_s64", PEER), ">=", 1.1 },
    { "1,000 conns × 64 B: CPU/req ≤ 1.15 × raw C", cpu_ratio("c1000_s64"), "<=", 1.15 },
    { "16 pipelined: req/s ≥ 0.8 × raw C", rps_ratio("p16_c50_s64", BASE), ">=", 0.8 },
    { string.format("50 busy + %s idle: req/s ≥ 0.8 × 50 busy alone", thousands(IDLE)),
      function(n) return paired("idle_c50_s64", n, "c50_s64", n, "rps") end, ">=", 0.8 },
    { "memory per idle connection ≤ 512 B",
      function(n)
        local s = get("idle_c50_s64", n)
        return s and s.ok > 0 and s.idle_bytes_per_conn or nil
      end, "<=", 512, "%.0f B" },
  }
  local hdr = { "target" }
  for _, n in ipairs(OURS) do hdr[#hdr + 1] = n end
  emit("| " .. table.concat(hdr, " | ") .. " |")
  emit("|---|" .. string.rep("--:|", #OURS))
  local passed, total = 0, 0
  for _, t in ipairs(targets) do
    local row = { t[1] }
    for _, n in ipairs(OURS) do
      local v = t[2](n)
      if v == nil then
        row[#row + 1] = "—"
      else
        local ok = (t[3] == ">=" and v >= t[4]) or (t[3] == "<=" and v <= t[4])
        total = total + 1
        if ok then passed = passed + 1 end
        row[#row + 1] = string.format(t[5] or "%.2f", v) .. (ok and " ✓" or " ✗")
      end
    end
    emit("| " .. table.concat(row, " | ") .. " |")
  end
  emit()
  emit(string.format("%d of %d target checks met.", passed, total))
  emit()
end

-- How much the machine moved: the raw C server's req/s in each round.
do
  local nrounds = 0
  for _, scen in ipairs(scen_order) do
    local b = get(scen, BASE)
    if b then for r in pairs(b.by_round) do nrounds = math.max(nrounds, r) end end
  end
  if nrounds > 1 then
    emit("## Machine drift: raw C req/s in each round")
    emit()
    local h = { "scenario" }
    for r = 1, nrounds do h[#h + 1] = "round " .. r end
    emit("| " .. table.concat(h, " | ") .. " |")
    emit("|---|" .. string.rep("--:|", nrounds))
    for _, scen in ipairs(scen_order) do
      local b = get(scen, BASE)
      if b then
        local row = { "`" .. scen .. "`" }
        for r = 1, nrounds do
          local rec = b.by_round[r]
          row[#row + 1] = rec and fmt(rec.rps, "int") or "—"
        end
        emit("| " .. table.concat(row, " | ") .. " |")
      end
    end
    emit()
  end
end

local text = table.concat(out, "\n")
io.write(text)
if mdpath then
  local m = assert(io.open(mdpath, "w"))
  m:write(text)
  m:close()
end
