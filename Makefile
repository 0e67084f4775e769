# lua-asyncore: build the C core, run the demo and the tests.
LUA        ?= lua5.4
LUA_INC    ?= /usr/include/lua5.4
CC         ?= cc
CFLAGS     ?= -O2 -g
WARN        = -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -fPIC
BUILD      ?= build
SRC         = $(wildcard src/*.c)
OBJ         = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRC))
CORE        = $(BUILD)/asyncore/core.so
BUSTED     ?= /usr/bin/busted
DEBIAN_PKGS = lua5.4 liblua5.4-dev lua-busted luarocks gcc make python3 netcat-openbsd \
              curl wrk redis-tools telnet bsdutils
BENCH_PKGS  = lua-luv lua-cqueues lua-socket python3

export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

.PHONY: all deps bench-deps demo test bench bench-timers soak fuzz asan valgrind rock clean

all: $(CORE)

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -I$(LUA_INC) -c $< -o $@

$(CORE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJ) -lm

# Installs the Debian packages the build, demo and tests need (root or sudo).
deps:
	@missing=""; for p in $(DEBIAN_PKGS); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi

# The peers bench/run measures against (Debian packages).
bench-deps:
	@$(MAKE) --no-print-directory deps DEBIAN_PKGS="$(BENCH_PKGS)"

# Every echo server side by side, several rounds; the table goes to
# build/bench/results.md (bench/RESULTS.md records a run).
bench: bench-deps $(CORE)
	bash bench/run $(BENCH_ARGS)
	$(LUA) bench/timers.lua

# 1,000 to 100,000 timers on the C heap against luv's, CPU per timer.
bench-timers: bench-deps $(CORE)
	$(LUA) bench/timers.lua $(TIMER_ARGS)

# 2,000 connections with traffic for SOAK_TIME seconds (default 60) against
# the dispatcher_with_send and async_chat echo servers: fds and RSS must stay flat.
soak: $(CORE)
	bash bench/soak $(SOAK_TIME)

# libFuzzer on the pure-C framing and output queue (src/framing.c, src/buffer.c),
# checked against a model: built with clang into $(BUILD)/fuzz, run FUZZ_TIME
# seconds on a copy of the seed corpus (spec/fuzz/corpus stays as committed).
# A crash leaves $(BUILD)/fuzz/crash-*.
FUZZ_CC   ?= clang
FUZZ_TIME ?= 60
fuzz:
	@mkdir -p $(BUILD)/fuzz/corpus
	$(FUZZ_CC) -g -O1 -std=c99 -D_POSIX_C_SOURCE=200809L -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -Isrc src/framing.c src/buffer.c spec/fuzz/framing_fuzz.c \
	  -o $(BUILD)/fuzz/framing_fuzz
	cp spec/fuzz/corpus/* $(BUILD)/fuzz/corpus/
	cd $(BUILD)/fuzz && ./framing_fuzz -max_total_time=$(FUZZ_TIME) -print_final_stats=1 corpus

demo: $(CORE)
	$(LUA) examples/demo.lua

test: $(CORE)
	$(LUA) spec/run.lua $(BUSTED)

# The suite under AddressSanitizer + UBSan: the core rebuilt instrumented, the
# runtime preloaded into the uninstrumented interpreter.  Leaks are valgrind's
# job: peers the specs start (python3, sh) inherit the preload and leak by design.
ASAN_LIB = $(shell $(CC) -print-file-name=libasan.so)
UBSAN_LIB = $(shell $(CC) -print-file-name=libubsan.so)
asan: $(CORE)
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" build/asan/asyncore/core.so
	ASYNCORE_BUILD=build/asan LD_PRELOAD="$(ASAN_LIB) $(UBSAN_LIB)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(LUA) spec/run.lua $(BUSTED)

# The suite under valgrind's memcheck: any error or leak fails the run.
valgrind: $(CORE)
	valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
	  --errors-for-leak-kinds=definite,indirect --track-fds=no \
	  $(LUA) spec/run.lua $(BUSTED)

# Installs the rock offline into build/rock, as a user would with luarocks make.
rock:
	luarocks --lua-version 5.4 make rockspec/lua-asyncore-*.rockspec --tree $(CURDIR)/$(BUILD)/rock
	@rm -f src/*.o asyncore/core.so; rmdir asyncore 2>/dev/null || true

clean:
	rm -rf $(BUILD)
