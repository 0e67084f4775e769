-- Port of Python 3.11 Lib/test/test_asyncore.py: HelperFunctionTests,
-- DispatcherTests, DispatcherWithSendTests and FileWrapperTest.
local asyncore = require "asyncore"
local core = require "asyncore.core"
local support = require "support"

-- A handler table whose every event raises ExitNow (Python's exitingdummy).
local function exitingdummy()
  local function exit() error(asyncore.ExitNow) end
  return {
    handle_read_event = exit, handle_write_event = exit,
    handle_close = exit, handle_expt_event = exit,
  }
end

-- A handler table whose every event raises an ordinary error (crashingdummy);
-- handle_error records the value it was given.
local function crashingdummy()
  local obj = { error_handled = false }
  obj.raised = setmetatable({}, { __tostring = function() return "crash" end })
  local function crash() error(obj.raised) end
  obj.handle_read_event, obj.handle_write_event = crash, crash
  obj.handle_close, obj.handle_expt_event = crash, crash
  function obj:handle_error(err, traceback)
    self.error_handled = true
    self.error_value, self.traceback = err, traceback
  end
  return obj
end

local function assert_exit_now(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.is_true(rawequal(err, asyncore.ExitNow), "expected ExitNow, got " .. tostring(err))
end

local function assert_error_handled(obj)
  assert.is_true(obj.error_handled)
  assert.is_true(rawequal(obj.error_value, obj.raised), "handle_error got another value")
  assert.equal("string", type(obj.traceback))
end

describe("HelperFunctionTests", function()
  after_each(function() asyncore.close_all(nil, true) end)

  it("readwriteexc: ExitNow propagates from read/write/_exception, other errors go to handle_error", function()
    -- ExitNow raised in the object's handler bubbles all the way up
    local tr1 = exitingdummy()
    assert_exit_now(asyncore.read, tr1)
    assert_exit_now(asyncore.write, tr1)
    assert_exit_now(asyncore._exception, tr1)

    -- any other error calls handle_error
    local tr2 = crashingdummy()
    asyncore.read(tr2)
    assert_error_handled(tr2)

    tr2 = crashingdummy()
    asyncore.write(tr2)
    assert_error_handled(tr2)

    tr2 = crashingdummy()
    asyncore._exception(tr2)
    assert_error_handled(tr2)
  end)

  -- readwrite() calls the right method for each poll flag
  local attributes = { "read", "expt", "write", "closed", "error_handled" }
  local expected = {
    { "POLLIN", "read" },
    { "POLLPRI", "expt" },
    { "POLLOUT", "write" },
    { "POLLERR", "closed" },
    { "POLLHUP", "closed" },
    { "POLLNVAL", "closed" },
  }

  local function testobj()
    local t = { read = false, write = false, closed = false, expt = false, error_handled = false }
    function t:handle_read_event() self.read = true end
    function t:handle_write_event() self.write = true end
    function t:handle_close() self.closed = true end
    function t:handle_expt_event() self.expt = true end
    function t:handle_error() self.error_handled = true end
    return t
  end

  for _, case in ipairs(expected) do
    local flagname, expectedattr = case[1], case[2]
    it("readwrite: " .. flagname .. " calls only " .. expectedattr, function()
      local flag = asyncore[flagname]
      assert.equal("number", type(flag))

      local tobj = testobj()
      assert.is_false(tobj[expectedattr])
      asyncore.readwrite(tobj, flag)
      -- only the attribute set by the routine we expect to be called is true
      for _, attr in ipairs(attributes) do
        assert.equal(attr == expectedattr, tobj[attr], attr)
      end

      -- ExitNow in the handler bubbles up through readwrite
      assert_exit_now(asyncore.readwrite, exitingdummy(), flag)

      -- any other error calls handle_error
      local tr2 = crashingdummy()
      assert.is_false(tr2.error_handled)
      asyncore.readwrite(tr2, flag)
      assert_error_handled(tr2)
    end)
  end

  -- close_all() closes everything in a given map (or the default map)
  local function dummychannel()
    local sock = { closed = false }
    function sock:close() self.closed = true end
    function sock:fileno() return 42 end
    local c = { socket = sock }
    function c:close() self.socket:close() end
    return c
  end

  local function closeall_check(usedefault)
    local l, testmap = {}, {}
    for i = 0, 9 do
      local c = dummychannel()
      l[#l + 1] = c
      assert.is_false(c.socket.closed)
      testmap[i] = c
    end

    if usedefault then
      local socketmap = asyncore.socket_map
      local ok, err = pcall(function()
        asyncore.socket_map = testmap
        asyncore.close_all()
      end)
      testmap, asyncore.socket_map = asyncore.socket_map, socketmap
      assert(ok, err)
    else
      asyncore.close_all(testmap)
    end

    assert.is_nil(next(testmap))
    for _, c in ipairs(l) do
      assert.is_true(c.socket.closed)
    end
  end

  it("closeall: closes every channel of a given map and empties it", function()
    closeall_check(false)
  end)

  it("closeall_default: closes every channel of asyncore.socket_map and empties it", function()
    closeall_check(true)
  end)

  it("compact_traceback: the innermost frame and the [file|function|line] list", function()
    local raised_at
    local function spam_raiser()
      raised_at = debug.getinfo(1, "l").currentline + 1
      error("I don't like spam!")
    end
    -- called from a Lua frame, so that the traceback can name it
    local ok, tb = xpcall(function() spam_raiser() end, debug.traceback)
    assert.is_false(ok)
    assert.truthy(tb:find("I don't like spam!", 1, true))

    local info, file, func, line = asyncore.compact_traceback(tb)
    assert.truthy(file:match("asyncore_helpers_spec%.lua$"), file)
    assert.equal("spam_raiser", func)
    assert.equal(tostring(raised_at), tostring(line))
    -- info lists the frames outermost first, so it ends with the innermost one
    local last = ("[%s|%s|%s]"):format(file, func, line)
    assert.equal(last, info:sub(-#last))
    -- and is nothing but "[file|function|line]" entries joined by spaces
    local entries = {}
    for entry in info:gmatch("%[[^|]+|[^|]+|%d+%]") do entries[#entries + 1] = entry end
    assert.is_true(#entries >= 2) -- the spec's frames and busted's below them
    assert.equal(info, table.concat(entries, " "))
  end)

  it("compact_traceback: of the traceback the loop hands to handle_error", function()
    local raised_at, got
    local obj = {}
    function obj:handle_read_event()
      raised_at = debug.getinfo(1, "l").currentline + 1
      error("I don't like spam!")
    end
    function obj:handle_error(err, traceback)
      got = { err = err, info = { asyncore.compact_traceback(traceback) } }
    end
    asyncore.read(obj)
    assert.is_table(got)
    assert.truthy(tostring(got.err):find("I don't like spam!", 1, true))
    local info, file, func, line = table.unpack(got.info)
    assert.truthy(file:match("asyncore_helpers_spec%.lua$"), file)
    -- the loop calls the handler from C, where Lua knows no name for it: then the
    -- frame is named by where the function was defined
    local defined = debug.getinfo(obj.handle_read_event, "S").linedefined
    assert.truthy(func == "handle_read_event" or func == file .. ":" .. defined,
      "function: " .. tostring(func))
    assert.equal(tostring(raised_at), tostring(line))
    local last = ("[%s|%s|%s]"):format(file, func, line)
    assert.equal(last, info:sub(-#last))
  end)
end)

describe("DispatcherTests", function()
  after_each(function() asyncore.close_all(nil, true) end)

  it("basic: readable() and writable() are true", function()
    local d = asyncore.dispatcher()
    assert.is_true(d:readable())
    assert.is_true(d:writable())
  end)

  it("repr: <asyncore.dispatcher at 0x...>", function()
    local d = asyncore.dispatcher()
    assert.equal(("<asyncore.dispatcher at %p>"):format(d), tostring(d))
    assert.truthy(tostring(d):match("^<asyncore%.dispatcher at 0x%x+>$"), tostring(d))
  end)

  it("log: writes 'log: message' lines to stderr", function()
    local d = asyncore.dispatcher()
    local l1 = "Lovely spam! Wonderful spam!"
    local l2 = "I don't like spam!"
    local stdout
    local stderr = support.capture_stderr(function()
      stdout = support.capture_stdout(function()
        d:log(l1)
        d:log(l2)
      end)
    end)
    assert.same({ "log: " .. l1, "log: " .. l2 }, support.lines(stderr))
    assert.equal("", stdout)
  end)

  it("log_info: writes 'type: message' lines to stdout, type defaulting to info", function()
    local d = asyncore.dispatcher()
    local l1 = "Have you got anything without spam?"
    local l2 = "Why can't she have egg bacon spam and sausage?"
    local l3 = "THAT'S got spam in it!"
    local stdout = support.capture_stdout(function()
      d:log_info(l1, "EGGS")
      d:log_info(l2)
      d:log_info(l3, "SPAM")
    end)
    assert.same({ "EGGS: " .. l1, "info: " .. l2, "SPAM: " .. l3 }, support.lines(stdout))
  end)

  it("unhandled: the default handlers log warnings", function()
    local d = asyncore.dispatcher()
    d.ignore_log_types = {}
    local stdout = support.capture_stdout(function()
      d:handle_expt()
      d:handle_read()
      d:handle_write()
      d:handle_connect()
    end)
    assert.same({
      "warning: unhandled incoming priority event",
      "warning: unhandled read event",
      "warning: unhandled write event",
      "warning: unhandled connect event",
    }, support.lines(stdout))
  end)

  it("unhandled: warnings are ignored by default (ignore_log_types)", function()
    local d = asyncore.dispatcher()
    local stdout = support.capture_stdout(function()
      d:handle_expt()
      d:handle_read()
      d:handle_write()
      d:handle_connect()
    end)
    assert.equal("", stdout)
  end)

  it("strerror: the OS's message, and something for an unknown errno", function()
    local eperm = asyncore.errno.EPERM
    local out, ok = support.python_output(
      "import errno, os; print(errno.EPERM); print(os.strerror(errno.EPERM))")
    assert.is_true(ok, "python3 failed")
    local py_errno, py_message = out:match("^(%d+)\n([^\n]*)\n$")
    assert.equal(tonumber(py_errno), eperm)
    assert.equal(py_message, asyncore._strerror(eperm))
    assert.equal(py_message, asyncore.strerror(eperm))

    -- the same text the C library gives Lua's own io functions
    local missing = support.tmppath(".missing")
    local _, message, code = io.open(missing, "r")
    assert.equal(asyncore.errno.ENOENT, code)
    assert.equal(missing .. ": " .. asyncore._strerror(asyncore.errno.ENOENT), message)

    local err = asyncore._strerror(-1)
    assert.equal("string", type(err))
    assert.are_not.equal("", err)
  end)
end)

describe("DispatcherWithSendTests", function()
  after_each(function() asyncore.close_all(nil, true) end)

  -- a peer that collects what it gets until a newline is sent, then prints it as hex
  local capture_server = [[
import socket, sys
serv = socket.socket()
serv.settimeout(10)
serv.bind(("127.0.0.1", 0))
serv.listen()
print(serv.getsockname()[1], flush=True)
buf = b""
try:
    conn, addr = serv.accept()
    conn.settimeout(10)
    while b"\n" not in buf:
        data = conn.recv(10)
        if not data:
            break
        buf += data
    conn.close()
finally:
    serv.close()
    sys.stdout.write(buf.replace(b"\n", b"").hex())
]]

  it("send: dispatcher_with_send delivers everything it buffered", function()
    local peer = support.python_popen(capture_server)
    local peer_open = true
    finally(function() if peer_open then peer:close() end end)
    local port = tonumber(peer:read("l"))
    assert.is_number(port, "the capture server did not start")

    local dispatcherwithsend_noread = asyncore.dispatcher_with_send:subclass {
      readable = function() return false end,
      handle_connect = function() end,
    }

    local data = "Suppose there isn't a 16-ton weight?"
    local d = dispatcherwithsend_noread()
    d:create_socket()
    d:connect("127.0.0.1", port)

    -- let the connection complete (Python sleeps here)
    assert.is_true(support.loop_until(function() return d.connected end, { use_poll = false }),
      "never connected")

    d:send(data)
    d:send(data)
    d:send("\n")

    local n = 1000
    while #d.out_buffer > 0 and n > 0 do
      asyncore.poll(0.01)
      n = n - 1
    end
    assert.equal("", d.out_buffer)

    local captured = peer:read("a")
    peer_open = false
    assert.is_true(peer:close(), "the capture server failed")
    assert.equal(data .. data, support.unhex(captured))
  end)
end)

describe("FileWrapperTest", function()
  local d = "It's not dead, it's sleeping!"
  local testfn

  before_each(function()
    testfn = support.tmppath(".txt")
    support.write_file(testfn, d)
  end)

  after_each(function()
    asyncore.close_all(nil, true)
    support.unlink(testfn)
  end)

  it("recv: reads through a dup of the fd", function()
    local f = assert(io.open(testfn, "rb"))
    local fd = core.fileno(f)
    local w = asyncore.file_wrapper(fd)
    f:close()

    assert.are_not.equal(fd, w.fd)
    assert.are_not.equal(fd, w:fileno())
    assert.equal("It's not dead", w:recv(13))
    assert.equal(", it's", w:read(6))
    w:close()
    assert.equal(-1, w:fileno())
    local ok, err = pcall(w.read, w, 1)
    assert.is_false(ok)
    assert.truthy(tostring(err):match("%(EBADF%)$"), tostring(err))
  end)

  it("send: writes through a dup of the fd", function()
    local d1 = "Come again?"
    local d2 = "I want to buy some cheese."
    local f = assert(io.open(testfn, "ab"))
    local w = asyncore.file_wrapper(f)
    f:close()

    assert.equal(#d1, w:write(d1))
    assert.equal(#d2, w:send(d2))
    w:close()
    assert.equal(d .. d1 .. d2, support.read_file(testfn))
  end)

  for _, backend in ipairs { { "poll", true }, { "select", false } } do
    it("dispatcher: file_dispatcher reads a file (" .. backend[1] .. ")", function()
      local f = assert(io.open(testfn, "rb"))
      local fd = core.fileno(f)
      local data = {}
      local FileDispatcher = asyncore.file_dispatcher:subclass {
        handle_read = function(self) data[#data + 1] = self:recv(29) end,
      }
      local s = FileDispatcher(fd)
      f:close()
      assert.is_true(s.connected)
      asyncore.loop { timeout = 0.01, use_poll = backend[2], count = 2 }
      assert.equal(d, table.concat(data))
    end)

    it("dispatcher: file_dispatcher reads a pipe from io.popen to EOF (" .. backend[1] .. ")", function()
      local p = assert(io.popen("printf '%s' " .. support.shell_quote(d), "r"))
      local p_open = true
      finally(function() if p_open then p:close() end end)
      local data, closed = {}, false
      local FileDispatcher = asyncore.file_dispatcher:subclass {
        handle_read = function(self) data[#data + 1] = self:recv(7) end,
        handle_close = function(self) closed = true; self:close() end,
      }
      local s = FileDispatcher(p)
      assert.is_true(support.loop_until(function() return closed end,
        { use_poll = backend[2], timeout = 0.2, passes = 100 }), "EOF not seen")
      assert.equal(d, table.concat(data))
      assert.equal(-1, s:fileno())
      p_open = false
      assert.is_true(p:close())
    end)
  end

  it("resource_warning: a dropped file_wrapper's fd is closed by the collector", function()
    local f = assert(io.open(testfn, "rb"))
    local w = asyncore.file_wrapper(f)
    f:close()
    local dup = w:fileno()
    local open = support.fd_is_open(dup)
    if open == nil then pending("needs /proc to see the fd table") end
    assert.is_true(open)
    w = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_false(support.fd_is_open(dup))
  end)

  it("close_twice: close raises when the fd was closed behind its back, then is idempotent", function()
    local closefd, why = support.closefd_function()
    if not closefd then pending(why) end

    local f = assert(io.open(testfn, "rb"))
    local w = asyncore.file_wrapper(f)
    f:close()

    assert(closefd(w.fd)) -- file_wrapper dup'd the fd; close that one
    local ok, err = pcall(w.close, w)
    assert.is_false(ok)
    assert.truthy(tostring(err):match("^close: .*%(EBADF%)$"), tostring(err))

    assert.equal(-1, w.fd)
    assert.equal(-1, w:fileno())
    -- calling close twice does not fail
    assert.has_no.errors(function() w:close() end)
  end)
end)
