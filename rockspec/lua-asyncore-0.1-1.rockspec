package = "lua-asyncore"
version = "0.1-1"
source = {
   url = "git+file:///lua-asyncore",
}
description = {
   summary = "Python's asyncore/asynchat event loop for Lua 5.4, with a C core",
   detailed = [[
A channel map and a select/poll loop in C, dispatcher classes in Lua with
Python asyncore's semantics: write network protocol prototypes in Lua.
]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
build = {
   type = "builtin",
   modules = {
      asyncore = "lua/asyncore.lua",
      asynchat = "lua/asynchat.lua",
      ["asyncore.core"] = {
         sources = {
            "src/backend_epoll.c",
            "src/backend_kqueue.c",
            "src/backend_poll.c",
            "src/backend_select.c",
            "src/buffer.c",
            "src/errnames.c",
            "src/framing.c",
            "src/grow.c",
            "src/laddr.c",
            "src/lasyncore.c",
            "src/lchat.c",
            "src/ldispatcher.c",
            "src/lerror.c",
            "src/loop.c",
            "src/lpass.c",
            "src/lregistry.c",
            "src/lsocket.c",
            "src/ltimer.c",
            "src/timers.c",
         },
         defines = { "_POSIX_C_SOURCE=200809L" },
         libraries = { "m" },
      },
   },
}
