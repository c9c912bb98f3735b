#!/usr/bin/env bash
# build.sh — the libmicrohttpd prototype (bench/http/http_mhd.c) linked in place of the hand-written server
# (agent/api/http.c, http_parse.c, http_req.c): build/scout-mhd (beside build/, so it finds lua/) and build/http-mhd/test_http, from the
# objects `make all tests-c` left in build/obj.  Nothing in the shipped build changes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
make -s -j2 all tests-c >/dev/null
OUT=build/http-mhd
mkdir -p "$OUT"
CFLAGS="-std=gnu11 -pthread -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation -iquote agent -iquote lib $(pkg-config --cflags luajit)"
LIBS="-lzookeeper_st -lev $(pkg-config --libs luajit) -lmicrohttpd -lhttp_parser -ljansson -lcurl -lsystemd -lm"
OBJS=$(find build/obj -name '*.o' ! -path '*/lib/*' ! -name main.o ! -name http.o ! -name http_parse.o ! -name http_req.o)
cc $CFLAGS -c -o "$OUT/http_mhd.o" bench/http/http_mhd.c
cc $CFLAGS -pthread -o build/scout-mhd build/obj/main.o "$OUT/http_mhd.o" $OBJS $LIBS
cc $CFLAGS -pthread -o "$OUT/test_http" tests/c/test_http.c "$OUT/http_mhd.o" $OBJS $LIBS
echo "build/scout-mhd $OUT/test_http"
