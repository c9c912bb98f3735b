#!/usr/bin/env bash
# build.sh — the libmicrohttpd prototype (bench/http/http_mhd*.c) linked in place of the hand-written server
# (agent/api/http.c, http_parse.c, http_req.c): build/scout-mhd (in build/, so it finds lua/ beside it) and
# build/http-mhd/test_http and test_http_conn, from the objects `make all tests-c` left in build/obj.  The shipped build is unchanged.
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
cc $CFLAGS -c -o "$OUT/http_mhd_req.o" bench/http/http_mhd_req.c
MHD_OBJS="$OUT/http_mhd.o $OUT/http_mhd_req.o"
cc $CFLAGS -pthread -o build/scout-mhd build/obj/main.o $MHD_OBJS $OBJS $LIBS
for t in test_http test_http_conn; do
    cc $CFLAGS -pthread -o "$OUT/$t" "tests/c/$t.c" $MHD_OBJS $OBJS $LIBS
done
echo "build/scout-mhd $OUT/test_http $OUT/test_http_conn"
