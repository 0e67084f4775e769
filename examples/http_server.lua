-- An HTTP/1.1 server prototype on asynchat: one async_chat per connection
-- frames each request (the head up to "\r\n\r\n", then Content-Length bytes of
-- body with an integer terminator) and answers requests in the order they
-- came, so pipelining works.  Connections stay open between requests for
-- HTTP/1.1 unless the client sends "Connection: close", and for HTTP/1.0 only
-- when it asks for "Connection: keep-alive".
--
-- Routes:  GET|HEAD /          a short text page
--          GET|HEAD /bytes/N   N bytes (N <= 10 MiB), byte i being i % 256
--          POST /echo          the request body, sent back
-- Other paths get 404, other methods 405 (with Allow), a malformed request 400
-- and a chunked request body 411 (both then close the connection).  Every
-- response carries Content-Length and "Server: lua-asyncore-example".
--
-- As a script:  lua5.4 examples/http_server.lua [HOST [PORT]]
--   (default 127.0.0.1 8080; port 0 picks a free one) prints
--   "http server listening on HOST port N", then serves until killed.
-- As a module:  local HTTPServer = require "http_server"
--               local server = HTTPServer(host, port [, map])
--   HTTPServer.Handler is the per-connection class; override its route(req)
--   to serve other pages.
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
local asynchat = require "asynchat"

local HEAD_LIMIT = 64 * 1024         -- the most bytes of request line + headers
local MAX_BODY = 16 * 1024 * 1024    -- the largest request body read
local MAX_BYTES = 10 * 1024 * 1024   -- the largest /bytes/N
local MAX_PENDING = 16               -- responses queued before reading pauses
local CHUNK = 64 * 1024              -- producer piece size (= ac_out_buffer_size)

local REASONS = {
  [100] = "Continue", [200] = "OK", [400] = "Bad Request", [404] = "Not Found",
  [405] = "Method Not Allowed", [411] = "Length Required", [413] = "Content Too Large",
  [417] = "Expectation Failed", [431] = "Request Header Fields Too Large",
  [501] = "Not Implemented", [505] = "HTTP Version Not Supported",
}

local INDEX = "Hello from lua-asyncore!\n\n"
  .. "GET /bytes/N   N bytes\nPOST /echo     your body, sent back\n"

local TOKEN = "^[%w!#$%%&'*+.^_`|~-]+$"

-- 64 KiB of the /bytes pattern.  CHUNK is a multiple of 256, so every piece of
-- a body starts at a multiple of 256 and is a prefix of this block.
local BLOCK
do
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  BLOCK = table.concat(bytes):rep(CHUNK // 256)
end

-- A function producer for n bytes of the pattern: the body is never held
-- whole, one piece is made each time the previous one has gone out.
local function pattern_producer(n)
  return function()
    if n <= 0 then return nil end
    local piece = n >= CHUNK and BLOCK or BLOCK:sub(1, n)
    n = n - #piece
    return piece
  end
end

local function text(s) return { ["Content-Type"] = "text/plain; charset=utf-8" }, s end

local function not_allowed(allow)
  return 405, { Allow = allow, ["Content-Type"] = "text/plain; charset=utf-8" }, "method not allowed\n"
end

local HTTPHandler = asynchat.async_chat:subclass {
  __name = "HTTPHandler",

  init = function(self, sock, map)
    asynchat.async_chat.init(self, sock, map)
    self.max_in_buffer = HEAD_LIMIT -- only bounds the string terminator: the head
    self.pending = 0                -- responses not yet handed to the kernel whole
    self.finished = false           -- no more requests are read once set
    self:read_head()
  end,

  read_head = function(self)
    self.request = nil
    self.data = {}
    self:set_terminator("\r\n\r\n")
  end,

  collect_incoming_data = function(self, data)
    if not self.finished then self.data[#self.data + 1] = data end
  end,

  found_terminator = function(self)
    if self.finished then return end
    local data = table.concat(self.data)
    self.data = {}
    local req = self.request
    if req then
      req.body = data
      self:read_head()
      self:respond(req)
    else
      self:parse_head(data)
    end
  end,

  -- Reading pauses while many responses are queued (a client pipelining
  -- without reading), and stops after a half-close.
  readable = function(self)
    return not self.eof and self.pending < MAX_PENDING
  end,

  -- A client that half-closes after its requests still gets the answers; a
  -- second close (the peer is gone, or the answers are out) closes for real.
  handle_close = function(self)
    if self.pending > 0 and not self.eof then
      self.eof = true
      self:finish()
    else
      self:close()
    end
  end,

  handle_error = function(self, err, traceback)
    if not self.finished and type(err) == "string" and err:find("max_in_buffer", 1, true) then
      self:reject(431, "request head too large\n")
    else
      asynchat.async_chat.handle_error(self, err, traceback)
    end
  end,

  -- Stop reading requests and close once everything queued has been sent.
  finish = function(self)
    self.finished = true
    self.data = {}
    self:set_terminator(nil) -- whatever else arrives is read and dropped
    self:close_when_done()
  end,

  -- An answer to a request that cannot be framed or served: the connection closes.
  reject = function(self, status, message)
    self:send_response({ method = "", keep_alive = false }, status, text(message))
  end,

  parse_head = function(self, head)
    head = head:gsub("^[\r\n]+", "") -- RFC 9112 2.2: ignore CRLFs before a request line
    if head == "" then return end
    local lines = {}
    for line in (head .. "\r\n"):gmatch("(.-)\r\n") do lines[#lines + 1] = line end
    local method, target, major, minor = lines[1]:match("^(%S+) (%S+) HTTP/(%d)%.(%d)$")
    if not method or not method:find(TOKEN) then
      return self:reject(400, "malformed request line\n")
    end
    if major ~= "1" then return self:reject(505, "only HTTP/1.x is served\n") end
    local headers = {}
    for i = 2, #lines do
      local name, value = lines[i]:match("^([^:]+):[ \t]*(.-)[ \t]*$")
      -- obsolete line folding, a space before the colon, a bad name: all 400
      if not name or not name:find(TOKEN) then
        return self:reject(400, "malformed header line\n")
      end
      name = name:lower()
      if headers[name] and name == "content-length" and headers[name] ~= value then
        return self:reject(400, "conflicting Content-Length\n")
      end
      headers[name] = headers[name] and name ~= "content-length"
        and headers[name] .. ", " .. value or value
    end
    local http11 = minor ~= "0"
    local req = {
      method = method, target = target, headers = headers, body = "",
      version = http11 and "HTTP/1.1" or "HTTP/1.0",
    }
    local close, keep = false, false
    for token in (headers.connection or ""):lower():gmatch("[^,%s]+") do
      if token == "close" then close = true elseif token == "keep-alive" then keep = true end
    end
    req.keep_alive = not close and (http11 or keep)
    if http11 and not headers.host then return self:reject(400, "Host header missing\n") end
    -- Without Content-Length the end of a body cannot be found here.
    local coding = headers["transfer-encoding"]
    if coding then
      if coding:lower():match("([^,%s]+)%s*$") == "chunked" then
        return self:reject(411, "chunked request bodies are not accepted: send Content-Length\n")
      end
      return self:reject(501, "unsupported Transfer-Encoding\n")
    end
    local length = headers["content-length"] or "0"
    if not length:find("^%d+$") or #length > 15 then
      return self:reject(400, "malformed Content-Length\n")
    end
    length = math.tointeger(tonumber(length))
    if length > MAX_BODY then return self:reject(413, "request body too large\n") end
    local expect = headers.expect
    if expect and http11 then
      if expect:lower() ~= "100-continue" then return self:reject(417, "unknown expectation\n") end
      if length > 0 then self:push("HTTP/1.1 100 Continue\r\n\r\n") end
    end
    if length > 0 then
      self.request = req
      self:set_terminator(length)
    else
      self:respond(req)
    end
  end,

  respond = function(self, req)
    self:send_response(req, self:route(req))
  end,

  -- route(req) -> status, headers, body [, length]: headers a table of extra
  -- header fields, body a string or a producer (then length is its size).
  -- req has method, target, version, headers (lower-case names), body.
  route = function(self, req) -- luacheck: no unused args
    local method = req.method
    -- absolute-form targets name the path after the authority
    local path = (req.target:match("^%a[%w+.-]*://[^/]*(/.*)$") or req.target):match("^[^?#]*")
    local get = method == "GET" or method == "HEAD"
    if path == "/" then
      if not get then return not_allowed("GET, HEAD") end
      return 200, text(INDEX)
    end
    local n = path:match("^/bytes/(%d+)$")
    if n then
      if not get then return not_allowed("GET, HEAD") end
      n = #n <= 9 and math.tointeger(tonumber(n))
      if not n or n > MAX_BYTES then
        -- a well-framed request: the connection stays usable
        return 400, text(("at most %d bytes\n"):format(MAX_BYTES))
      end
      return 200, { ["Content-Type"] = "application/octet-stream" }, pattern_producer(n), n
    end
    if path == "/echo" then
      if method ~= "POST" then return not_allowed("POST") end
      return 200, { ["Content-Type"] = req.headers["content-type"] or "application/octet-stream" }, req.body
    end
    return 404, text("not found\n")
  end,

  send_response = function(self, req, status, headers, body, length)
    local close = not req.keep_alive
    length = length or #body
    local lines = {
      ("HTTP/1.1 %d %s"):format(status, REASONS[status] or "Unknown"),
      "Server: lua-asyncore-example",
      "Content-Length: " .. length,
    }
    local names = {}
    for name in pairs(headers or {}) do names[#names + 1] = name end
    table.sort(names) -- a stable order
    for _, name in ipairs(names) do lines[#lines + 1] = name .. ": " .. headers[name] end
    if close then
      lines[#lines + 1] = "Connection: close"
    elseif req.version == "HTTP/1.0" then
      lines[#lines + 1] = "Connection: keep-alive"
    end
    local head = table.concat(lines, "\r\n") .. "\r\n\r\n"
    self.pending = self.pending + 1
    if req.method == "HEAD" or length == 0 then
      self:push(head)
    elseif type(body) == "string" and #body <= CHUNK then
      self:push(head .. body) -- one send for a small response
    else
      self:push(head)
      if type(body) == "string" then self:push(body) else self:push_with_producer(body) end
    end
    -- Reached only when everything before it has been sent.
    self:push_with_producer(function() self.pending = self.pending - 1 end)
    if close then self:finish() end
  end,
}

local HTTPServer = asyncore.dispatcher:subclass {
  __name = "HTTPServer",
  Handler = HTTPHandler,

  -- HTTPServer(host, port [, map]): listening; its handlers join the same map.
  init = function(self, host, port, map)
    asyncore.dispatcher.init(self, nil, map)
    self.map = map
    self:create_socket(host:find(":", 1, true) and asyncore.AF_INET6 or asyncore.AF_INET)
    self:set_reuse_addr()
    self:bind(host, port)
    self:listen(128) -- room for load generators that open many connections at once
  end,

  handle_accepted = function(self, sock)
    self.Handler(sock, self.map)
  end,
}

if script then
  local host = arg[1] or "127.0.0.1"
  local port = math.tointeger(tonumber(arg[2] or "8080"))
  if port == nil then
    io.stderr:write("usage: lua5.4 examples/http_server.lua [HOST [PORT]]\n")
    os.exit(2)
  end
  io.stdout:setvbuf("line")
  local server = HTTPServer(host, port)
  local bound_host, bound_port = server:getsockname()
  print(("http server listening on %s port %d"):format(bound_host, bound_port))
  asyncore.loop()
end

return HTTPServer
