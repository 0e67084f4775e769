-- asyncore: Python's asyncore event loop for Lua 5.4.  The loop pass, the
-- sockets and the send/recv hot path are C (asyncore.core); this file holds
-- the class plumbing and the handlers that read best in Lua.
local core = require "asyncore.core"

local M = {}

for _, name in ipairs {
  "AF_INET", "AF_INET6", "AF_UNIX", "SOCK_STREAM", "SOCK_DGRAM",
  "POLLIN", "POLLOUT", "POLLPRI", "POLLHUP", "POLLERR", "POLLNVAL",
  "SOL_SOCKET", "SO_ERROR", "SO_REUSEADDR", "SO_REUSEPORT", "SO_BROADCAST",
  "SO_LINGER", "SO_KEEPALIVE", "SO_RCVBUF", "SO_SNDBUF", "SO_TYPE", "IPPROTO_TCP",
  "TCP_NODELAY", "SHUT_RD", "SHUT_WR", "SHUT_RDWR", "MSG_OOB", "MSG_PEEK",
  "FD_SETSIZE", "errno", "strerror", "ExitNow", "time", "call_later", "call_at",
} do
  M[name] = core[name]
end

local errno = core.errno
local oserror = core.oserror

M.socket_map = {}
-- socket([family [, type]]): a raw non-blocking socket, for dispatcher(sock)
M.socket = core.socket
M.read, M.write, M._exception, M.readwrite = core.read, core.write, core._exception, core.readwrite
M._strerror = core.strerror

-- An OS failure raised as Python raises OSError: the message, no position.
local function raise(message)
  error(message, 0)
end

------------------------------------------------------------------------------
-- backends and the loop
------------------------------------------------------------------------------

local known_backends = { select = true, poll = true, epoll = true, kqueue = true }

function M.backends()
  return core.backends()
end

function M.backend()
  return core.default_backend()
end

local function has_backend(name)
  for _, b in ipairs(core.backends()) do
    if b == name then return true end
  end
  return false
end

local function backend_for(use_poll, backend)
  local name = backend
  if name == nil then
    if use_poll == nil then return core.default_backend() end
    if use_poll == true then name = "poll"
    elseif use_poll == false then name = "select"
    elseif type(use_poll) == "string" then name = use_poll
    else
      error("bad argument 'use_poll' to 'loop' (boolean or backend name expected, got "
        .. type(use_poll) .. ")", 3)
    end
  end
  if type(name) ~= "string" then
    error("bad argument 'backend' to 'loop' (string expected, got " .. type(name) .. ")", 3)
  end
  if not has_backend(name) then
    local available = table.concat(core.backends(), ", ")
    if known_backends[name] then
      error(("loop: backend '%s' is not available here (available: %s)"):format(name, available), 3)
    end
    error(("loop: unknown backend '%s' (available: %s)"):format(name, available), 3)
  end
  return name
end

local function check_map(map, fname)
  if map == nil then return M.socket_map end
  if type(map) ~= "table" then
    error(("bad argument 'map' to '%s' (table expected, got %s)"):format(fname, type(map)), 3)
  end
  return map
end

local function check_timeout(timeout, default, fname)
  if timeout == nil then return default end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error(("bad argument 'timeout' to '%s' (number >= 0 expected, got %s)")
      :format(fname, tostring(timeout)), 3)
  end
  return timeout
end

-- loop([timeout [, use_poll [, map [, count]]]]) or loop{timeout=, use_poll=, backend=, map=, count=}
function M.loop(timeout, use_poll, map, count)
  local backend
  if type(timeout) == "table" then
    local opts = timeout
    timeout, use_poll, map, count, backend = opts.timeout, opts.use_poll, opts.map, opts.count, opts.backend
  end
  timeout = check_timeout(timeout, 30.0, "loop")
  backend = backend_for(use_poll, backend)
  map = check_map(map, "loop")
  local pass = core.pass
  -- each pass says whether to go on: the map holds a channel or a timer is pending
  if count == nil then
    local full = true -- the first pass looks at every channel
    while pass(timeout, map, backend, full) do
      full = false
    end
  else
    if math.type(count) ~= "integer" then
      error("bad argument 'count' to 'loop' (integer expected, got " .. tostring(count) .. ")", 2)
    end
    local full = true
    while count > 0 and pass(timeout, map, backend, full) do
      full = false
      count = count - 1
    end
  end
end

-- handle_timer_error(err, traceback): a timer raised err; scripts may replace it
function M.handle_timer_error(err, traceback)
  io.stderr:write(("asyncore: error in timer: %s\n%s\n"):format(tostring(err), tostring(traceback)))
end

-- poll(timeout, map): one pass with select(); poll2: one pass with poll()
function M.poll(timeout, map)
  core.pass(check_timeout(timeout, 0.0, "poll"), check_map(map, "poll"), "select", true, "poll")
end

function M.poll2(timeout, map)
  core.pass(check_timeout(timeout, 0.0, "poll2"), check_map(map, "poll2"), "poll", true, "poll2")
end
M.poll3 = M.poll2

function M.close_all(map, ignore_all)
  map = check_map(map, "close_all")
  local channels = {}
  for _, channel in pairs(map) do channels[#channels + 1] = channel end
  for _, channel in ipairs(channels) do
    local ok, err = pcall(channel.close, channel)
    if not ok then
      if err == M.ExitNow or (type(err) == "string" and err:match("interrupted!$")) then
        error(err, 0)
      end
      if not ignore_all and not (type(err) == "string" and err:match("%(EBADF%)$")) then
        error(err, 0)
      end
    end
  end
  for fd in pairs(map) do map[fd] = nil end
end

-- compact_traceback(tb) -> info, file, function, line: Python's one-line form
-- "[file|function|line] ..." of a Lua traceback, outermost call first.
function M.compact_traceback(tb)
  local frames = {}
  for line in tostring(tb or ""):gmatch("[^\n]+") do
    local file, lineno, what = line:match("^%s*([^:]+):(%d+): in (.*)$")
    if file then
      local name = what:match("'([^']+)'") or what:match("<([^>]+)>") or what
      table.insert(frames, 1, { file, name, lineno })
    end
  end
  local parts = {}
  for i, f in ipairs(frames) do parts[i] = ("[%s|%s|%s]"):format(f[1], f[2], f[3]) end
  local last = frames[#frames] or { "?", "?", "?" }
  return table.concat(parts, " "), last[1], last[2], last[3]
end

------------------------------------------------------------------------------
-- classes: a handler table makes a class; calling a class makes an instance
------------------------------------------------------------------------------

-- Metamethods are looked up raw on the metatable, so each class copies them.
local inherited_metamethods = { "__tostring", "__close", "__eq", "__lt", "__le", "__concat", "__len" }

local class_meta = {}

local function new_instance(class, ...)
  local self = setmetatable({}, class)
  self:init(...)
  return self
end

local function subclass(parent, handlers)
  if handlers ~= nil and type(handlers) ~= "table" then
    error("bad argument #1 to 'subclass' (table expected, got " .. type(handlers) .. ")", 2)
  end
  local class = {}
  for k, v in pairs(handlers or {}) do class[k] = v end
  for _, mm in ipairs(inherited_metamethods) do
    if class[mm] == nil then class[mm] = rawget(parent, mm) end
  end
  class.__index = class
  return setmetatable(class, { __index = parent, __call = new_instance, __tostring = class_meta.tostring })
end

-- The name of a class: its own __name or the nearest named ancestor's.
local function class_name(class)
  while class do
    local name = rawget(class, "__name")
    if name then return name end
    local mt = getmetatable(class)
    class = mt and mt.__index
  end
  return "?"
end

function class_meta.tostring(class)
  return ("<class %s>"):format(class_name(class))
end

------------------------------------------------------------------------------
-- dispatcher
------------------------------------------------------------------------------

local dispatcher = {
  __name = "asyncore.dispatcher",
  debug = false,
  connected = false,
  accepting = false,
  connecting = false,
  closing = false,
  addr = nil,
  ignore_log_types = { warning = true },
}
dispatcher.__index = dispatcher
setmetatable(dispatcher, { __call = new_instance, __tostring = class_meta.tostring })
M.dispatcher = dispatcher

dispatcher.subclass = subclass

-- The socket of a channel, or an error naming the call.
local function socket_of(self, call)
  local sock = self.socket
  if sock == nil then
    error(call .. ": the dispatcher has no socket (call create_socket or set_socket first)", 3)
  end
  return sock
end

-- The results of a socket call, or its failure raised as an OS error.
local function checked(first, ...)
  if first == nil then raise((...)) end
  return first, ...
end

-- The address a channel is bound or connected to: {host, port}, or the path.
local function address_value(family, host, port)
  if family == M.AF_UNIX then return host end
  return { host, port }
end

function dispatcher.init(self, sock, map)
  if map ~= nil and type(map) ~= "table" then
    error("bad argument #2 to 'init' (table expected, got " .. type(map) .. ")", 2)
  end
  self._map = map -- nil: the global map (fields left at nil cost no memory)
  if sock then
    if not (getmetatable(sock) and sock.fileno) then
      error("bad argument #1 to 'init' (socket expected, got " .. type(sock) .. ")", 2)
    end
    sock:setblocking(false)
    self:set_socket(sock, map)
    self.connected = true
    local host, port, code = sock:getpeername()
    if host == nil then
      if code == errno.ENOTCONN or code == errno.EINVAL then
        self.connected = false
      else
        self:del_channel(map)
        raise(port)
      end
    else
      self.addr = address_value(sock.family, host, port)
    end
  else
    self.socket = nil
  end
end

function dispatcher:__tostring()
  local status = { class_name(getmetatable(self)) }
  if self.accepting and self.addr then
    status[#status + 1] = "listening"
  elseif self.connected then
    status[#status + 1] = "connected"
  end
  local addr = self.addr
  if type(addr) == "table" then
    local host, port = tostring(addr[1]), tostring(addr[2])
    status[#status + 1] = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
  elseif addr ~= nil and addr ~= "" then -- an unnamed AF_UNIX peer has no path to show
    status[#status + 1] = tostring(addr)
  end
  return ("<%s at %p>"):format(table.concat(status, " "), self)
end

function dispatcher:__close()
  self:close()
end

-- The loop keeps interest between passes: add_channel and del_channel tell it
-- (core.reset), as do the methods that change what a channel waits for
-- (core.touch).
local touch, reset = core.touch, core.reset

-- map_arg(map, fname): the map a channel method works on (the channel's own,
-- or the global one, when map is nil)
local function map_arg(self, map, fname)
  if map ~= nil and type(map) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(map)), 3)
  end
  return map or self._map or M.socket_map
end

function dispatcher:add_channel(map)
  map = map_arg(self, map, "add_channel")
  if self._fileno == nil then
    error("add_channel: the dispatcher has no socket (call create_socket or set_socket first)", 2)
  end
  map[self._fileno] = self
  reset(map, self._fileno)
end

function dispatcher:del_channel(map)
  local fd = self._fileno
  map = map_arg(self, map, "del_channel")
  -- Only this channel's own entry: its fd may belong to a new channel already.
  if fd ~= nil and map ~= nil and rawequal(map[fd], self) then
    reset(map, fd)
    map[fd] = nil
  end
  self._fileno = nil
end

function dispatcher:create_socket(family, type_)
  family, type_ = family or M.AF_INET, type_ or M.SOCK_STREAM
  self.family_and_type = { family, type_ }
  local sock, message = core.socket(family, type_)
  if sock == nil then raise(message) end
  if self._fileno ~= nil then self:del_channel() end
  self:set_socket(sock)
end

function dispatcher:set_socket(sock, map)
  if not (getmetatable(sock) and sock.fileno) then
    error("bad argument #1 to 'set_socket' (socket expected, got " .. type(sock) .. ")", 2)
  end
  if map ~= nil and type(map) ~= "table" then
    error("bad argument #2 to 'set_socket' (table expected, got " .. type(map) .. ")", 2)
  end
  self.socket = sock
  self._fileno = sock:fileno()
  self:add_channel(map)
end

function dispatcher:set_reuse_addr()
  -- As in Python: where the option cannot be set, carry on without it.
  local sock = self.socket
  if sock and sock.setsockopt then sock:setsockopt(M.SOL_SOCKET, M.SO_REUSEADDR, 1) end
end

function dispatcher:set_reuse_port()
  if M.SO_REUSEPORT == nil then
    error("set_reuse_port: SO_REUSEPORT is not supported on this platform", 2)
  end
  local ok, message = socket_of(self, "set_reuse_port"):setsockopt(M.SOL_SOCKET, M.SO_REUSEPORT, 1)
  if not ok then raise((message:gsub("^setsockopt:", "set_reuse_port:"))) end
end

function dispatcher:readable()
  return true
end

function dispatcher:writable()
  return true
end

function dispatcher:listen(num)
  local sock = socket_of(self, "listen")
  self.accepting = true
  touch(self)
  return checked(sock:listen(num))
end

function dispatcher:bind(host, port)
  local sock = socket_of(self, "bind")
  self.addr = address_value(sock.family, host, port)
  return checked(sock:bind(host, port))
end

local connect_pending = { [errno.EINPROGRESS] = true, [errno.EALREADY] = true, [errno.EWOULDBLOCK] = true }

function dispatcher:connect(host, port)
  local sock = socket_of(self, "connect")
  self.connected = false
  self.connecting = true
  touch(self)
  local err, message = sock:connect_ex(host, port)
  if err == nil then raise(message) end
  if connect_pending[err] then
    self.addr = address_value(sock.family, host, port)
    return
  end
  if err == 0 or err == errno.EISCONN then
    self.addr = address_value(sock.family, host, port)
    self:handle_connect_event()
  else
    raise(oserror("connect", err))
  end
end

local accept_retry = { [errno.EWOULDBLOCK] = true, [errno.EAGAIN] = true, [errno.ECONNABORTED] = true }

-- accept() -> sock, host, port (or sock, path), or nil when no connection is pending
function dispatcher:accept()
  local sock, host, port = socket_of(self, "accept"):accept()
  if sock == nil then
    if accept_retry[port] then return nil end
    -- Out of fds: the error goes on as in Python, and the listener sits out
    -- the next wait, so a handle_error that keeps listening does not spin.
    if port == errno.EMFILE or port == errno.ENFILE then core.rest(self) end
    raise(host)
  end
  return sock, host, port
end

dispatcher.send = core.dispatcher_send
dispatcher.recv = core.dispatcher_recv

function dispatcher:sendto(data, host, port)
  return checked(socket_of(self, "sendto"):sendto(data, host, port))
end

function dispatcher:recvfrom(n)
  return checked(socket_of(self, "recvfrom"):recvfrom(n))
end

function dispatcher:fileno()
  local sock = self.socket
  return sock and sock:fileno() or -1
end

function dispatcher:getsockname()
  return checked(socket_of(self, "getsockname"):getsockname())
end

function dispatcher:getpeername()
  return checked(socket_of(self, "getpeername"):getpeername())
end

function dispatcher:shutdown(how)
  return checked(socket_of(self, "shutdown"):shutdown(how))
end

local close_ignored = { [errno.ENOTCONN] = true, [errno.EBADF] = true }

function dispatcher:close()
  self.connected = false
  self.accepting = false
  self.connecting = false
  self:del_channel()
  local sock = self.socket
  if sock ~= nil then
    local ok, message, code = sock:close()
    if ok == nil and not close_ignored[code] then raise(message) end
  end
end

-- log is for 'hit' logging, log_info for informational, warning and error logging.
function dispatcher:log(message)
  io.stderr:write("log: ", tostring(message), "\n")
end

function dispatcher:log_info(message, type_)
  if type_ ~= nil and type(type_) ~= "string" then
    error("bad argument #2 to 'log_info' (string expected, got " .. type(type_) .. ")", 2)
  end
  type_ = type_ or "info"
  local ignored = self.ignore_log_types
  if not (ignored and ignored[type_]) then
    io.write(type_, ": ", tostring(message), "\n")
  end
end

-- handle_read_event and handle_write_event run for every event: C has them,
-- with Python's logic (src/ldispatcher.c).
dispatcher.handle_read_event = core.dispatcher_handle_read_event

function dispatcher:handle_connect_event()
  local err, message = socket_of(self, "connect"):getsockopt(M.SOL_SOCKET, M.SO_ERROR)
  if err == nil then raise(message) end
  if err ~= 0 then raise(oserror("connect", err)) end
  self:handle_connect()
  self.connected = true
  self.connecting = false
end

dispatcher.handle_write_event = core.dispatcher_handle_write_event

function dispatcher:handle_expt_event()
  -- an error on the socket, or out-of-band data: the error first
  local err = socket_of(self, "getsockopt"):getsockopt(M.SOL_SOCKET, M.SO_ERROR)
  if err ~= 0 then
    self:handle_close()
  else
    self:handle_expt()
  end
end

function dispatcher:handle_error(err, traceback)
  local info = M.compact_traceback(traceback)
  local ok, repr = pcall(tostring, self)
  if not ok then repr = ("<tostring(self) failed for object at %p>"):format(self) end
  self:log_info(("uncaptured Lua error, closing channel %s (%s %s)"):format(repr, tostring(err), info), "error")
  self:handle_close()
end

function dispatcher:handle_expt()
  self:log_info("unhandled incoming priority event", "warning")
end

function dispatcher:handle_read()
  self:log_info("unhandled read event", "warning")
end

function dispatcher:handle_write()
  self:log_info("unhandled write event", "warning")
end

function dispatcher:handle_connect()
  self:log_info("unhandled connect event", "warning")
end

function dispatcher:handle_accept()
  local sock, host, port = self:accept()
  if sock ~= nil then
    self:handle_accepted(sock, host, port)
  end
end

function dispatcher:handle_accepted(sock, host, port) -- luacheck: no unused args
  if not (getmetatable(sock) and sock.close) then
    error("bad argument #1 to 'handle_accepted' (socket expected, got " .. type(sock) .. ")", 2)
  end
  sock:close()
  self:log_info("unhandled accepted event", "warning")
end

function dispatcher:handle_close()
  self:log_info("unhandled close event", "warning")
  self:close()
end

------------------------------------------------------------------------------
-- dispatcher_with_send: buffered output for simple clients
------------------------------------------------------------------------------

local dispatcher_with_send = dispatcher:subclass { __name = "asyncore.dispatcher_with_send" }
M.dispatcher_with_send = dispatcher_with_send

dispatcher_with_send.out_buffer = "" -- on the class: an idle channel stores none

-- initiate_send(): one send of at most 64 KiB of out_buffer (C)
dispatcher_with_send.initiate_send = core.send_initiate_send

function dispatcher_with_send:handle_write()
  self:initiate_send()
end

function dispatcher_with_send:writable()
  return not self.connected or #self.out_buffer > 0
end

-- _data_arg(value, fname): value as the string to queue (a number converts, as
-- Lua converts it); anything else raises an error naming fname's caller.
function M._data_arg(value, fname)
  local kind = type(value)
  if kind == "string" then return value end
  if kind == "number" then return tostring(value) end
  error(("bad argument #1 to '%s' (string expected, got %s)"):format(fname, kind), 3)
end

function dispatcher_with_send:send(data)
  data = M._data_arg(data, "send")
  if self.debug then self:log_info("sending " .. ("%q"):format(data)) end
  self.out_buffer = self.out_buffer .. data
  touch(self)
  self:initiate_send()
end

------------------------------------------------------------------------------
-- file_wrapper and file_dispatcher: pipes and ttys in the loop
------------------------------------------------------------------------------

M.file_wrapper = core.file_wrapper

local file_dispatcher = dispatcher:subclass { __name = "asyncore.file_dispatcher" }
M.file_dispatcher = file_dispatcher

-- file_dispatcher(fd_or_file [, map])
function file_dispatcher.init(self, fd, map)
  dispatcher.init(self, nil, map)
  self.connected = true
  fd = core.fileno(fd)
  self:set_file(fd)
  core.set_blocking(fd, false)
end

function file_dispatcher:set_file(fd)
  self.socket = core.file_wrapper(fd)
  self._fileno = self.socket:fileno()
  self:add_channel()
end

core.set_defaults {
  readable = dispatcher.readable,
  writable = dispatcher.writable,
  send_writable = dispatcher_with_send.writable,
  -- looked up at each error, so a script's replacement is used
  timer_error = function(err, traceback)
    local handler = M.handle_timer_error
    if type(handler) ~= "function" and not (getmetatable(handler) or {}).__call then
      error(("handle_timer_error: asyncore.handle_timer_error is a %s, not a function, to take: %s")
        :format(type(handler), tostring(err)), 0)
    end
    return handler(err, traceback)
  end,
}

return M
