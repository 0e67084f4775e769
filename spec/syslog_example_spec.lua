-- examples/syslog_server.lua as users meet it: the server in a lua5.4 child
-- process, its stdout going to a file that the tests read, and real senders:
-- util-linux's logger over UDP (127.0.0.1 and ::1, RFC 5424 and RFC 3164) and
-- over an AF_UNIX datagram socket, and netcat-openbsd's nc -u sending raw
-- datagrams.  Also its parser on its own, and the server class in this
-- process.  Run from the checkout root.
local asyncore = require "asyncore"
local support = require "support"

local quote = support.shell_quote
local syslog = dofile("examples/syslog_server.lua")

-- The server child finds the modules (and, under make asan, the instrumented
-- core) where this process does.  --foreground: a signal sent to timeout
-- reaches lua5.4 once (without it, twice, and a second SIGINT kills lua5.4
-- before it can clean up).
local LUA = ("env LUA_PATH=%s LUA_CPATH=%s timeout --foreground 60 lua5.4")
  :format(quote(package.path), quote(package.cpath))
-- Other children do not inherit a sanitizer runtime preloaded for this process.
local NOASAN = "env -u LD_PRELOAD "

local wait_until = support.wait_until

local make_tmpdir = support.make_tmpdir

local read_file = support.read_file_or_empty

local function exists(path)
  return os.execute("test -e " .. quote(path)) == true
end

-- The host name logger puts in its messages: gethostname(), cut at the first
-- dot for RFC 3164.
local HOSTNAME = read_file("/proc/sys/kernel/hostname"):gsub("%s+$", "")
local SHORT_HOSTNAME = HOSTNAME:match("^[^.]*")

-- Runs a shell command (not Lua) to completion; fails the test if it fails.
local function run(command)
  local ok, how, code = os.execute(NOASAN .. command)
  assert(ok, ("%s: %s %s"):format(command, tostring(how), tostring(code)))
end

------------------------------------------------------------------------------
-- the server child
------------------------------------------------------------------------------

local Server = {}
Server.__index = Server

-- Starts examples/syslog_server.lua with args, its stdout and stderr to a new
-- file in dir, and waits for its first line.
local started = 0
local function start_server(dir, args)
  started = started + 1
  local self = setmetatable({ path = ("%s/server%d.out"):format(dir, started) }, Server)
  self.pipe = assert(io.popen(("echo $$; exec %s examples/syslog_server.lua %s > %s 2>&1")
    :format(LUA, args, quote(self.path)), "r"))
  self.pid = math.tointeger(tonumber(self.pipe:read("l")))
  assert(self.pid, "no pid for the server")
  wait_until(function() return #self:lines() > 0 end)
  self.banner = self:lines()[1]
  return self
end

-- Its output lines so far.
function Server:lines()
  local t = {}
  for line in read_file(self.path):gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

-- The lines after the "listening" one.
function Server:messages()
  local lines = self:lines()
  return table.move(lines, 2, #lines, 1, {})
end

-- Waits for n message lines.
function Server:wait_messages(n)
  return wait_until(function() return #self:messages() >= n end)
end

-- Waits for it to end (bounded by timeout(1)'s 60 seconds); returns what
-- io.popen's close gives (true or nil, "exit" or "signal", code).
function Server:wait()
  if not self.pipe then return end
  local pipe = self.pipe
  self.pipe = nil
  return pipe:close()
end

-- Sends it a signal, by its pid, and waits for it to end.
function Server:stop(signal)
  if not self.pipe then return end
  os.execute(("kill -%s %d 2>/dev/null"):format(signal or "TERM", self.pid))
  return self:wait()
end

-- A Lua pattern for a whole line: template with its magic characters escaped,
-- but {ts5424} and {ts3164} standing for the timestamps logger writes.
local function like(template)
  local escaped = template:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  return "^" .. escaped
    :gsub("{ts5424}", "%%d%%d%%d%%d%%-%%d%%d%%-%%d%%dT%%d%%d:%%d%%d:%%d%%d[.%%d]*[Z+-][%%d:]*")
    :gsub("{ts3164}", "\"%%u%%l%%l [ %%d]%%d %%d%%d:%%d%%d:%%d%%d\"") .. "$"
end

-- Waits for the server to print #expected message lines, then checks them in
-- order: a string must equal its line, a {like = template} match it.
local function assert_messages(server, expected)
  server:wait_messages(#expected)
  local got = server:messages()
  local shown = table.concat(got, "\n")
  assert.are.equal(#expected, #got, "the server printed:\n" .. shown)
  for i, e in ipairs(expected) do
    if type(e) == "table" then
      assert.matches(like(e.like), got[i], nil, nil, ("line %d:\n%s"):format(i, shown))
    else
      assert.are.equal(e, got[i], ("line %d:\n%s"):format(i, shown))
    end
  end
end

------------------------------------------------------------------------------
-- senders
------------------------------------------------------------------------------

-- logger over UDP to host, port; options as a shell string.
local function logger_udp(host, port, options)
  run(("logger -d -n %s -P %d %s"):format(quote(host), port, options))
end

-- Sends data as one datagram with nc -u (-q0: quit as soon as it is sent);
-- address is "HOST PORT" or, with -U, a path.
local function nc(dir, flags, address, data)
  local file = dir .. "/datagram"
  support.write_file(file, data)
  run(("nc %s -w1 -q0 %s < %s"):format(flags, address, quote(file)))
end

-- The RFC 5424 and RFC 3164 examples (RFC 5424 section 6.5, RFC 3164 section
-- 5.4), the first with its BOM, and datagrams senders get wrong.
local RAW = {
  { "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
      .. '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
      .. "\239\187\191An application event log entry...",
    "local4.notice rfc5424 ts=2003-10-11T22:14:15.003Z host=mymachine.example.com app=evntslog "
      .. 'msgid=ID47 sd=[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
      .. "msg=An application event log entry..." },
  { "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    "auth.crit rfc3164 ts=\"Oct 11 22:14:15\" host=mymachine app=su msg='su root' failed for lonvick on /dev/pts/8" },
  { "no priority at all\n", "user.notice rfc3164 msg=no priority at all" },
  { "<192>out of range", "user.notice rfc3164 msg=<192>out of range" },
  { "<13>two\nlines\twith \\ and \1\0NUL\0", "user.notice rfc3164 msg=two\\nlines\\twith \\\\ and \\x01\\x00NUL" },
  { "<0>", "kern.emerg rfc3164 msg=" },
}

------------------------------------------------------------------------------

describe("examples/syslog_server.lua", function()
  local dir, server

  before_each(function()
    dir = make_tmpdir()
  end)

  after_each(function()
    if server then server:stop() end
    server = nil
    os.execute("rm -rf " .. quote(dir))
  end)

  -- Starts the server on UDP host, port 0; returns the port it printed.
  local function start_udp(host)
    server = start_server(dir, quote(host) .. " 0")
    local port = math.tointeger(tonumber(server.banner and
      server.banner:match("^syslog server listening on udp " .. host:gsub("%p", "%%%0") .. " port (%d+)$")))
    assert(port and port > 0, "the server did not start: " .. read_file(server.path))
    return port
  end

  it("prints each message logger sends over UDP (127.0.0.1), RFC 5424 and RFC 3164", function()
    local port = start_udp("127.0.0.1")
    logger_udp("127.0.0.1", port, "--rfc5424=notq,notime,nohost -t myapp -p local3.err 'disk full'")
    logger_udp("127.0.0.1", port, "--rfc5424=notq -t app2 --id=4242 --msgid ID47 --sd-id ex@32473 "
      .. [[--sd-param 'k="v"' -p daemon.info 'with fields']])
    logger_udp("127.0.0.1", port, "--rfc3164 -t myapp --id=77 -p mail.warning 'old format'")
    logger_udp("127.0.0.1", port, "--rfc3164 -t tagged -p user.emerg 'no pid'")
    logger_udp("127.0.0.1", port, "--rfc5424=notq,notime,nohost -t myapp -p local7.debug " .. quote("tab\there"))
    assert_messages(server, {
      "local3.err rfc5424 app=myapp msg=disk full",
      { like = "daemon.info rfc5424 ts={ts5424} host=" .. HOSTNAME
          .. [[ app=app2 pid=4242 msgid=ID47 sd=[ex@32473 k="v"] msg=with fields]] },
      { like = "mail.warning rfc3164 ts={ts3164} host=" .. SHORT_HOSTNAME .. " app=myapp pid=77 msg=old format" },
      { like = "user.emerg rfc3164 ts={ts3164} host=" .. SHORT_HOSTNAME .. " app=tagged msg=no pid" },
      "local7.debug rfc5424 app=myapp msg=tab\\there",
    })
  end)

  it("names every facility and severity logger -p can send", function()
    local port = start_udp("127.0.0.1")
    local facilities = { "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
                         "cron", "authpriv", "ftp", "local0", "local1", "local2", "local3",
                         "local4", "local5", "local6", "local7" }
    local severities = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" }
    local expected = {}
    -- every facility once, every severity once, in one pass over both lists
    for i = 1, #facilities do
      local prio = facilities[i] .. "." .. severities[(i - 1) % #severities + 1]
      logger_udp("127.0.0.1", port, ("--rfc5424=notq,notime,nohost -t t -p %s m%d"):format(prio, i))
      expected[i] = ("%s rfc5424 app=t msg=m%d"):format(prio, i)
    end
    assert_messages(server, expected)
  end)

  it("parses raw datagrams from nc -u, odd ones included, one line each", function()
    local port = start_udp("127.0.0.1")
    local expected = {}
    for i, case in ipairs(RAW) do
      nc(dir, "-u", "127.0.0.1 " .. port, case[1])
      expected[i] = case[2]
    end
    assert_messages(server, expected)
  end)

  it("receives over IPv6 (::1) from logger and nc -u", function()
    if not support.ipv6_available() then
      pending("no IPv6 on ::1 here")
      return
    end
    local port = start_udp("::1")
    logger_udp("::1", port, "--rfc5424=notq,notime,nohost -t six -p local0.info 'over IPv6'")
    logger_udp("::1", port, "--rfc3164 -t six -p local0.notice 'IPv6 again'")
    nc(dir, "-u", "::1 " .. port, RAW[2][1])
    assert_messages(server, {
      "local0.info rfc5424 app=six msg=over IPv6",
      { like = "local0.notice rfc3164 ts={ts3164} host=" .. SHORT_HOSTNAME .. " app=six msg=IPv6 again" },
      RAW[2][2],
    })
  end)

  it("receives on an AF_UNIX datagram socket from logger -u and nc -uU, and removes it on Ctrl-C", function()
    local path = dir .. "/log.sock"
    server = start_server(dir, "--unix " .. quote(path))
    assert.are.equal("syslog server listening on unix " .. path, server.banner)
    assert.is_true(exists(path))
    -- logger -u writes the local format: no hostname after the timestamp
    run(("logger -u %s -t unixapp -p mail.warning 'unix msg'"):format(quote(path)))
    run(("logger -u %s -t unixapp --id=5 -p local1.err 'with pid'"):format(quote(path)))
    run(("logger -u %s --rfc5424=notq,notime,nohost -t unixapp -p user.info 'rfc5424 too'"):format(quote(path)))
    nc(dir, "-uU", quote(path), RAW[1][1])
    assert_messages(server, {
      { like = "mail.warning rfc3164 ts={ts3164} app=unixapp msg=unix msg" },
      { like = "local1.err rfc3164 ts={ts3164} app=unixapp pid=5 msg=with pid" },
      "user.info rfc5424 app=unixapp msg=rfc5424 too",
      RAW[1][2],
    })

    local ok, how, code = server:stop("INT")
    assert.are.same({ nil, "exit", 1 }, { ok, how, code }) -- lua5.4's "interrupted!"
    assert.matches("interrupted!", read_file(server.path))
    assert.is_false(exists(path))
  end)

  it("replaces a stale AF_UNIX socket left at its path", function()
    local path = dir .. "/log.sock"
    local stale = assert(asyncore.socket(asyncore.AF_UNIX, asyncore.SOCK_DGRAM))
    assert(stale:bind(path))
    stale:close() -- the file stays, with nobody behind it
    assert.is_true(exists(path))
    server = start_server(dir, "--unix " .. quote(path))
    assert.are.equal("syslog server listening on unix " .. path, server.banner)
    run(("logger -u %s --rfc5424=notq,notime,nohost -t fresh 'after a stale socket'"):format(quote(path)))
    assert_messages(server, { "user.notice rfc5424 app=fresh msg=after a stale socket" })
  end)

  it("refuses a path that is not a socket, or where another server receives", function()
    local file = dir .. "/not-a-socket"
    support.write_file(file, "keep me")
    local refused = start_server(dir, "--unix " .. quote(file))
    local ok, how, code = refused:wait() -- it exits at once
    assert.are.same({ nil, "exit", 1 }, { ok, how, code })
    assert.are.equal("syslog_server.lua: " .. file .. ": exists and is not a socket\n", read_file(refused.path))
    assert.are.equal("keep me", read_file(file))

    local path = dir .. "/log.sock"
    server = start_server(dir, "--unix " .. quote(path))
    assert.are.equal("syslog server listening on unix " .. path, server.banner)
    local second = start_server(dir, "--unix " .. quote(path))
    ok, how, code = second:wait()
    assert.are.same({ nil, "exit", 1 }, { ok, how, code })
    assert.are.equal("syslog_server.lua: " .. path .. ": another server is receiving there\n",
      read_file(second.path))
    -- the first one still has its socket
    run(("logger -u %s --rfc5424=notq,notime,nohost -t still 'first server'"):format(quote(path)))
    assert_messages(server, { "user.notice rfc5424 app=still msg=first server" })
  end)

  it("prints a usage line and exits 2 on a bad port", function()
    local refused = start_server(dir, "127.0.0.1 notaport")
    local ok, how, code = refused:wait()
    assert.are.same({ nil, "exit", 2 }, { ok, how, code })
    assert.matches("^usage: lua5.4 examples/syslog_server.lua", refused.banner)
  end)
end)

describe("examples/syslog_server.lua as a module", function()
  it("parses and formats each datagram", function()
    for _, case in ipairs(RAW) do
      assert.are.equal(case[2], syslog.format(syslog.parse(case[1])))
    end
    local m = syslog.parse("<155>1 2024-05-01T10:00:00Z web1 myapp 42 - [a b=\"c\\]\"] disk full\n")
    assert.are.same({ facility = "local3", severity = "err", format = "rfc5424",
                      ts = "2024-05-01T10:00:00Z", host = "web1", app = "myapp", pid = "42",
                      sd = "[a b=\"c\\]\"]", msg = "disk full" }, m)
    local cases = {
      -- structured data without MSG; only "-" for everything
      { "<13>1 - - - - - [x@1 a=\"1\"][y@2]", "user.notice rfc5424 sd=[x@1 a=\"1\"][y@2] msg=" },
      { "<13>1 - - - - - -", "user.notice rfc5424 msg=" },
      -- not RFC 5424 after all (a version other than 1, SD not closed, no SD): the lenient path
      { "<13>2 - - - - - - v2", "user.notice rfc3164 msg=2 - - - - - - v2" },
      { "<13>1 - - - - - [x a=\"]\" m", "user.notice rfc3164 msg=1 - - - - - [x a=\"]\" m" },
      { "<13>1 - - - - -", "user.notice rfc3164 msg=1 - - - - -" },
      -- RFC 3164: a tag without a timestamp, a timestamp and host without a tag
      { "<14>cron[99]: job done", "user.info rfc3164 app=cron pid=99 msg=job done" },
      { "<14>May  1 10:00:00 web1 plain text", "user.info rfc3164 ts=\"May  1 10:00:00\" host=web1 msg=plain text" },
      { "<14>Foo  1 10:00:00 web1 x: y", "user.info rfc3164 msg=Foo  1 10:00:00 web1 x: y" },
      { "<abc>text", "user.notice rfc3164 msg=<abc>text" },
      { "", "user.notice rfc3164 msg=" },
    }
    for _, case in ipairs(cases) do
      assert.are.equal(case[2], syslog.format(syslog.parse(case[1])), case[1])
    end
  end)

  it("names all 24 facilities and 8 severities of RFC 5424 section 6.2.1", function()
    local facilities = { "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
      "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
      "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7" }
    local severities = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" }
    for code, facility in ipairs(facilities) do
      for level, severity in ipairs(severities) do
        local pri = (code - 1) * 8 + (level - 1)
        local m = syslog.parse(("<%d>x"):format(pri))
        assert.are.same({ facility, severity }, { m.facility, m.severity }, "PRI " .. pri)
      end
    end
  end)

  for _, backend in ipairs(asyncore.backends()) do
    it("hands each datagram and its sender to handle_message, and is never polled for writing (" .. backend .. ")", function()
      local map = {}
      local server = syslog.SyslogServer("127.0.0.1", 0, map)
      local sender = assert(asyncore.socket(asyncore.AF_INET, asyncore.SOCK_DGRAM))
      finally(function()
        asyncore.close_all(map, true)
        sender:close()
      end)
      local got, writes = {}, 0
      server.handle_message = function(_, message, host, port)
        got[#got + 1] = { syslog.format(message), host, port }
      end
      server.handle_write = function() writes = writes + 1 end
      assert.is_false(server:writable())
      assert(sender:bind("127.0.0.1", 0))
      local _, sender_port = sender:getsockname()
      assert(sender:sendto("<11>app: one", server:getsockname()))
      assert(sender:sendto("<12>app: two", server:getsockname()))
      assert.is_true(wait_until(function() return #got == 2 end, function()
        asyncore.loop { backend = backend, map = map, count = 1, timeout = 0.05 }
      end))
      asyncore.loop { backend = backend, map = map, count = 3, timeout = 0.01 }
      assert.are.same({
        { "user.err rfc3164 app=app msg=one", "127.0.0.1", sender_port },
        { "user.warning rfc3164 app=app msg=two", "127.0.0.1", sender_port },
      }, got)
      assert.are.equal(0, writes)
    end)
  end

  it("removes its AF_UNIX path when closed", function()
    local dir = make_tmpdir()
    finally(function() os.execute("rm -rf " .. quote(dir)) end)
    local path = dir .. "/log.sock"
    local server = syslog.SyslogServer(path, nil, {})
    assert.are.equal(path, server:getsockname())
    assert.is_true(exists(path))
    server:close()
    assert.is_false(exists(path))
    server:close() -- twice is harmless
  end)
end)
