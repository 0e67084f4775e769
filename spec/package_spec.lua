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
end)
