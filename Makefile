# SPDX-License-Identifier: MIT
# ChannelQuant - plain Makefile.
#   make              library (static + shared) and the `cq` tool, in build/
#   make test         build and run the whole test suite
#   make SAN=1 test   the same under AddressSanitizer + UBSan (build-san/)
#   make SIMD=0 ...   build without the AVX2 kernels (scalar floor only)
#   make HIREDIS=0    build without the Redis tier (default auto: with it when hiredis is found)
#   make fuzz         libFuzzer targets (clang) of tests/fuzz/, each run FUZZ_SECONDS
#   make tsan         the cache tests under ThreadSanitizer (build-tsan/)
#   make install     install into $(DESTDIR)$(PREFIX) (default /usr/local): headers under
#                    include/channelquant/, libchannelquant.a, libchannelquant.so.MAJOR, cq,
#                    libchannelquant_redis.a (the Redis tier, when built),
#                    lib/pkgconfig/channelquant.pc (docs/API.md)
#   make uninstall   remove exactly what install put there
#   make clean
# Every source under src/*/ is part of the library; files named *_avx2.c are
# compiled with the AVX2/FMA/F16C flags and only reached through the dispatcher.

CC      ?= cc
SAN     ?= 0
SIMD    ?= 1
TSAN    ?= 0
BUILD   ?= build
OPT     ?= -O2

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
           -Wformat=2 -Wno-format-nonliteral
CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -g $(WARN) \
           -ffp-contract=off -fPIC -pthread -Iinclude $(EXTRA_CFLAGS)
LDLIBS  := -lm -pthread

ifeq ($(SAN),1)
  BUILD  := build-san
  CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(TSAN),1)
  BUILD  := build-tsan
  CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=thread
endif
ifeq ($(SIMD),0)
  # its own build directory: objects built with the AVX2 files must not be reused
  BUILD  := $(BUILD)-nosimd
  CFLAGS += -DCQ_NO_SIMD
endif

# The Redis tier (include/cq_kvstore.h, src/kvstore/): its own library on hiredis, linked
# into cq and its tests only; the core library never depends on it. auto: on when
# <hiredis/hiredis.h> compiles and links; 0: off (own build directory, cq refuses --kv-store).
HIREDIS ?= auto
ifeq ($(HIREDIS),auto)
  HIREDIS := $(shell printf '\043include <hiredis/hiredis.h>\nint main(void){redisFree(redisConnect("",0));return 0;}\n' \
      | $(CC) -x c - -o /dev/null -lhiredis >/dev/null 2>&1 && echo 1 || echo 0)
endif
ifneq ($(HIREDIS),1)
  override HIREDIS := 0
  BUILD  := $(BUILD)-nohiredis
endif

AVX2_FLAGS := -mavx2 -mfma -mf16c
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512vnni

LIB_SRC   := $(filter-out src/kvstore/%,$(sort $(wildcard src/*/*.c)))
KV_SRC    := $(sort $(wildcard src/kvstore/*.c))
ifeq ($(SIMD),0)
  LIB_SRC := $(filter-out %_avx2.c %_avx512.c,$(LIB_SRC))
endif
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
ifeq ($(HIREDIS),0)
  TEST_SRC := $(filter-out tests/test_kvstore%,$(TEST_SRC))
endif
TEST_UTIL := $(sort $(wildcard tests/util/*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
KV_OBJ    := $(KV_SRC:%.c=$(BUILD)/%.o)
UTIL_OBJ  := $(TEST_UTIL:%.c=$(BUILD)/%.o)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

# The version, from include/cq_version.h; the soname carries MAJOR (docs/API.md).
VERSION_PART = $(shell awk '$$2 == "CQ_VERSION_$(1)" {print $$3}' include/cq_version.h)
VERSION   := $(call VERSION_PART,MAJOR).$(call VERSION_PART,MINOR).$(call VERSION_PART,PATCH)
SONAME    := libchannelquant.so.$(call VERSION_PART,MAJOR)

STATIC    := $(BUILD)/libchannelquant.a
SHARED    := $(BUILD)/libchannelquant.so
SHARED_REAL := $(BUILD)/libchannelquant.so.$(VERSION)
CQ        := $(BUILD)/cq
ifeq ($(HIREDIS),1)
  KVLIB      := $(BUILD)/libchannelquant_redis.a
  KV_LDLIBS  := $(shell pkg-config --libs hiredis 2>/dev/null || echo -lhiredis)
  $(TOOL_OBJ): CFLAGS += -DCQ_HAVE_KVSTORE=1
else
  KVLIB      :=
  KV_LDLIBS  :=
endif

# Only the CQ_API declarations of include/*.h are exported from the shared library.
$(LIB_OBJ): CFLAGS += -fvisibility=hidden

.PHONY: all test clean run fuzz tsan tsan-run install uninstall
# test helpers are only reached through the test pattern rule: keep them (no relink every run)
.SECONDARY: $(UTIL_OBJ)
all: $(STATIC) $(SHARED) $(CQ)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHARED_REAL): $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,$(SONAME) -o $@ $^ $(LDLIBS)

$(SHARED): $(SHARED_REAL)
	ln -sf $(notdir $(SHARED_REAL)) $(BUILD)/$(SONAME)
	ln -sf $(notdir $(SHARED_REAL)) $@

$(KVLIB): $(KV_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(CQ): $(TOOL_OBJ) $(STATIC) $(KVLIB)
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(KVLIB) $(STATIC) $(LDLIBS) $(KV_LDLIBS)

$(BUILD)/tests/%: tests/%.c $(UTIL_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -Itools $< $(UTIL_OBJ) $(STATIC) $(LDFLAGS) $(LDLIBS) -o $@

# the Redis tier's tests link its library and hiredis (only built with HIREDIS=1)
KV_TEST_BIN := $(filter $(BUILD)/tests/test_kvstore%,$(TEST_BIN))
$(KV_TEST_BIN): $(BUILD)/tests/%: tests/%.c $(UTIL_OBJ) $(STATIC) $(KVLIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -Itools -Isrc/kvstore $< $(UTIL_OBJ) $(KVLIB) $(STATIC) $(LDFLAGS) $(LDLIBS) $(KV_LDLIBS) -o $@

# Fuzz targets (tests/fuzz/fuzz_*.c): `make test` replays their committed corpora
# (tests/fuzz/corpus/<target>/) through the standalone driver with $(CC);
# `make fuzz` builds them with clang's libFuzzer + ASan + UBSan and runs each
# for FUZZ_SECONDS, adding new inputs to build-fuzz/corpus/<target>/.
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES   := $(FUZZ_SRC:tests/fuzz/%.c=%)
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_REPLAY  := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)
FUZZ_HELPERS := tests/fuzz/common.c
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/standalone.c $(FUZZ_HELPERS) tests/fuzz/fuzz.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz $< tests/fuzz/standalone.c $(FUZZ_HELPERS) $(STATIC) $(LDFLAGS) $(LDLIBS) -o $@

test: all $(TEST_BIN) $(FUZZ_REPLAY)
	@BUILD=$(BUILD) CQ_MAKEVARS="SAN=$(SAN) SIMD=$(SIMD) BUILD=$(BUILD)" CQ_LDFLAGS="$(LDFLAGS)" \
	    CQ_HIREDIS=$(HIREDIS) CQ_SAN=$(SAN) \
	    sh tests/run_tests.sh $(TEST_BIN)

# Install / uninstall (tests/cli/install.sh stages an install, builds examples/ against it).
PREFIX       ?= /usr/local
DESTDIR      ?=
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
PUB_HDR      := $(sort $(wildcard include/*.h))

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR)/channelquant \
	    $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 $(PUB_HDR) $(DESTDIR)$(INCLUDEDIR)/channelquant/
	install -m 644 $(STATIC) $(KVLIB) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED_REAL) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHARED_REAL)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libchannelquant.so
	install -m 755 $(CQ) $(DESTDIR)$(BINDIR)/
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	    'Name: channelquant' 'Description: bit-exact streaming KV-cache codec and cache (KIVI/KVQuant recipe)' \
	    'Version: $(VERSION)' 'Cflags: -I$${includedir}/channelquant -I$${includedir} -pthread' \
	    'Libs: -L$${libdir} -lchannelquant -lm -pthread' >$(DESTDIR)$(PKGCONFIGDIR)/channelquant.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/channelquant.pc

uninstall:
	rm -f $(PUB_HDR:include/%=$(DESTDIR)$(INCLUDEDIR)/channelquant/%)
	-rmdir $(DESTDIR)$(INCLUDEDIR)/channelquant 2>/dev/null
	rm -f $(DESTDIR)$(LIBDIR)/libchannelquant.a $(DESTDIR)$(LIBDIR)/libchannelquant_redis.a \
	    $(DESTDIR)$(LIBDIR)/libchannelquant.so \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/$(notdir $(SHARED_REAL)) \
	    $(DESTDIR)$(BINDIR)/cq $(DESTDIR)$(PKGCONFIGDIR)/channelquant.pc

fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) SAN=0 \
	    EXTRA_CFLAGS="-fsanitize=fuzzer-no-link $(FUZZ_SAN) -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION" $(FUZZ_BUILD)/libchannelquant.a
	@mkdir -p $(FUZZ_BUILD)/fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	    echo "$(FUZZ_CC) ... -o $(FUZZ_BUILD)/fuzz/$$t"; \
	    $(FUZZ_CC) $(CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -Itests/fuzz tests/fuzz/$$t.c \
	        $(FUZZ_HELPERS) $(FUZZ_BUILD)/libchannelquant.a $(LDLIBS) -o $(FUZZ_BUILD)/fuzz/$$t; \
	done
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t; \
	    echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	    $(FUZZ_BUILD)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=20 \
	        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/$$t- \
	        $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t; \
	done

run: all
	$(CQ) run

# The cache tests (test_cache*, test_persist), the thread pool (test_pool) and the serving
# pool (test_serve, test_pool_attn, test_serve_wire) under ThreadSanitizer, both kernel tables.
TSAN_BIN := $(filter $(BUILD)/tests/test_cache% $(BUILD)/tests/test_persist $(BUILD)/tests/test_pool $(BUILD)/tests/test_serve $(BUILD)/tests/test_pool_attn $(BUILD)/tests/test_serve_wire,$(TEST_BIN))
tsan:
	@$(MAKE) --no-print-directory TSAN=1 tsan-run
tsan-run: $(TSAN_BIN)
	@export TSAN_OPTIONS="halt_on_error=1 exitcode=66 $(TSAN_OPTIONS)" CQ_SHARED=$${CQ_SHARED:-../shared}; \
	for k in auto scalar; do for t in $(TSAN_BIN); do \
		echo "tsan ($$k kernels): $$t"; \
		if [ $$k = auto ]; then $$t || exit 1; else CQ_KERNELS=$$k $$t || exit 1; fi; \
	done; done

clean:
	rm -rf build build-san build-*

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(UTIL_OBJ:.o=.d) $(KV_OBJ:.o=.d)
