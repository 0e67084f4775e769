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
DEBIAN_PKGS = lua5.4 liblua5.4-dev lua-busted luarocks gcc make python3 netcat-openbsd

export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

.PHONY: all deps demo test clean

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

demo: $(CORE)
	$(LUA) examples/demo.lua

test: $(CORE)
	$(LUA) spec/run.lua $(BUSTED)

clean:
	rm -rf $(BUILD)
