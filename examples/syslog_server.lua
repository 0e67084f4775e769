-- A syslog receiver: one SOCK_DGRAM dispatcher that reads each datagram with
-- recvfrom, parses it as an RFC 5424 or RFC 3164 message and prints it as one
-- line.  It never replies: syslog over UDP (RFC 5426) and over a local datagram
-- socket is one-way.
--
-- As a script:  lua5.4 examples/syslog_server.lua [HOST [PORT]]
--                 UDP; default 127.0.0.1 5514 (514 needs root); port 0 picks
--                 a free one; a HOST with ":" in it is IPv6.  Prints
--                 "syslog server listening on udp HOST port N".
--               lua5.4 examples/syslog_server.lua --unix PATH
--                 an AF_UNIX datagram socket, as /dev/log is.  A stale socket
--                 left at PATH is removed first; PATH is removed when the
--                 server stops on Ctrl-C.  Prints
--                 "syslog server listening on unix PATH".
--   Then it prints one line per message, flushed, until interrupted.  Try:
--     logger -d -n 127.0.0.1 -P 5514 -p local3.err -t myapp "disk full"
--
-- Each line is
--   FACILITY.SEVERITY FORMAT [ts=TS] [host=H] [app=A] [pid=P] [msgid=M] [sd=SD] msg=TEXT
-- FACILITY and SEVERITY are names (user, local3, ...; err, notice, ...) and
-- FORMAT is rfc5424 or rfc3164.  A field is left out when the message does not
-- have it (or has RFC 5424's "-").  The RFC 3164 timestamp, which holds
-- spaces, is printed in double quotes; sd is RFC 5424's structured data as
-- sent, e.g. sd=[ex@32473 k="v"].  msg comes last and runs to the end of the
-- line.  Control characters and "\" are escaped (\n, \r, \t, \\, \xHH), so
-- one message is always one line.  Examples:
--   local3.err rfc5424 ts=2024-05-01T10:00:00Z host=web1 app=myapp pid=42 msg=disk full
--   mail.warning rfc3164 ts="May  1 10:00:00" app=postfix pid=7 msg=queue full
--   user.notice rfc3164 msg=a datagram without <PRI> is user.notice (RFC 3164)
--
-- As a module:  local syslog = require "syslog_server"
--               syslog.SyslogServer(host, port [, map])   UDP
--               syslog.SyslogServer(path, nil [, map])    AF_UNIX
--   server:handle_message(message, host, port) is called for each datagram
--   (default: print format(message)); syslog.parse(datagram) gives the table
--   {facility =, severity =, format =, ts =, host =, app =, pid =, msgid =,
--   sd =, msg =} and syslog.format(message) the line above.
local script = arg ~= nil and arg[0] ~= nil
  and debug.getinfo(1, "S").source == "@" .. arg[0]

if script then
  -- Run from a checkout: fall back on ../lua and ../build beside this file.
  local here = debug.getinfo(1, "S").source:match("^@(.-)[^/\\]*$")
  if here == "" then here = "./" end
  package.path = package.path .. ";" .. here .. "../lua/?.lua"
  package.cpath = package.cpath .. ";" .. here .. "../build/?.so"
end

local asyncore = require "asyncore"

-- Room for any UDP datagram; a longer AF_UNIX datagram is cut here, as
-- recvfrom does.
local MAX_DATAGRAM = 65535

------------------------------------------------------------------------------
-- parsing
------------------------------------------------------------------------------

-- Codes as in RFC 5424 section 6.2.1, names as syslog.h and logger -p spell
-- them (12 to 15, which syslog.h leaves unnamed, as rsyslog names them).
local FACILITIES = { [0] = "kern", "user", "mail", "daemon", "auth", "syslog", "lpr",
  "news", "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
  "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7" }
local SEVERITIES = { [0] = "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" }

local MONTHS = { Jan = true, Feb = true, Mar = true, Apr = true, May = true, Jun = true,
  Jul = true, Aug = true, Sep = true, Oct = true, Nov = true, Dec = true }

-- RFC 5424's NILVALUE: the field is absent.
local function value(s)
  if s == "-" then return nil end
  return s
end

-- Where the STRUCTURED-DATA at the start of s ends (an index), or nil when it
-- is malformed.  It is "-" or one or more [ID name="value" ...] elements; in
-- a value, "\" escapes the next character, so \] and \" do not end anything.
local function structured_data_end(s)
  if s:sub(1, 1) == "-" then return 1 end
  local i = 1
  if s:sub(i, i) ~= "[" then return nil end
  while s:sub(i, i) == "[" do
    local quoted = false
    i = i + 1
    while true do
      local c = s:sub(i, i)
      if c == "" then return nil end -- no closing "]"
      if quoted then
        if c == "\\" then i = i + 1 elseif c == '"' then quoted = false end
      elseif c == '"' then
        quoted = true
      elseif c == "]" then
        break
      end
      i = i + 1
    end
    i = i + 1
  end
  return i - 1
end

-- <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]
-- (VERSION 1 is the only one defined).  False when rest is not that shape.
local function parse_5424(m, rest)
  local ts, host, app, pid, msgid, tail = rest:match("^1 (%S+) (%S+) (%S+) (%S+) (%S+) (.*)$")
  if not ts then return false end
  local sd_end = structured_data_end(tail)
  if not sd_end then return false end
  local msg = tail:sub(sd_end + 1)
  if msg ~= "" and msg:sub(1, 1) ~= " " then return false end
  m.format = "rfc5424"
  m.ts, m.host, m.app, m.pid, m.msgid = value(ts), value(host), value(app), value(pid), value(msgid)
  m.sd = value(tail:sub(1, sd_end))
  -- MSG may start with a UTF-8 byte order mark (RFC 5424 section 6.4).
  m.msg = msg:sub(2):gsub("^\239\187\191", "")
  return true
end

-- [TIMESTAMP HOSTNAME] [TAG[PID]: ]CONTENT.  Senders take liberties with it:
-- local ones (logger -u, glibc's syslog()) leave out the hostname, so a word
-- after the timestamp that ends in ":" is taken as the tag.
local function parse_3164(m, rest)
  m.format = "rfc3164"
  local ts, after = rest:match("^(%a%a%a [ %d]%d %d%d:%d%d:%d%d) (.*)$")
  if ts and MONTHS[ts:sub(1, 3)] then
    m.ts, rest = ts, after
    local word, content = rest:match("^(%S+) ?(.*)$")
    if word and not word:find(":$") then m.host, rest = word, content end
  end
  local app, pid, msg = rest:match("^([^%s%[%]:]+)%[([^%]]*)%]: ?(.*)$")
  if not app then
    app, msg = rest:match("^([^%s%[%]:]+): ?(.*)$")
  end
  m.app, m.pid, m.msg = app, pid, msg or rest
end

-- The message in one datagram, as a table (see the top of this file).
local function parse(datagram)
  -- Senders often end a datagram with "\n" or "\0"; neither is part of the message.
  local text = datagram:gsub("[\r\n%z]+$", "")
  -- Without a valid <PRI> the whole datagram is the message, as user.notice (RFC 3164 4.3.3).
  local m = { facility = "user", severity = "notice" }
  local pri, rest = text:match("^<(%d%d?%d?)>(.*)$")
  pri = tonumber(pri)
  if pri and pri <= 191 then
    m.facility, m.severity = FACILITIES[pri // 8], SEVERITIES[pri % 8]
  else
    rest = text
  end
  if not parse_5424(m, rest) then parse_3164(m, rest) end
  return m
end

local ESCAPES = { ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function escape(s)
  return (s:gsub("[%c\\]", function(c) return ESCAPES[c] or ("\\x%02x"):format(c:byte()) end))
end

local FIELDS = { "ts", "host", "app", "pid", "msgid", "sd" }

-- A parsed message as one line (see the top of this file).
local function format(m)
  local out = { m.facility .. "." .. m.severity, m.format }
  for _, key in ipairs(FIELDS) do
    local v = m[key]
    if v then
      v = escape(v)
      if key == "ts" and v:find(" ", 1, true) then v = '"' .. v .. '"' end
      out[#out + 1] = key .. "=" .. v
    end
  end
  out[#out + 1] = "msg=" .. escape(m.msg)
  return table.concat(out, " ")
end

------------------------------------------------------------------------------
-- the server
------------------------------------------------------------------------------

-- Makes way for a new socket at path: removes a socket file nobody serves,
-- refuses a live socket or any other kind of file.
local function clear_stale_socket(path)
  -- Opening a socket file fails with ENXIO: that tells it from other files
  -- without stat().  ("r+" does not block on a FIFO, and truncates nothing.)
  local f, message, code = io.open(path, "r+")
  if f then
    f:close()
    error(path .. ": exists and is not a socket", 0)
  end
  if code == asyncore.errno.ENOENT then return end
  if code ~= asyncore.errno.ENXIO then error(message, 0) end
  local probe <close> = asyncore.socket(asyncore.AF_UNIX, asyncore.SOCK_DGRAM)
  local err = probe:connect_ex(path)
  if err == 0 then error(path .. ": another server is receiving there", 0) end
  if err == asyncore.errno.ECONNREFUSED then os.remove(path) end
end

local SyslogServer = asyncore.dispatcher:subclass {
  __name = "SyslogServer",

  -- SyslogServer(host, port [, map]) for UDP, SyslogServer(path, nil [, map])
  -- for an AF_UNIX datagram socket.
  init = function(self, host, port, map)
    asyncore.dispatcher.init(self, nil, map)
    if port == nil then
      clear_stale_socket(host)
      self:create_socket(asyncore.AF_UNIX, asyncore.SOCK_DGRAM)
      self:bind(host)
      self.unix_path = host -- ours now: close() removes it
    else
      self:create_socket(host:find(":", 1, true) and asyncore.AF_INET6 or asyncore.AF_INET,
                         asyncore.SOCK_DGRAM)
      self:bind(host, port)
    end
  end,

  -- One datagram per read event; if more are queued, the loop calls again.
  handle_read = function(self)
    local datagram, host, port = self:recvfrom(MAX_DATAGRAM)
    self:handle_message(parse(datagram), host, port)
  end,

  -- host, port: the sender (a path, or nil from an unbound AF_UNIX sender).
  handle_message = function(self, message)
    print(format(message))
  end,

  -- Nothing is ever sent.  Without this, a UDP socket, always writable, is
  -- polled for writing and woken on every pass (as in Python): a busy loop.
  writable = function() return false end,

  close = function(self)
    asyncore.dispatcher.close(self)
    if self.unix_path then
      os.remove(self.unix_path)
      self.unix_path = nil
    end
  end,
}

if script then
  local usage = "usage: lua5.4 examples/syslog_server.lua [HOST [PORT]] | --unix PATH\n"
  local unix = arg[1] == "--unix"
  local host, port
  if unix then
    host = arg[2]
  else
    host = arg[1] or "127.0.0.1"
    port = math.tointeger(tonumber(arg[2] or "5514"))
  end
  if host == nil or (not unix and port == nil) then
    io.stderr:write(usage)
    os.exit(2)
  end
  local ok, server = pcall(SyslogServer, host, port)
  if not ok then
    io.stderr:write("syslog_server.lua: ", tostring(server), "\n")
    os.exit(1)
  end
  -- On Ctrl-C, loop() raises "interrupted!"; leaving this scope closes the
  -- server, which removes its AF_UNIX path.
  local _ <close> = server
  io.stdout:setvbuf("line")
  if unix then
    print("syslog server listening on unix " .. host)
  else
    local bound_host, bound_port = server:getsockname()
    print(("syslog server listening on udp %s port %d"):format(bound_host, bound_port))
  end
  asyncore.loop()
end

return { SyslogServer = SyslogServer, parse = parse, format = format }
