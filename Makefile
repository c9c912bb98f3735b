# scout -- build, test, run.  `make` builds build/scout; `make test` installs
# what is missing and runs every suite; `make run` shows discovery working.
#
# User flags are appended, never replaced (CFLAGS, LDFLAGS, MY_CFLAGS), so
# luarocks and sanitizer builds can pass theirs through.

# Install layout.  LUA_DIR is compiled into the agent (where it looks for its
# Lua runtime when lua/ is not beside the binary); LUADIR is where `install`
# puts the modules, the same place unless a packager stages them elsewhere (the
# rockspec does: luarocks moves them into the tree's share/lua/5.1 afterwards).
# libscout.so goes in a package.cpath directory, which is where scout.shm
# looks for it: $(PREFIX)/lib/lua/5.1 is on LuaJIT's default cpath for
# PREFIX=/usr/local.  DESTDIR prefixes every install path, never LUA_DIR.
PREFIX   ?= /usr/local
DESTDIR  ?=
LUA_DIR  ?= $(PREFIX)/share/scout/lua
LUADIR   ?= $(LUA_DIR)
LIBDIR   ?= $(PREFIX)/lib/lua/5.1
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man

CC       ?= cc
CFLAGS   ?= -O2 -g
LUAJIT_CFLAGS ?= $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
LUAJIT_LIBS   ?= $(shell pkg-config --libs luajit 2>/dev/null || echo -lluajit-5.1)
ZK_CFLAGS ?=
EV_CFLAGS ?=
ZK_LIBS   ?= -lzookeeper_st
EV_LIBS   ?= -lev
HTTP_LIBS ?= -lhttp_parser
JSON_LIBS ?= -ljansson
# libcurl and libsystemd are not linked: the client commands dlopen() libcurl
# (agent/client/libcurl.h) and sdnotify.c libsystemd under systemd only, so
# the agent's start does not map their ~30 libraries; curl's headers are needed
DL_LIBS   ?= -ldl

FINAL_CFLAGS  = -std=gnu11 -pthread -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation \
                -iquote agent -iquote lib $(LUAJIT_CFLAGS) $(ZK_CFLAGS) $(EV_CFLAGS) -DSCOUT_LUA_DIR='"$(LUA_DIR)"' $(CFLAGS) $(MY_CFLAGS)
FINAL_LDFLAGS = -pthread $(LDFLAGS)
FINAL_LIBS    = $(ZK_LIBS) $(EV_LIBS) $(LUAJIT_LIBS) $(HTTP_LIBS) $(JSON_LIBS) $(DL_LIBS) -lm

# Sources are found by stage (docs/architecture.md): the wiring and shared
# ground in agent/, one folder per stage of the data path below it.
STAGES = zk policy publish api register client
SRCS = $(wildcard agent/*.c) $(foreach s,$(STAGES),$(wildcard agent/$(s)/*.c))
HDRS = $(wildcard agent/*.h) $(foreach s,$(STAGES),$(wildcard agent/$(s)/*.h))

BUILD ?= build
OBJS  = $(SRCS:agent/%.c=$(BUILD)/obj/%.o)

.PHONY: all asan setup test tests-c run bench clean install lint mutants

all: $(BUILD)/scout $(BUILD)/libscout.so

# C unit tests: each tests/c/test_X.c links with the agent's objects (not main).
LIB_OBJS   = $(filter-out $(BUILD)/obj/main.o,$(OBJS))
TEST_SRCS  = $(wildcard tests/c/test_*.c)
TEST_BINS  = $(TEST_SRCS:tests/c/%.c=$(BUILD)/tests/%)
TEST_HDRS  = $(wildcard tests/c/*.h)

tests-c: $(TEST_BINS) $(BUILD)/tests/shm_writer_tool

$(BUILD)/tests/%: tests/c/%.c $(TEST_HDRS) $(LIB_OBJS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -o $@ $< $(LIB_OBJS) $(FINAL_LDFLAGS) $(FINAL_LIBS)

$(BUILD)/obj/%.o: agent/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -c -o $@ $<

# The commit goes into `scout version`; the header is rewritten only when it
# changes, so an unchanged tree does not rebuild main.o.
$(BUILD)/gen/commit.h: FORCE
	@mkdir -p $(dir $@)
	@c=$$(git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown); \
	 echo "#define SCOUT_COMMIT \"$$c\"" > $@.tmp; \
	 cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/obj/main.o $(BUILD)/obj/api/api_agent.o $(BUILD)/obj/api/metrics.o: $(BUILD)/gen/commit.h
$(BUILD)/obj/main.o $(BUILD)/obj/api/api_agent.o $(BUILD)/obj/api/metrics.o: MY_CFLAGS += -iquote $(BUILD)/gen
.PHONY: FORCE

$(BUILD)/scout: $(OBJS)
	$(CC) $(FINAL_LDFLAGS) -o $@ $(OBJS) $(FINAL_LIBS)

# libscout.so: what the Lua/FFI side loads (lua/scout/shm.lua).  Only the
# symbols the public headers declare are exported.  XXH3 is inlined from
# libxxhash-dev's header, so nothing new is linked.
LIBSCOUT_SRCS = lib/scout_shm_reader.c
LIBSCOUT_HDRS = lib/scout_shm.h

$(BUILD)/libscout.so: $(LIBSCOUT_SRCS) $(LIBSCOUT_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -fPIC -fvisibility=hidden -shared -o $@ $(LIBSCOUT_SRCS) $(FINAL_LDFLAGS)

# The agent's writer shares the format header with the reader; test_shm,
# test_shm_torn, test_shm_slices, test_shm_reslice and the spec's writer tool
# link the reader's object too.
$(BUILD)/obj/publish/shm.o $(BUILD)/obj/publish/shm_file.o $(BUILD)/obj/publish/shm_sum.o $(BUILD)/obj/publish/shm_held.o \
		$(BUILD)/obj/publish/shm_reslice.o: $(LIBSCOUT_HDRS)

$(BUILD)/obj/lib/%.o: lib/%.c $(LIBSCOUT_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/test_shm $(BUILD)/tests/test_shm_torn $(BUILD)/tests/test_shm_slices \
		$(BUILD)/tests/test_shm_reslice \
		$(BUILD)/tests/shm_writer_tool: $(BUILD)/tests/%: tests/c/%.c $(LIB_OBJS) \
		$(BUILD)/obj/lib/scout_shm_reader.o $(TEST_HDRS) $(HDRS) $(LIBSCOUT_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -o $@ $< $(LIB_OBJS) $(BUILD)/obj/lib/scout_shm_reader.o \
	        $(FINAL_LDFLAGS) $(FINAL_LIBS)

# ASan+UBSan build in build-asan/; the test suite runs against it too.
asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	        LDFLAGS="-fsanitize=address,undefined" build-asan/scout tests-c

# Fuzz the snapshot reader with libFuzzer (clang, ASan+UBSan): a seed corpus
# of valid snapshots, then FUZZ_TIME seconds of mutation.  New inputs and any
# crash (crash-*) land in $(BUILD)/fuzz/.
FUZZ_CC     ?= clang
FUZZ_TIME   ?= 60
FUZZ_CFLAGS  = -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -g -O1 \
               -fno-omit-frame-pointer -iquote agent -iquote lib $(MY_CFLAGS)
FUZZ_SRCS    = tests/fuzz/fuzz_snapshot.c agent/publish/snapshot_read.c agent/publish/snapshot_write.c \
               agent/publish/snapshot_encode.c \
               agent/publish/snapshot_rd.c agent/publish/snapshot_journal.c agent/publish/snapshot_merge.c \
               agent/endpoint.c agent/endpoint_json.c agent/publish/file_replace.c agent/heap.c

.PHONY: fuzz
fuzz:
	@scripts/setup.sh fuzz
	@mkdir -p $(BUILD)/fuzz/corpus
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DSCOUT_FUZZ_SEEDS -o $(BUILD)/fuzz/seeds $(FUZZ_SRCS) $(JSON_LIBS)
	$(BUILD)/fuzz/seeds $(BUILD)/fuzz/corpus
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	        -o $(BUILD)/fuzz/fuzz_snapshot $(FUZZ_SRCS) $(JSON_LIBS)
	cd $(BUILD)/fuzz && ./fuzz_snapshot -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	        -artifact_prefix=./ corpus

# Memcheck over the C unit tests and the agent under a few integration tests (tests/valgrind.sh): any
# invalid access, uninitialised value used or definite leak fails it.  4 minutes on a quiet 2-core
# machine, 13 at load 12-20.
.PHONY: valgrind
valgrind: setup
	@$(MAKE) --no-print-directory all tests-c
	@tests/valgrind.sh

setup:
	@scripts/setup.sh

test: setup
	@$(MAKE) --no-print-directory all tests-c asan
	@tests/run.sh

# Mutation check (tests/mutants/): each guarantee broken on purpose in a scratch copy of the working tree, and the
# tests that should notice must fail.  Not part of `make test`: it takes about half an hour.  MUTANTS=id1,id2 runs
# a few; MUTANTS_CHECK=1 only checks that every mutant still applies.
mutants: setup
	@tests/mutants/run.sh

run: setup
	@$(MAKE) --no-print-directory all
	@examples/demo/run.sh

bench: setup
	@$(MAKE) --no-print-directory all
	@bench/run.sh

lint:
	luacheck lua tests/lua

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LUADIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(BUILD)/scout $(DESTDIR)$(BINDIR)/scout
	install -m 0644 docs/scout.1 $(DESTDIR)$(MANDIR)/man1/scout.1
	install -m 0644 $(BUILD)/libscout.so $(DESTDIR)$(LIBDIR)/libscout.so
	cd lua && find . -name '*.lua' -exec install -D -m 0644 {} $(DESTDIR)$(LUADIR)/{} \;

clean:
	rm -rf build build-asan
