-- The framing fuzzer's seed corpus as a regression test: spec/fuzz/framing_fuzz.c
-- built in its standalone mode (no libFuzzer) with the system C compiler and
-- run over every file of spec/fuzz/corpus.  Any mismatch with its models aborts.
local support = require "support"

-- The checkout's root, from this file's own path (spec/fuzz_corpus_spec.lua).
local here = debug.getinfo(1, "S").source:match("^@(.*)$") or "spec/fuzz_corpus_spec.lua"
local root = here:match("^(.*)/spec/[^/]*$") or "."
local cc = os.getenv("CC") or "cc"

local function have_cc()
  return os.execute("command -v " .. support.shell_quote(cc) .. " >/dev/null 2>&1") == true
end

describe("framing fuzzer corpus", function()
  it("passes every seed in spec/fuzz/corpus", function()
    if not have_cc() then
      pending("no C compiler (" .. cc .. ")")
      return
    end
    local q = support.shell_quote
    local files = {}
    local ls = assert(io.popen("ls " .. q(root .. "/spec/fuzz/corpus")))
    for name in ls:lines() do files[#files + 1] = q(root .. "/spec/fuzz/corpus/" .. name) end
    ls:close()
    assert(#files > 0, "the corpus is empty")

    local exe = support.tmppath(".framing_fuzz")
    local log = exe .. ".log"
    local build = ("%s -std=c99 -D_POSIX_C_SOURCE=200809L -DFRAMING_FUZZ_STANDALONE -I%s %s %s %s -o %s >%s 2>&1")
      :format(q(cc), q(root .. "/src"), q(root .. "/src/framing.c"), q(root .. "/src/buffer.c"),
              q(root .. "/spec/fuzz/framing_fuzz.c"), q(exe), q(log))
    local built = os.execute(build)
    local build_log = support.read_file(log)
    if not built then
      os.remove(log)
      error("building the fuzzer failed:\n" .. build_log)
    end

    local ok = os.execute(("%s %s >%s 2>&1"):format(q(exe), table.concat(files, " "), q(log)))
    local out = support.read_file(log)
    os.remove(exe)
    os.remove(log)
    assert(ok, "the fuzzer failed on the corpus:\n" .. out)
    assert.are.equal(("framing_fuzz: %d input(s) passed\n"):format(#files), out)
  end)
end)
