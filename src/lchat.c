/* async_chat's methods in C: the framing of what arrives and the output queue,
 * with Python 3.11 asynchat's semantics.  Lua is called only for the script's
 * own handlers, so a line protocol costs a found_terminator call per message. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "framing.h"
#include "lcore.h"

#define CHAT_MT "asyncore.chat_buffers"
#define CHAT_FIELD "_chat"
#define CLOSE_TOKEN 0    /* the close_when_done marker in the output queue */
#define UV_PRODUCERS 1   /* the buffers' user value: ref -> producer */

/* An async_chat's buffers, kept in its CHAT_FIELD. */
typedef struct as_chat {
    as_buf in;        /* received, not yet framed */
    as_buf incoming;  /* gathered by the built-in _collect_incoming_data */
    as_outq out;
    lua_Integer held; /* bytes passed on since the last string terminator */
    int last_token;   /* producers are numbered, never reused */
    int corked;       /* inside handle_read: replies wait, then leave in one send */
} as_chat;

static int chat_gc(lua_State *L)
{
    as_chat *c = luaL_checkudata(L, 1, CHAT_MT);
    as_buf_free(&c->in);
    as_buf_free(&c->incoming);
    as_outq_free(&c->out);
    return 0;
}

void as_open_chat(lua_State *L)
{
    luaL_newmetatable(L, CHAT_MT);
    lua_pushcfunction(L, chat_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

static void drop_producers(lua_State *L, int chat)
{
    lua_pushnil(L);
    lua_setiuservalue(L, chat, UV_PRODUCERS);
}

/* Pushes the producers table of the buffers at chat, made on first use. */
static void push_producers(lua_State *L, int chat)
{
    if (lua_getiuservalue(L, chat, UV_PRODUCERS) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, chat, UV_PRODUCERS);
}

/* Pushes the buffers of the channel at self (made on first use) and returns
 * them; the caller keeps them on the stack while Lua runs, so they stay alive
 * whatever the script does to the field. */
static as_chat *push_chat(lua_State *L, int self)
{
    luaL_checktype(L, self, LUA_TTABLE);
    lua_pushliteral(L, CHAT_FIELD);
    lua_rawget(L, self);
    as_chat *c = luaL_testudata(L, -1, CHAT_MT);
    if (c != NULL)
        return c;
    lua_pop(L, 1);
    c = lua_newuserdatauv(L, sizeof *c, 1); /* the producers table comes with the first */
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, CHAT_MT);
    lua_pushliteral(L, CHAT_FIELD);
    lua_pushvalue(L, -2);
    lua_rawset(L, self);
    return c;
}

static int nomemory(lua_State *L, const char *call)
{
    return luaL_error(L, "%s: out of memory", call);
}

static int is_builtin(lua_State *L, int self, const char *name, lua_CFunction fn)
{
    lua_getfield(L, self, name);
    int same = lua_tocfunction(L, -1) == fn;
    lua_pop(L, 1);
    return same;
}

/* The integer at idx, whole floats included; *ok says whether it was one. */
static lua_Integer to_integer(lua_State *L, int idx, int *ok)
{
    lua_Integer n = lua_tointegerx(L, idx, ok);
    if (!*ok || lua_type(L, idx) == LUA_TSTRING) {
        *ok = 0;
        n = 0;
    }
    return n;
}

/* A positive integer field of self: the buffer sizes. */
static size_t size_field(lua_State *L, int self, const char *name, const char *call)
{
    lua_getfield(L, self, name);
    int ok;
    lua_Integer n = to_integer(L, -1, &ok);
    if (!ok || n <= 0)
        luaL_error(L, "%s: %s must be a positive integer", call, name);
    lua_pop(L, 1);
    return n > AS_RECV_MAX ? AS_RECV_MAX : (size_t)n;
}

/* handle_error(err, traceback) for an OS error of call, as Python's
 * `except OSError: self.handle_error()`. */
static void report_oserror(lua_State *L, int self, const char *call, int err)
{
    lua_getfield(L, self, "handle_error");
    lua_pushvalue(L, self);
    const char *msg = as_push_oserror(L, call, err);
    luaL_traceback(L, L, msg, 1);
    lua_call(L, 3, 0);
}

/* self:name(arg) under a protected call: 1 result, or 0 with the error routed
 * to handle_error (ExitNow and Ctrl-C propagate). */
static int protected_method(lua_State *L, int self, const char *name, int would_block_quiet)
{
    int base = lua_gettop(L) - 1; /* the argument is on top */
    lua_getiuservalue(L, STATE, UV_MSGH);
    lua_getfield(L, self, name);
    lua_pushvalue(L, self);
    lua_pushvalue(L, base + 1);
    if (lua_pcall(L, 2, 1, base + 2) == LUA_OK) {
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
        return 1;
    }
    if (would_block_quiet &&
        (as_ends_with(L, -1, "(EAGAIN)") || as_ends_with(L, -1, "(EWOULDBLOCK)"))) {
        lua_settop(L, base);
        return 0;
    }
    as_route_error(L, self, 0);
    lua_settop(L, base);
    return 0;
}

/* ---- input: framing ---- */

/* set_terminator(term): a string of any length, a byte count, or nil */
int as_chat_set_terminator(lua_State *L)
{
    int kind = lua_type(L, 2);
    if (kind == LUA_TNUMBER) {
        int ok;
        lua_Integer n = to_integer(L, 2, &ok);
        luaL_argcheck(L, ok, 2, "the number of bytes must be an integer");
        luaL_argcheck(L, n >= 0, 2, "the number of bytes must be positive");
        lua_pushinteger(L, n);
        lua_replace(L, 2);
    } else if (kind != LUA_TSTRING && kind != LUA_TNIL && kind != LUA_TNONE) {
        return luaL_typeerror(L, 2, "string, integer or nil");
    }
    lua_settop(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushliteral(L, CHAT_FIELD);
    lua_rawget(L, 1);
    as_chat *c = luaL_testudata(L, -1, CHAT_MT); /* none yet: nothing held */
    if (c != NULL)
        c->held = 0;
    lua_pushvalue(L, 2);
    lua_setfield(L, 1, "terminator");
    return 0;
}

int as_chat_get_terminator(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "terminator");
    return 1;
}

/* _collect_incoming_data(data): the built-in collector, kept in C */
int as_chat_collect(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    as_chat *c = push_chat(L, 1);
    if (as_buf_append(&c->incoming, data, len) != 0)
        return nomemory(L, "_collect_incoming_data");
    return 0;
}

/* _get_data() -> what _collect_incoming_data gathered; the gathering restarts */
int as_chat_get_data(lua_State *L)
{
    as_chat *c = push_chat(L, 1);
    lua_pushlstring(L, as_buf_bytes(&c->incoming), as_buf_len(&c->incoming));
    as_buf_clear(&c->incoming);
    return 1;
}

/* The max_in_buffer limit; 0 when there is none. */
static int in_limit(lua_State *L, lua_Integer *limit)
{
    lua_getfield(L, 1, "max_in_buffer");
    int ok, has_limit = !lua_isnil(L, -1);
    *limit = to_integer(L, -1, &ok);
    if (has_limit && !ok)
        luaL_error(L, "handle_read: max_in_buffer must be an integer or nil");
    lua_pop(L, 1);
    return has_limit;
}

static void over_limit(lua_State *L, lua_Integer held, lua_Integer limit)
{
    lua_pushfstring(L, "async_chat: %I bytes without a terminator exceed max_in_buffer (%I)", held,
                    limit);
    lua_error(L);
}

/* Passes the first n bytes of c->in to collect_incoming_data.  Under a string
 * terminator, max_in_buffer bounds what one message may hold: past it the
 * bytes stay in c->in and the error reaches handle_error.  Every lookup comes
 * before c->in is read: a lookup may run Lua that changes it. */
static void collect(lua_State *L, as_chat *c, size_t n, int string_terminator)
{
    lua_Integer limit = 0;
    int has_limit = string_terminator && in_limit(L, &limit);
    int builtin = is_builtin(L, 1, "collect_incoming_data", as_chat_collect);
    if (!builtin)
        lua_getfield(L, 1, "collect_incoming_data");
    if (n > as_buf_len(&c->in))
        n = as_buf_len(&c->in);
    if (n == 0) { /* the lookups emptied the input */
        lua_settop(L, lua_gettop(L) - !builtin);
        return;
    }
    lua_Integer held = c->held + (lua_Integer)n;
    if (has_limit && held > limit)
        over_limit(L, held, limit);
    if (builtin) {
        if (as_buf_append(&c->incoming, as_buf_bytes(&c->in), n) != 0)
            nomemory(L, "handle_read");
    } else {
        lua_pushvalue(L, 1);
        lua_pushlstring(L, as_buf_bytes(&c->in), n);
        lua_call(L, 2, 0);
    }
    if (string_terminator)
        c->held = held;
}

static void push_terminator(lua_State *L)
{
    if (is_builtin(L, 1, "get_terminator", as_chat_get_terminator)) {
        lua_getfield(L, 1, "terminator");
    } else {
        lua_getfield(L, 1, "get_terminator");
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
    }
}

/* Python's handle_read loop over ac_in_buffer.  Each step leaves c->in as it
 * must be if the next Lua call raises: the bytes not yet passed on. */
static void frame(lua_State *L, as_chat *c)
{
    int top = lua_gettop(L);
    while (as_buf_len(&c->in) > 0) {
        lua_settop(L, top);
        push_terminator(L);
        size_t avail = as_buf_len(&c->in), tlen = 0;
        const char *term = NULL;
        lua_Integer count = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            term = lua_tolstring(L, -1, &tlen);
        else if (lua_isinteger(L, -1))
            count = lua_tointeger(L, -1);
        else if (!lua_isnil(L, -1))
            luaL_error(L, "handle_read: the terminator must be a string, an integer or nil, not %s",
                       luaL_typename(L, -1));

        if (term != NULL && tlen > 0) {
            as_frame f = as_frame_string(as_buf_bytes(&c->in), avail, term, tlen);
            if (f.collect > 0)
                collect(L, c, f.collect, 1);
            as_buf_consume(&c->in, f.consume);
            if (!f.found)
                break; /* at most a partial terminator is left */
            c->held = 0;
            as_call_method(L, 1, "found_terminator");
        } else if (count > 0) {
            if ((lua_Integer)avail < count) {
                collect(L, c, avail, 0);
                as_buf_consume(&c->in, avail);
                lua_pushinteger(L, count - (lua_Integer)avail);
                lua_setfield(L, 1, "terminator");
            } else {
                collect(L, c, (size_t)count, 0);
                as_buf_consume(&c->in, (size_t)count);
                lua_pushinteger(L, 0);
                lua_setfield(L, 1, "terminator");
                c->held = 0;
                as_call_method(L, 1, "found_terminator");
            }
        } else { /* nil, "" or 0: no framing */
            collect(L, c, avail, 0);
            as_buf_consume(&c->in, avail);
        }
    }
    lua_settop(L, top);
}

static char *scratch(lua_State *L, size_t size)
{
    as_state *st = as_live_state(L, "handle_read");
    if (st->scratch_size < size) {
        char *p = realloc(st->scratch, size);
        if (p == NULL)
            nomemory(L, "handle_read");
        st->scratch = p;
        st->scratch_size = size;
    }
    return st->scratch;
}

/* One recv into c->in, as Python's handle_read does it: 0 when there is
 * nothing to frame (would block, or the error went to handle_error). */
static int receive(lua_State *L, as_chat *c)
{
    size_t size = size_field(L, 1, "ac_in_buffer_size", "handle_read");
    if (is_builtin(L, 1, "recv", as_dispatcher_recv)) {
        as_handle *h = as_channel_handle(L, 1, "recv");
        char *buf = scratch(L, size);
        long n = as_handle_recv(h, buf, size);
        int err = errno;
        if (n > 0) {
            if (as_buf_append(&c->in, buf, (size_t)n) != 0)
                nomemory(L, "handle_read");
            return 1;
        }
        if (n == 0 || as_is_disconnect(err)) {
            as_call_method(L, 1, "handle_close");
            return 1; /* what is left is framed still, as in Python */
        }
        if (err != EAGAIN && err != EWOULDBLOCK)
            report_oserror(L, 1, "recv", err);
        return 0;
    }
    lua_pushinteger(L, (lua_Integer)size);
    if (!protected_method(L, 1, "recv", 1))
        return 0;
    size_t len;
    const char *data = lua_tolstring(L, -1, &len);
    if (data == NULL)
        luaL_error(L, "handle_read: recv returned a %s, not a string", luaL_typename(L, -1));
    if (as_buf_append(&c->in, data, len) != 0)
        nomemory(L, "handle_read");
    lua_pop(L, 1);
    return 1;
}

/* While a message is over max_in_buffer (a handle_error that did not close),
 * nothing more is read: the limit bounds memory too. */
static void check_held(lua_State *L, as_chat *c)
{
    lua_Integer limit;
    if (c->held == 0 && as_buf_len(&c->in) == 0)
        return;
    push_terminator(L);
    size_t tlen;
    const char *term = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &tlen) : NULL;
    if (term == NULL || tlen == 0 || !in_limit(L, &limit)) {
        lua_pop(L, 1);
        return;
    }
    /* a whole message waiting (a handler failed before it) is framed as usual */
    int whole = as_find(as_buf_bytes(&c->in), as_buf_len(&c->in), term, tlen) != NULL;
    lua_pop(L, 1);
    lua_Integer held = c->held + (lua_Integer)as_buf_len(&c->in);
    if (!whole && held > limit)
        over_limit(L, held, limit);
}

static void initiate_send(lua_State *L, int self, as_chat *c, int chat);

/* Replies pushed while one read is framed are sent together when it is done
 * (one send, not one per message: with many small sends Nagle's algorithm
 * would hold most of them back).  Only with the built-in initiate_send and
 * send, whose calls the script cannot count. */
int as_chat_handle_read(lua_State *L)
{
    lua_settop(L, 1);
    as_chat *c = push_chat(L, 1);
    check_held(L, c);
    if (!receive(L, c))
        return 0;
    c->corked = is_builtin(L, 1, "initiate_send", as_chat_initiate_send) &&
                is_builtin(L, 1, "send", as_dispatcher_send);
    frame(L, c);
    if (c->corked) {
        c->corked = 0;
        initiate_send(L, 1, c, 2);
    }
    return 0;
}

/* _flush(): what a read's handlers pushed goes now (close() calls it first, so
 * a reply pushed just before close() is sent, as in Python) */
int as_chat_flush(lua_State *L)
{
    lua_settop(L, 1);
    as_chat *c = push_chat(L, 1);
    if (c->corked) {
        c->corked = 0;
        initiate_send(L, 1, c, 2);
    }
    return 0;
}

/* ---- output: the queue ---- */

/* What a failed send means: nothing (would block), handle_close (the peer is
 * gone), or handle_error. */
static void send_failed(lua_State *L, int self, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK)
        return;
    if (as_is_disconnect(err))
        as_call_method(L, self, "handle_close");
    else
        report_oserror(L, self, "send", err);
}

/* Asks the producer behind token for its next piece, which goes in front of it
 * (as Python's appendleft); a finished producer leaves the queue. */
static void produce(lua_State *L, as_chat *c, int chat, int token)
{
    int top = lua_gettop(L);
    push_producers(L, chat);
    lua_rawgeti(L, top + 1, token);
    if (lua_isfunction(L, -1)) {
        lua_call(L, 0, 1);
    } else {
        lua_getfield(L, -1, "more");
        lua_insert(L, -2);
        lua_call(L, 1, 1);
    }
    size_t len = 0;
    int kind = lua_type(L, -1);
    if (kind != LUA_TNIL && kind != LUA_TSTRING)
        luaL_error(L, "initiate_send: a producer returned a %s, not a string", luaL_typename(L, -1));
    const char *data = lua_tolstring(L, -1, &len);
    if (len > 0) {
        if (as_outq_push_front_bytes(&c->out, data, len) != 0)
            nomemory(L, "initiate_send");
    } else {
        as_out_entry *e = as_outq_front(&c->out);
        if (e != NULL && e->kind == AS_OUT_TOKEN && e->token == token)
            as_outq_pop(&c->out);
        lua_pushnil(L);
        lua_rawseti(L, top + 1, token);
    }
    lua_settop(L, top);
}

/* Python's initiate_send: producers run until there are bytes, then one send
 * of at most ac_out_buffer_size bytes.  The buffers are at chat. */
static void initiate_send(lua_State *L, int self, as_chat *c, int chat)
{
    for (;;) {
        /* Lookups first: they may run Lua that changes the queue. */
        if (as_outq_empty(&c->out) || !as_truthy_field(L, self, "connected"))
            return;
        as_out_entry *e = as_outq_front(&c->out);
        if (e == NULL)
            return;
        if (e->kind == AS_OUT_TOKEN) {
            int token = e->token;
            if (token == CLOSE_TOKEN) {
                as_outq_pop(&c->out);
                as_call_method(L, self, "handle_close");
                return;
            }
            produce(L, c, chat, token);
            continue;
        }
        size_t n = size_field(L, self, "ac_out_buffer_size", "initiate_send");
        as_handle *h = NULL;
        if (is_builtin(L, self, "send", as_dispatcher_send))
            h = as_channel_handle(L, self, "send");
        e = as_outq_front(&c->out);
        if (e == NULL || e->kind != AS_OUT_BYTES)
            continue;
        if (n > as_buf_len(&e->bytes))
            n = as_buf_len(&e->bytes);
        if (h != NULL) {
            long sent = as_handle_send(h, as_buf_bytes(&e->bytes), n);
            if (sent > 0)
                as_outq_consume(&c->out, (size_t)sent);
            else if (sent < 0)
                send_failed(L, self, errno);
            return;
        }
        lua_pushlstring(L, as_buf_bytes(&e->bytes), n);
        if (protected_method(L, self, "send", 0)) {
            lua_Integer sent = lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (sent > 0)
                as_outq_consume(&c->out, (size_t)sent);
        }
        return;
    }
}

/* Calls self:initiate_send(), in C when it is the built-in one. */
static void start_sending(lua_State *L, int self, as_chat *c, int chat)
{
    if (is_builtin(L, self, "initiate_send", as_chat_initiate_send))
        initiate_send(L, self, c, chat);
    else
        as_call_method(L, self, "initiate_send");
}

int as_chat_initiate_send(lua_State *L)
{
    lua_settop(L, 1);
    as_chat *c = push_chat(L, 1);
    initiate_send(L, 1, c, 2);
    return 0;
}

int as_chat_handle_write(lua_State *L)
{
    lua_settop(L, 1);
    as_chat *c = push_chat(L, 1);
    c->corked = 0;
    start_sending(L, 1, c, 2);
    return 0;
}

/* push(data): queue data and start sending it.  With nothing queued, the
 * first piece goes straight from the string to the socket. */
int as_chat_push(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    lua_settop(L, 2);
    as_chat *c = push_chat(L, 1);
    if (c->corked) {
        if (as_outq_push_bytes(&c->out, data, len) != 0)
            return nomemory(L, "push");
        as_touch_channel(L, 1);
        return 0;
    }
    if (as_outq_empty(&c->out) && is_builtin(L, 1, "initiate_send", as_chat_initiate_send) &&
        is_builtin(L, 1, "send", as_dispatcher_send) && as_truthy_field(L, 1, "connected")) {
        size_t n = size_field(L, 1, "ac_out_buffer_size", "push");
        long sent = as_handle_send(as_channel_handle(L, 1, "send"), data, n < len ? n : len);
        int err = errno;
        size_t done = sent > 0 ? (size_t)sent : 0;
        if (as_outq_push_bytes(&c->out, data + done, len - done) != 0)
            return nomemory(L, "push");
        if (done < len)
            as_touch_channel(L, 1); /* now it waits to write */
        if (sent < 0)
            send_failed(L, 1, err);
        return 0;
    }
    if (as_outq_push_bytes(&c->out, data, len) != 0)
        return nomemory(L, "push");
    as_touch_channel(L, 1);
    start_sending(L, 1, c, 3);
    return 0;
}

/* push_with_producer(producer): a table whose more() returns "" when done, a
 * function that returns nil when done, or a string (queued whole) */
int as_chat_push_with_producer(lua_State *L)
{
    int kind = lua_type(L, 2);
    if (kind == LUA_TTABLE) {
        /* more must be callable: a function, or a value with __call */
        lua_getfield(L, 2, "more");
        int callable = lua_isfunction(L, -1) || luaL_getmetafield(L, -1, "__call") != LUA_TNIL;
        kind = callable ? LUA_TTABLE : LUA_TNIL;
    }
    if (kind != LUA_TTABLE && kind != LUA_TFUNCTION && kind != LUA_TSTRING)
        return luaL_typeerror(L, 2, "producer table with more(), function or string");
    lua_settop(L, 2);
    as_chat *c = push_chat(L, 1);
    if (kind == LUA_TSTRING) {
        size_t len;
        const char *data = lua_tolstring(L, 2, &len);
        if (as_outq_push_bytes(&c->out, data, len) != 0)
            return nomemory(L, "push_with_producer");
    } else {
        if (c->last_token == INT_MAX)
            c->last_token = CLOSE_TOKEN; /* numbers of producers long gone come back */
        int token = ++c->last_token;
        if (as_outq_push_token(&c->out, token) != 0)
            return nomemory(L, "push_with_producer");
        push_producers(L, 3);
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, token);
        lua_pop(L, 1);
    }
    as_touch_channel(L, 1);
    if (!c->corked)
        start_sending(L, 1, c, 3);
    return 0;
}

/* close_when_done(): close once everything queued before it has been sent */
int as_chat_close_when_done(lua_State *L)
{
    as_chat *c = push_chat(L, 1);
    if (as_outq_push_token(&c->out, CLOSE_TOKEN) != 0)
        return nomemory(L, "close_when_done");
    as_touch_channel(L, 1);
    return 0;
}

int as_chat_wants_write(lua_State *L, int obj)
{
    as_chat *c = NULL;
    if (lua_type(L, obj) == LUA_TTABLE) {
        lua_pushliteral(L, CHAT_FIELD);
        lua_rawget(L, obj);
        c = luaL_testudata(L, -1, CHAT_MT);
        lua_pop(L, 1);
    }
    return (c != NULL && !as_outq_empty(&c->out)) || !as_truthy_field(L, obj, "connected");
}

/* writable(): something is queued, or the connect is still to complete */
int as_chat_writable(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushboolean(L, as_chat_wants_write(L, 1));
    return 1;
}

int as_chat_discard_buffers(lua_State *L)
{
    lua_settop(L, 1);
    as_chat *c = push_chat(L, 1);
    as_buf_clear(&c->in);
    as_buf_clear(&c->incoming);
    as_outq_clear(&c->out);
    c->held = 0;
    drop_producers(L, 2);
    as_touch_channel(L, 1);
    return 0;
}

/* _out_buffered() -> bytes queued and not yet sent (producers not counted) */
int as_chat_out_buffered(lua_State *L)
{
    as_chat *c = push_chat(L, 1);
    lua_pushinteger(L, (lua_Integer)c->out.bytes);
    return 1;
}

/* find_prefix_at_end(haystack, needle) */
int as_find_prefix_at_end(lua_State *L)
{
    size_t n, nlen;
    const char *hay = luaL_checklstring(L, 1, &n);
    const char *needle = luaL_checklstring(L, 2, &nlen);
    if (nlen == 0) {
        lua_pushinteger(L, -1); /* as Python's: len(needle) - 1 */
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)as_prefix_at_end(hay, n, needle, nlen));
    return 1;
}
