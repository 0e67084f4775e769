-- The rockspec builds what the Makefile builds: every C file in src/ is listed.
local support = require "support"

describe("rockspec", function()
  it("lists every C source in src/ and nothing else", function()
    local listed = {}
    for line in io.lines((io.popen("ls rockspec/*.rockspec"):read("l"))) do
      local source = line:match('^%s*"(src/[%w_]+%.c)",?%s*$')
      if source then listed[#listed + 1] = source end
    end
    table.sort(listed)
    local present = support.lines(io.popen("ls src/*.c"):read("a"))
    table.sort(present)
    assert.same(present, listed)
  end)

  it("builds a kqueue backend that compiles against the BSD declarations", function()
    -- Linux has no kqueue: the file must compile to nothing here, and to the
    -- backend with the BSD header (a stub in spec/stubs declares it).
    local cc = "cc -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fsyntax-only "
    for _, flags in ipairs { "", "-DAS_HAVE_KQUEUE=1 -idirafter spec/stubs " } do
      for _, file in ipairs { "src/backend_kqueue.c", "src/loop.c" } do
        local ok = os.execute("env -u LD_PRELOAD " .. cc .. flags .. file)
        assert.is_true(ok == true or ok == 0, flags .. file)
      end
    end
  end)
end)
