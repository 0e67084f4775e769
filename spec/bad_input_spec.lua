-- Bad input across the public API: every function of asyncore and asynchat,
-- every method of the classes (on fresh instances without a socket, with one
-- and after close()), of socket objects and of file_wrapper, called with wrong
-- types, missing arguments, absurd sizes, bad addresses and ports.  Each call
-- must return or raise a string error that names the function (as docs/reference.md
-- promises: "a Lua error that names the function"), must not kill the
-- process, and the walk must not leak descriptors.
local asyncore = require "asyncore"
local asynchat = require "asynchat"

------------------------------------------------------------------------------
-- values and helpers
------------------------------------------------------------------------------

local dead_co = coroutine.create(function() end)

-- name, value; nil is both "nil given" and, separately, "argument missing"
local BAD = {
  { "nil", nil }, { "false", false }, { "true", true },
  { "0", 0 }, { "-1", -1 }, { "1.5", 1.5 }, { "2^53", 2 ^ 53 },
  { "maxinteger", math.maxinteger }, { "mininteger", math.mininteger },
  { "math.huge", math.huge }, { "-math.huge", -math.huge }, { "1e308", 1e308 }, { "NaN", 0 / 0 },
  { "string", "x" }, { "empty string", "" }, { "numeric string", "80" },
  { "long string", ("x"):rep(300) }, { "string with NUL", "a\0b" },
  { "table", {} }, { "function", function() end }, { "coroutine", dead_co },
  { "io.stdout", io.stdout },
}

local function describe_value(v)
  if v == nil then return "nil" end
  for _, b in ipairs(BAD) do
    if rawequal(b[2], v) or (v ~= v and b[2] ~= b[2]) then return b[1] end
  end
  if type(v) == "string" then return ("%q"):format(#v > 20 and v:sub(1, 20) .. "..." or v) end
  return tostring(v)
end

-- A template slot whose value is made afresh for every call.
local Fresh = {}
local function fresh(make) return setmetatable({ make = make }, Fresh) end

-- Callers compiled with the real call syntax, so that errors raised by
-- luaL_argerror can name the function as they do in a script
-- (a function called straight through pcall is "?" to Lua).
local caller_cache = {}
local function caller(kind, name)
  local key = kind .. ":" .. name
  local f = caller_cache[key]
  if not f then
    local src
    if kind == "method" then
      src = ("return function(obj, ...) return obj:%s(...) end"):format(name)
    elseif kind == "field" then
      src = ("return function(tbl, ...) return tbl.%s(...) end"):format(name)
    else -- "call": a class called as a constructor
      src = ("return function(%s, ...) return %s(...) end"):format(name, name)
    end
    f = assert(load(src, "=bad_input:" .. name))()
    caller_cache[key] = f
  end
  return f
end

-- Closes whatever a call handed back (sockets, wrappers, dispatchers), so that
-- the descriptor count only moves on a real leak.
local function close_values(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local t = type(v)
    if t == "userdata" and io.type(v) == nil then
      pcall(function() v:close() end)
    elseif t == "table" and type(v.close) == "function" and v.socket ~= nil then
      pcall(function() v:close() end)
    end
  end
end

-- The problems a group found.  The same error from the same function is
-- listed once, with one example call and how many calls raised it.
local Problems = {}
Problems.__index = Problems
local function problems() return setmetatable({ n = 0, seen = {} }, Problems) end
function Problems:add(s, key)
  key = key or s
  local prev = self.seen[key]
  if prev then
    prev.count = prev.count + 1
    return
  end
  self.n = self.n + 1
  local entry = { text = s, count = 1 }
  self.seen[key] = entry
  self[self.n] = entry
end
function Problems:check()
  if self.n == 0 then return end
  local lines = {}
  for i = 1, self.n do
    local e = self[i]
    lines[i] = e.text .. (e.count > 1 and ("  [and %d similar calls]"):format(e.count - 1) or "")
  end
  error(self.n .. " distinct problem(s):\n  " .. table.concat(lines, "\n  "), 0)
end

local function mentions(err, names)
  for _, name in ipairs(names) do
    if err:find(name, 1, true) then return true end
  end
  return false
end

-- Calls fn(obj, ...) (obj may be nil) and records a problem when the call
-- raises anything but a string naming one of names.
local function probe(p, label, names, fn, obj, args, key)
  key = key or label
  local res = table.pack(pcall(fn, obj, table.unpack(args, 1, args.n)))
  if res[1] then
    close_values(table.unpack(res, 2, res.n))
    return true
  end
  local err = res[2]
  if type(err) ~= "string" then
    p:add(label .. ": raised a " .. type(err) .. " (" .. tostring(err) .. ")", key .. "|" .. type(err))
  elseif not mentions(err, names) then
    p:add(label .. ": error does not name " .. table.concat(names, "/") .. ": " .. err,
          key .. "|" .. err:gsub("0x%x+", ""):gsub("%(local '%w+'%)", ""):gsub("a %S+ value", "a value")
            :gsub("got %S+%)", "got ?)"):gsub("table index is %a+", "table index"))
  end
  return false, err
end

-- The arguments of one call: template with position i replaced by value
-- (or, when missing, cut off before position i).
local function build_args(template, i, value, missing)
  local args = { n = missing and i - 1 or math.max(template.n or #template, i) }
  for k = 1, args.n do
    local v = template[k]
    if getmetatable(v) == Fresh then v = v.make() end
    args[k] = v
  end
  if not missing then args[i] = value end
  return args
end

local function args_label(args)
  local parts = {}
  for k = 1, args.n do parts[k] = describe_value(args[k]) end
  return "(" .. table.concat(parts, ", ") .. ")"
end

-- Walks one function: every bad value at each position 1 .. #template + 1,
-- and the call cut short at each position.  make_obj() gives the receiver
-- (nil for plain functions); done(obj) cleans it up.
local function walk(p, opts)
  local templates = opts.templates or { opts.template or { n = 0 } }
  for _, template in ipairs(templates) do
    local n = template.n or #template
    for i = 1, n + 1 do
      for _, bad in ipairs(BAD) do
        local obj = opts.make_obj and opts.make_obj()
        local args = build_args(template, i, bad[2], false)
        local label = opts.label .. args_label(args)
        probe(p, label, opts.names, opts.fn, obj, args, opts.label)
        close_values(table.unpack(args, 1, args.n))
        if opts.done then opts.done(obj) end
      end
      local obj = opts.make_obj and opts.make_obj()
      local args = build_args(template, i, nil, true)
      probe(p, opts.label .. args_label(args) .. " [missing #" .. i .. "]", opts.names, opts.fn, obj, args,
            opts.label)
      close_values(table.unpack(args, 1, args.n))
      if opts.done then opts.done(obj) end
    end
  end
end

-- Open descriptors of this process, after a full collection.
local pid
local function fd_count()
  collectgarbage()
  collectgarbage()
  if pid == nil then
    local stat = assert(io.open("/proc/self/stat"))
    pid = stat:read("l"):match("^(%d+)")
    stat:close()
  end
  local n = 0
  local ls = assert(io.popen("ls /proc/" .. pid .. "/fd"))
  for _ in ls:lines() do n = n + 1 end
  ls:close()
  return n
end

-- Runs fn with io.output() and io.stderr sent to a scratch file: the default
-- handlers log, and the spec prints nothing.
local function quietly(fn)
  local old_out, old_err = io.output(), io.stderr
  local sink = assert(io.tmpfile())
  io.output(sink)
  io.stderr = sink
  local ok, err = pcall(fn)
  io.output(old_out)
  io.stderr = old_err
  sink:close()
  if not ok then error(err, 0) end
end

-- Methods of a class, its own and inherited, by name.
local function methods_of(class)
  local names, seen = {}, {}
  local c = class
  while type(c) == "table" do
    for k, v in pairs(c) do
      if type(k) == "string" and type(v) == "function" and not seen[k]
          and k:match("^[%a_][%w_]*$") then
        seen[k] = true
        names[#names + 1] = k
      end
    end
    local mt = getmetatable(c)
    c = mt and rawget(mt, "__index")
  end
  table.sort(names)
  return names
end

-- A TCP port that refuses connections: bound, never listening, held for the
-- whole file so nobody else can take it.
local refuser = assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_STREAM))
assert(refuser:bind("127.0.0.1", 0))
local _, REFUSED_PORT = refuser:getsockname()

local scratch_file = assert(io.tmpfile()) -- a regular file: reads never block

local function valid_channel_table()
  local t = {}
  for _, h in ipairs { "handle_read_event", "handle_write_event", "handle_expt_event",
                       "handle_close", "handle_error" } do
    t[h] = function() end
  end
  t.readable = function() return false end
  t.writable = function() return false end
  return t
end

local TRACEBACK = "stack traceback:\n\t[C]: in ?\n\tx.lua:1: in main chunk"

-- Argument templates: the valid arguments a function takes, by name.
-- Each position is replaced in turn by every bad value.
local function T(...) return table.pack(...) end

local MODULE_TEMPLATES = {
  loop = { T(0, nil, {}, 1), T(0, false, {}, 1), T(0, "poll", {}, 1) },
  poll = { T(0, {}) },
  poll2 = { T(0, {}) },
  poll3 = { T(0, {}) },
  read = { T(fresh(valid_channel_table)) },
  write = { T(fresh(valid_channel_table)) },
  _exception = { T(fresh(valid_channel_table)) },
  readwrite = { T(fresh(valid_channel_table), asyncore.POLLIN) },
  close_all = { T({}, false) },
  backends = { T() },
  backend = { T() },
  time = { T() },
  compact_traceback = { T(TRACEBACK) },
  strerror = { T(1) },
  _strerror = { T(1) },
  socket = { T(asyncore.AF_INET, asyncore.SOCK_STREAM) },
  file_wrapper = { T(scratch_file) },
}

-- The names an error from fname may carry (aliases and the public name of
-- the C function behind them).
local ALIASES = {
  poll3 = { "poll2", "poll3" }, _strerror = { "strerror" }, read = { "read" },
}
local function names_for(name, extra)
  local names = { name }
  for _, a in ipairs(ALIASES[name] or {}) do names[#names + 1] = a end
  for _, a in ipairs(extra or {}) do names[#names + 1] = a end
  return names
end

------------------------------------------------------------------------------
-- the spec
------------------------------------------------------------------------------

describe("bad input", function()
  local before

  setup(function()
    before = fd_count()
  end)

  teardown(function()
    -- bind("127.0.0.1") with the port walked to nil is a valid AF_UNIX path:
    -- the socket file it leaves in the working directory goes
    os.remove("127.0.0.1")
    -- the walk as a whole leaks no descriptor (checked again here, after
    -- every group has run and been collected)
    local after = fd_count()
    assert(after <= before, ("descriptors before the walk: %d, after: %d"):format(before, after))
  end)

  -- Each group checks that the global map stays empty (a channel left in it
  -- would make a later loop() wait) and that it leaks no descriptor.
  local function group(name, fn)
    it(name, function()
      local p = problems()
      local start = fd_count()
      quietly(function() fn(p) end)
      for fd, ch in pairs(asyncore.socket_map) do
        p:add(("channel left in asyncore.socket_map at fd %s: %s"):format(tostring(fd), tostring(ch)))
        pcall(function() ch:close() end)
        asyncore.socket_map[fd] = nil
      end
      local finish = fd_count()
      if finish > start then
        p:add(("descriptors leaked: %d before, %d after"):format(start, finish))
      end
      p:check()
    end)
  end

  group("asyncore module functions", function(p)
    for name, f in pairs(asyncore) do
      -- _data_arg(value, fname) is the helper behind send and push: its second
      -- argument is the caller's name, not user input
      if type(f) == "function" and name ~= "_data_arg" then
        walk(p, {
          label = "asyncore." .. name,
          names = names_for(name),
          fn = caller("field", name),
          make_obj = function() return asyncore end,
          templates = MODULE_TEMPLATES[name] or { T() },
        })
      end
    end
  end)

  group("loop{...} with each bad field", function(p)
    local base = { timeout = 0, map = {}, count = 1 }
    for _, field in ipairs { "timeout", "use_poll", "backend", "map", "count" } do
      for _, bad in ipairs(BAD) do
        local opts = {}
        for k, v in pairs(base) do opts[k] = v end
        opts[field] = bad[2]
        if field ~= "map" and field ~= "count" then opts.map = {} end
        probe(p, "asyncore.loop{" .. field .. " = " .. bad[1] .. "}", { "loop" },
              caller("field", "loop"), asyncore, T(opts))
      end
    end
  end)

  group("maps holding keys that are not usable descriptors", function(p)
    local bad_keys = { -1, 2 ^ 31, 2 ^ 32, 2 ^ 32 + 1, 2 ^ 53, math.maxinteger, math.mininteger,
                       1.5, math.huge, "x", true, asyncore.FD_SETSIZE + 10 }
    for _, backend in ipairs(asyncore.backends()) do
      for _, key in ipairs(bad_keys) do
        local events = {}
        local chan = valid_channel_table()
        chan.readable = function() return true end
        chan.writable = function() return true end
        for _, h in ipairs { "handle_read_event", "handle_write_event", "handle_expt_event", "handle_close" } do
          chan[h] = function() events[#events + 1] = h end
        end
        local label = ("loop(0, %q, {[%s] = channel}, 1)"):format(backend, describe_value(key))
        -- (an OS error of the backend names the backend: "epoll: ... (EBADF)")
        local ok = probe(p, label, { "loop", "map", "FD_SETSIZE", backend }, caller("field", "loop"), asyncore,
                         T(0, backend, { [key] = chan }, 1))
        -- an fd that cannot exist must never be reported ready (a truncated
        -- number would alias a real descriptor such as 0, 1 or 2)
        -- (handle_close is the poll backend's answer to POLLNVAL, as in Python)
        local wrong = {}
        for _, e in ipairs(events) do
          if e ~= "handle_close" then wrong[#wrong + 1] = e end
        end
        if ok and #wrong > 0 then
          p:add(label .. ": channel under a key that is no descriptor got " .. table.concat(wrong, ", "))
        end
      end
    end
  end)

  group("select refuses a real descriptor at or above FD_SETSIZE", function(p)
    local limits = io.open("/proc/self/limits")
    local soft = math.huge
    if limits then
      for line in limits:lines() do
        local n = line:match("^Max open files%s+(%d+)")
        if n then soft = tonumber(n) end
      end
      limits:close()
    end
    if soft < asyncore.FD_SETSIZE + 32 then
      pending("ulimit -n is " .. soft .. ", below FD_SETSIZE + 32")
      return
    end
    local held, high = {}, nil
    while true do
      local s = assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM))
      if s:fileno() >= asyncore.FD_SETSIZE then high = s break end
      held[#held + 1] = s
    end
    for _, s in ipairs(held) do s:close() end
    local map = {}
    local d = asyncore.dispatcher(high, map)
    d.handle_read = function() end
    d.handle_write = function() end
    for _, call in ipairs {
      { "loop", T(0, false, map, 1), { "FD_SETSIZE" } },
      { "loop", T { timeout = 0, backend = "select", map = map, count = 1 }, { "FD_SETSIZE" } },
      { "poll", T(0, map), { "FD_SETSIZE" } },
    } do
      local ok, err = probe(p, "asyncore." .. call[1] .. " with fd " .. high:fileno(),
                            call[3], caller("field", call[1]), asyncore, call[2])
      if ok then p:add("asyncore." .. call[1] .. " with fd " .. high:fileno() .. " did not raise") end
      assert(ok or err)
    end
    -- the poll-based backends serve it
    for _, backend in ipairs(asyncore.backends()) do
      if backend ~= "select" then
        probe(p, "asyncore.loop(0, " .. backend .. ") with a high fd", { "loop" },
              caller("field", "loop"), asyncore, T(0, backend, map, 1))
      end
    end
    d:close()
    held = nil
  end)

  group("asyncore.socket and socket-level addresses", function(p)
    -- family and type out of range, and addresses every way wrong
    local addr_cases = {
      { "bind", T("256.0.0.1", 0) }, { "bind", T("no.such.host.invalid", 0) },
      { "connect", T("256.0.0.1", REFUSED_PORT) }, { "connect_ex", T("no.such.host.invalid", 80) },
      { "bind", T("127.0.0.1", -1) }, { "bind", T("127.0.0.1", 65536) },
      { "bind", T("127.0.0.1", "http") }, { "bind", T("127.0.0.1", "0") },
      { "bind", T("127.0.0.1\0x", 0) }, { "bind", T("::1", 0) },
      { "sendto", T("x", "256.0.0.1", 9) }, { "sendto", T("x", "127.0.0.1", 65536) },
      { "connect", T("127.0.0.1", REFUSED_PORT) },
    }
    for _, family in ipairs { asyncore.AF_INET, asyncore.AF_INET6 } do
      for _, c in ipairs(addr_cases) do
        local make = function() return asyncore.socket(family, asyncore.SOCK_STREAM) end
        local s = make()
        if s then
          probe(p, ("socket(%d):%s%s"):format(family, c[1], args_label(c[2])), { c[1] },
                caller("method", c[1]), s, c[2])
          s:close()
        end
      end
    end
    -- AF_UNIX paths: at the limit, over it, abstract, with a NUL inside, empty
    local long_ok = "/tmp/" .. ("p"):rep(102) -- 107 bytes: the longest that fits
    local cases = {
      { "bind", T(("x"):rep(108)) }, { "bind", T(("x"):rep(109)) }, { "bind", T(("x"):rep(4096)) },
      { "connect", T(("x"):rep(109)) }, { "connect_ex", T(("x"):rep(200)) },
      { "sendto", T("x", ("x"):rep(200)) }, { "bind", T("\0" .. ("a"):rep(107)) },
      { "bind", T("\0" .. ("a"):rep(108)) }, { "bind", T("a\0b") }, { "bind", T("") },
      { "connect", T(long_ok) }, { "bind", T(long_ok, 80) },
    }
    for _, c in ipairs(cases) do
      for _, type_ in ipairs { asyncore.SOCK_STREAM, asyncore.SOCK_DGRAM } do
        local s = assert(asyncore.socket(asyncore.AF_UNIX, type_))
        probe(p, ("unix socket:%s(%d bytes)"):format(c[1], #tostring(c[2][#c[2] == 2 and c[1] ~= "sendto" and 1 or c[2].n])),
              { c[1] }, caller("method", c[1]), s, c[2])
        s:close()
      end
      os.remove(long_ok)
    end
    -- a path of 108 bytes or more is refused with "path too long", naming the call
    local s = assert(asyncore.socket(asyncore.AF_UNIX))
    local ok, err = pcall(function() return s:bind(("x"):rep(109)) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'bind' %(path too long%)", err)
    s:close()
    -- a port given as a service name is a type error, not a lookup
    s = assert(asyncore.socket())
    ok, err = pcall(function() return s:bind("127.0.0.1", "http") end)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'bind' %(number expected, got string%)", err)
    s:close()
  end)

  -- socket objects: a TCP, a UDP and an AF_UNIX socket, and a closed one
  local socket_states = {
    { "tcp", function() return assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_STREAM)) end },
    { "udp", function() return assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM)) end },
    { "unix", function() return assert(asyncore.socket(asyncore.AF_UNIX, asyncore.SOCK_STREAM)) end },
    { "closed", function()
        local s = assert(asyncore.socket())
        s:close()
        return s
      end },
  }
  local SOCKET_TEMPLATES = {
    bind = { T("127.0.0.1", 0) },
    connect = { T("127.0.0.1", REFUSED_PORT) },
    connect_ex = { T("127.0.0.1", REFUSED_PORT) },
    listen = { T(5) },
    send = { T("x", 0) },
    recv = { T(16, 0) },
    sendto = { T("x", "127.0.0.1", REFUSED_PORT) },
    recvfrom = { T(16) },
    shutdown = { T(asyncore.SHUT_RDWR) },
    setblocking = { T(false) },
    setsockopt = { T(asyncore.SOL_SOCKET, asyncore.SO_REUSEADDR, 1),
                   T(asyncore.SOL_SOCKET, asyncore.SO_LINGER, true, 0) },
    getsockopt = { T(asyncore.SOL_SOCKET, asyncore.SO_ERROR) },
  }
  local SOCKET_METHODS = { "fileno", "close", "setblocking", "getblocking", "gettimeout",
    "get_inheritable", "bind", "listen", "connect", "connect_ex", "accept", "send", "recv",
    "sendto", "recvfrom", "getsockname", "getpeername", "shutdown", "setsockopt", "getsockopt" }

  for _, state in ipairs(socket_states) do
    group("socket object methods (" .. state[1] .. ")", function(p)
      for _, name in ipairs(SOCKET_METHODS) do
        walk(p, {
          label = state[1] .. " socket:" .. name,
          names = { name },
          fn = caller("method", name),
          make_obj = state[2],
          done = function(s) s:close() end,
          templates = SOCKET_TEMPLATES[name],
        })
        -- and on a receiver that is not a socket
        for _, bad in ipairs(BAD) do
          local real = state[2]()
          local m = real[name]
          real:close()
          probe(p, "socket." .. name .. " on " .. bad[1], { name }, caller("field", name),
                { [name] = m }, T(bad[2]))
        end
      end
    end)
  end

  local FILE_METHODS = { "recv", "read", "send", "write", "close", "fileno", "getsockopt" }
  local FILE_TEMPLATES = {
    recv = { T(16) }, read = { T(16) }, send = { T("x") }, write = { T("x") },
    getsockopt = { T(asyncore.SOL_SOCKET, asyncore.SO_ERROR) },
  }
  for _, state in ipairs {
    { "open", function() return asyncore.file_wrapper(scratch_file) end },
    { "closed", function()
        local w = asyncore.file_wrapper(scratch_file)
        w:close()
        return w
      end },
  } do
    group("file_wrapper methods (" .. state[1] .. ")", function(p)
      for _, name in ipairs(FILE_METHODS) do
        walk(p, {
          label = state[1] .. " file_wrapper:" .. name,
          -- read and write are recv and send; their OS errors say read/write
          names = { name, ({ recv = "read", read = "recv", send = "write", write = "send" })[name] },
          fn = caller("method", name),
          make_obj = state[2],
          done = function(w) w:close() end,
          templates = FILE_TEMPLATES[name],
        })
      end
    end)
  end

  it("file_wrapper refuses descriptor numbers that do not fit an int", function()
    -- (int)2^32 is 0 and (int)(2^32 + 1) is 1: a truncated number would wrap
    -- stdin or stdout instead of failing
    for _, fd in ipairs { 2 ^ 32, 2 ^ 32 + 1, 2 ^ 53, math.maxinteger, -2 ^ 32 + 1 } do
      local ok, w = pcall(asyncore.file_wrapper, math.tointeger(fd))
      local got = ok and w:fileno()
      if ok then w:close() end
      assert(not ok, ("file_wrapper(%d) wrapped a descriptor (a copy, fd %s) instead of failing")
        :format(math.tointeger(fd), tostring(got)))
    end
  end)

  -- dispatcher classes: instances without a socket, with one, after close()
  local function private_map_instance(class, with_socket, closed)
    return function()
      local map = {}
      local d = class(nil, map)
      if with_socket then d:create_socket() end
      if closed then d:close() end
      return d
    end
  end

  local DISPATCHER_TEMPLATES = {
    create_socket = { T(asyncore.AF_INET, asyncore.SOCK_STREAM), T(asyncore.AF_UNIX, asyncore.SOCK_DGRAM) },
    set_socket = { T(fresh(function() return assert(asyncore.socket()) end), {}) },
    init = { T(nil, {}), T(fresh(function() return assert(asyncore.socket()) end), {}) },
    bind = { T("127.0.0.1", 0) },
    connect = { T("127.0.0.1", REFUSED_PORT) },
    listen = { T(5) },
    send = { T("x") },
    recv = { T(16) },
    sendto = { T("x", "127.0.0.1", REFUSED_PORT) },
    recvfrom = { T(16) },
    shutdown = { T(asyncore.SHUT_RDWR) },
    add_channel = { T({}) },
    del_channel = { T({}) },
    log = { T("message") },
    log_info = { T("message", "info") },
    handle_error = { T("boom", TRACEBACK) },
    handle_accepted = { T(fresh(function() return assert(asyncore.socket()) end), "127.0.0.1", 1) },
    subclass = { T({}) },
    -- async_chat
    set_terminator = { T("\r\n"), T(4) },
    push = { T("x") },
    push_with_producer = { T(fresh(function() return asynchat.simple_producer("data", 2) end)) },
    collect_incoming_data = { T("x") },
    _collect_incoming_data = { T("x") },
    file_dispatcher = nil,
  }
  -- Methods whose errors may name the call they delegate to.
  local DISPATCHER_NAMES = {
    handle_read_event = { "recv", "accept", "connect", "handle_read" },
    handle_write_event = { "send", "connect", "handle_write", "initiate_send" },
    handle_connect_event = { "connect", "getsockopt" },
    handle_expt_event = { "getsockopt", "connect" },
    handle_accept = { "accept" },
    handle_accepted = { "close" },
    handle_read = { "recv" },
    handle_write = { "send", "initiate_send" },
    initiate_send = { "send" },
    handle_error = { "close" },
    handle_close = { "close" },
    __close = { "close" },
    init = { "set_socket", "add_channel", "file_wrapper", "fileno" },
    set_file = { "file_wrapper", "fileno" },
    set_socket = { "add_channel" },
    create_socket = { "socket" },
    set_reuse_port = { "setsockopt", "SO_REUSEPORT" },
    -- async_chat's built-ins
    found_terminator = { "found_terminator" },
    collect_incoming_data = { "collect_incoming_data" },
    push = { "send", "initiate_send" },
    push_with_producer = { "send", "initiate_send" },
    close_when_done = { "send", "initiate_send" },
  }

  local classes = {
    { "dispatcher", asyncore.dispatcher },
    { "dispatcher_with_send", asyncore.dispatcher_with_send },
    { "async_chat", asynchat.async_chat },
  }
  for _, c in ipairs(classes) do
    for _, state in ipairs {
      { "without a socket", false, false },
      { "with a socket", true, false },
      { "after close()", true, true },
    } do
      group(c[1] .. " methods " .. state[1], function(p)
        for _, name in ipairs(methods_of(c[2])) do
          walk(p, {
            label = c[1] .. ":" .. name .. " " .. state[1],
            names = names_for(name, DISPATCHER_NAMES[name]),
            fn = caller("method", name),
            make_obj = private_map_instance(c[2], state[2], state[3]),
            done = function(d) pcall(function() d:close() end) end,
            templates = DISPATCHER_TEMPLATES[name],
          })
        end
      end)
    end

    group(c[1] .. " constructor", function(p)
      walk(p, {
        label = "asyncore." .. c[1],
        names = { "init", c[1] },
        fn = caller("call", "C"),
        make_obj = function() return c[2] end,
        templates = { T(nil, {}), T(fresh(function() return assert(asyncore.socket()) end), {}) },
      })
    end)
  end

  group("file_dispatcher constructor and methods", function(p)
    -- numbers whose low 32 bits are 0, 1 or 2 are left out of the constructor
    -- walk: file_dispatcher makes its descriptor non-blocking, and a truncated
    -- number would do that to this process's stdin or stdout (see the
    -- file_wrapper test above, which checks truncation without side effects)
    local function fits(v)
      if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then return true end
      local i = math.tointeger(v)
      if i == nil then return true end
      return i < 0 or i > 2
    end
    for _, bad in ipairs(BAD) do
      if fits(bad[2]) and bad[2] ~= io.stdout then
        probe(p, "asyncore.file_dispatcher(" .. bad[1] .. ", {})", { "init", "file_dispatcher", "file_wrapper", "fileno" },
              caller("call", "C"), asyncore.file_dispatcher, T(bad[2], {}))
      end
    end
    probe(p, "asyncore.file_dispatcher(scratch, bad map)", { "init" }, caller("call", "C"),
          asyncore.file_dispatcher, T(scratch_file, 1))
    for _, state in ipairs { { "open", false }, { "closed", true } } do
      for _, name in ipairs(methods_of(asyncore.file_dispatcher)) do
        local templates = DISPATCHER_TEMPLATES[name]
        if name == "set_file" then templates = { T(scratch_file) } end
        walk(p, {
          label = "file_dispatcher:" .. name .. " (" .. state[1] .. ")",
          names = names_for(name, DISPATCHER_NAMES[name]),
          fn = caller("method", name),
          make_obj = function()
            local d = asyncore.file_dispatcher(scratch_file, {})
            if state[2] then d:close() end
            return d
          end,
          done = function(d) pcall(function() d:close() end) end,
          templates = templates,
        })
      end
    end
  end)

  -- asynchat: module functions, a producer's more(), and a connected channel
  -- that has data waiting, with each bad terminator, size field and producer
  group("asynchat module functions", function(p)
    local templates = {
      find_prefix_at_end = { T("abc\r", "\r\n") },
      simple_producer = { T("data", 2) },
    }
    for name, f in pairs(asynchat) do
      if type(f) == "function" then
        walk(p, {
          label = "asynchat." .. name,
          names = { name },
          fn = caller("field", name),
          make_obj = function() return asynchat end,
          templates = templates[name] or { T() },
        })
      end
    end
    walk(p, {
      label = "simple_producer:more",
      names = { "more" },
      fn = caller("method", "more"),
      make_obj = function() return asynchat.simple_producer("abcdef", 4) end,
    })
  end)

  -- A connected async_chat (server side) and its peer socket; the peer has
  -- sent "hello\r\nworld" so that handle_read has something to frame.
  local function chat_pair(map)
    local listener = assert(asyncore.socket())
    assert(listener:bind("127.0.0.1", 0))
    assert(listener:listen(1))
    local _, port = listener:getsockname()
    local client = assert(asyncore.socket())
    client:connect_ex("127.0.0.1", port)
    local sock
    for _ = 1, 200 do
      sock = listener:accept()
      if sock then break end
      asyncore.poll2(0.005, {})
    end
    listener:close()
    assert(sock, "no connection")
    local Chat = asynchat.async_chat:subclass {
      collect_incoming_data = asynchat.async_chat._collect_incoming_data,
      found_terminator = function(self) self:_get_data() end,
      handle_error = function(self, err) self.last_error = err; self:close() end,
    }
    local chat = Chat(sock, map)
    chat:set_terminator("\r\n")
    assert(client:send("hello\r\nworld"))
    return chat, client
  end

  group("async_chat on a connection: bad terminators, sizes and producers", function(p)
    local function each(fn)
      for _, bad in ipairs(BAD) do
        local chat, client = chat_pair({})
        fn(chat, bad)
        chat:close()
        client:close()
      end
    end
    -- set_terminator(bad), then a read
    each(function(chat, bad)
      local ok = probe(p, "set_terminator(" .. bad[1] .. ")", { "set_terminator" },
                       caller("method", "set_terminator"), chat, T(bad[2]))
      if ok then
        probe(p, "handle_read after set_terminator(" .. bad[1] .. ")", { "handle_read" },
              caller("method", "handle_read"), chat, T())
        if chat.last_error ~= nil and (type(chat.last_error) ~= "string"
            or not chat.last_error:find("handle_read", 1, true)) then
          p:add("handle_read after set_terminator(" .. bad[1] .. ") passed handle_error " .. tostring(chat.last_error))
        end
      end
    end)
    -- the terminator field written directly, then a read
    each(function(chat, bad)
      chat.terminator = bad[2]
      probe(p, "handle_read with terminator = " .. bad[1], { "handle_read" },
            caller("method", "handle_read"), chat, T())
      local err = chat.last_error
      if err ~= nil and (type(err) ~= "string" or not err:find("handle_read", 1, true)) then
        p:add("handle_read with terminator = " .. bad[1] .. " passed handle_error " .. tostring(err))
      end
    end)
    -- size fields and max_in_buffer
    for _, field in ipairs { "ac_in_buffer_size", "ac_out_buffer_size", "max_in_buffer" } do
      each(function(chat, bad)
        chat[field] = bad[2]
        for _, m in ipairs { "handle_read", "initiate_send", "handle_write" } do
          if m ~= "handle_read" then
            probe(p, "push with " .. field .. " = " .. bad[1], { "push", field },
                  caller("method", "push"), chat, T("reply"))
          end
          probe(p, m .. " with " .. field .. " = " .. bad[1], { m, field },
                caller("method", m), chat, T())
          local err = chat.last_error
          if err ~= nil and (type(err) ~= "string" or not (err:find(m, 1, true) or err:find(field, 1, true))) then
            p:add(m .. " with " .. field .. " = " .. bad[1] .. " passed handle_error " .. tostring(err))
          end
          chat.last_error = nil
        end
      end)
    end
    -- a producer that hands back a bad value, a table producer whose more is wrong
    each(function(chat, bad)
      probe(p, "push_with_producer(function returning " .. bad[1] .. ")", { "push_with_producer", "initiate_send" },
            caller("method", "push_with_producer"), chat, T(function() return bad[2] end),
            "push_with_producer(function)")
      probe(p, "initiate_send after a producer returning " .. bad[1], { "initiate_send" },
            caller("method", "initiate_send"), chat, T(), "initiate_send after push_with_producer(function)")
    end)
    each(function(chat, bad)
      probe(p, "push_with_producer({more = " .. bad[1] .. "})", { "push_with_producer", "initiate_send", "more" },
            caller("method", "push_with_producer"), chat, T({ more = bad[2] }), "push_with_producer({more})")
      probe(p, "initiate_send after {more = " .. bad[1] .. "}", { "initiate_send", "more" },
            caller("method", "initiate_send"), chat, T(), "initiate_send after push_with_producer({more})")
    end)
    -- every method on the connected channel
    for _, name in ipairs(methods_of(asynchat.async_chat)) do
      if name ~= "subclass" then
        walk(p, {
          label = "connected async_chat:" .. name,
          names = names_for(name, DISPATCHER_NAMES[name]),
          fn = caller("method", name),
          make_obj = function()
            local chat, client = chat_pair({})
            chat._peer = client
            return chat
          end,
          done = function(chat)
            pcall(function() chat:close() end)
            chat._peer:close()
          end,
          templates = DISPATCHER_TEMPLATES[name],
        })
      end
    end
  end)
end)

-- keep the refusing port and the scratch file for the whole file; they go
-- with the Lua state
local _ = { refuser, scratch_file }
