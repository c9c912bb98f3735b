#!/usr/bin/env bash
# run.sh -- the rockspec works: `luarocks make` from a clean copy of this checkout into a temp tree, for LuaJIT,
# offline, then everything is used from the installed tree only (the copy is deleted first, the cwd is elsewhere,
# SCOUT_LIB and SCOUT_LUA_DIR are unset): scout.select.swrr, scout.codec.dubbo (and dubbo_rules), scout.shm (and that it loaded the
# tree's libscout.so), resty.scout parses, bin/scout runs and finds its Lua runtime. Also `make install` with
# PREFIX and DESTDIR still lays files out as before, with the man page, and the example systemd unit verifies. Ends with `N passed, N failed, N skipped`.
#
# Needs: luarocks (Debian's), luajit, the build dependencies of `make`. No network, no stdin, no root needed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROCKSPEC=scout-0.1.0-1.rockspec
VERSION=0.1.0

TMP=$(mktemp -d "${TMPDIR:-/tmp}/scout-rockspec.XXXXXX")
trap '[ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"' EXIT
SRC=$TMP/src TREE=$TMP/tree ELSEWHERE=$TMP/elsewhere
mkdir -p "$SRC" "$TREE" "$ELSEWHERE" "$TMP/home"

pass=0 fail=0 skip=0
ok()   { pass=$((pass + 1)); echo "ok   $*"; }
nok()  { fail=$((fail + 1)); echo "FAIL $*"; }
skp()  { skip=$((skip + 1)); echo "skip $*"; }
finish() {
  echo "$pass passed, $fail failed, $skip skipped"
  [ "$fail" -eq 0 ]
  exit
}

# A copy without build outputs: nothing from a developer's build/ can be picked up, and concurrent builds in the
# checkout are neither disturbed nor reused.
tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./build-asan --exclude=./tmp -cf - . | tar -C "$SRC" -xf -
HAD_RESTY=0
[ -f "$SRC/lua/resty/scout.lua" ] && HAD_RESTY=1

# luarocks pointed at LuaJIT, with no servers (offline) and a private HOME (no user config, no cache writes).
LUAJIT_LIBDIR=$(pkg-config --variable=libdir luajit 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)
LUAJIT_INCDIR=/usr/include/luajit-2.1
for d in $(pkg-config --cflags-only-I luajit 2>/dev/null | sed 's/-I//g'); do
  [ -f "$d/lua.h" ] && LUAJIT_INCDIR=$d
done
cat > "$TMP/config.lua" <<EOF
lua_interpreter = "luajit"
variables = {
  LUA_DIR = "/usr",
  LUA_BINDIR = "/usr/bin",
  LUA_INCDIR = "$LUAJIT_INCDIR",
  LUA_LIBDIR = "$LUAJIT_LIBDIR",
}
rocks_trees = { { name = "test", root = "$TREE" } }
rocks_servers = {}
-- Debian's lua-cjson package provides the rockspec's lua-cjson dependency
rocks_provided = { ["lua-cjson"] = "2.1.0-1" }
EOF
export LUAROCKS_CONFIG=$TMP/config.lua HOME=$TMP/home
MAKEFLAGS="-j$(nproc 2>/dev/null || echo 2)"
export MAKEFLAGS
unset SCOUT_LIB SCOUT_LUA_DIR LUA_PATH LUA_CPATH LUA_INIT
LR=(luarocks --lua-version=5.1)

# 1. luarocks make
if (cd "$SRC" && "${LR[@]}" make --tree "$TREE" "$ROCKSPEC") </dev/null >"$TMP/make.log" 2>&1; then
  ok "luarocks make --tree TMP $ROCKSPEC"
else
  nok "luarocks make --tree TMP $ROCKSPEC"; tail -n 40 "$TMP/make.log"; finish
fi
if "${LR[@]}" --tree "$TREE" list --porcelain 2>/dev/null | grep -q "^scout[[:space:]]$VERSION-1[[:space:]]installed"; then
  ok "luarocks list shows scout $VERSION-1 installed"
else
  nok "luarocks list shows scout $VERSION-1 installed"; "${LR[@]}" --tree "$TREE" list
fi

# 2. make install PREFIX=... DESTDIR=..., as before: staged under DESTDIR, then moved to PREFIX the way a package
#    is unpacked. The agent finds its modules in PREFIX/share/scout/lua (compiled in; DESTDIR must not be), and
#    scout.shm finds libscout.so in PREFIX/lib/lua/5.1 through package.cpath.
P=$TMP/prefix D=$TMP/destdir
if (cd "$SRC" && make --no-print-directory install PREFIX="$P" DESTDIR="$D") </dev/null >"$TMP/install.log" 2>&1 \
   && mv "$D$P" "$P" && [ -x "$P/bin/scout" ] && [ -f "$P/lib/lua/5.1/libscout.so" ] \
   && [ -f "$P/share/scout/lua/scout/runtime.lua" ]; then
  ok "make install PREFIX=P DESTDIR=D: bin/scout, lib/lua/5.1/libscout.so, share/scout/lua/scout/*.lua"
  printf 'zookeeper { servers = "127.0.0.1:2181" }\n' > "$ELSEWHERE/min.lua"
  if out=$(cd "$ELSEWHERE" && "$P/bin/scout" check min.lua 2>&1 </dev/null); then
    ok "make install: PREFIX/bin/scout check finds PREFIX/share/scout/lua"
  else
    nok "make install: PREFIX/bin/scout check finds PREFIX/share/scout/lua"; echo "$out"
  fi
  if out=$(cd "$ELSEWHERE" && LUA_PATH="$P/share/scout/lua/?.lua;;" LUA_CPATH="$P/lib/lua/5.1/?.so;;" \
           luajit -e 'io.write(require("scout.shm")._lib_path)' 2>&1 </dev/null) && [ "$out" = "$P/lib/lua/5.1/libscout.so" ]; then
    ok "make install: scout.shm loads PREFIX/lib/lua/5.1/libscout.so"
  else
    nok "make install: scout.shm loads PREFIX/lib/lua/5.1/libscout.so"; echo "$out"
  fi
  if [ -f "$P/share/man/man1/scout.1" ] && grep -q '^\.TH SCOUT 1' "$P/share/man/man1/scout.1"; then
    ok "make install: the man page in PREFIX/share/man/man1/scout.1"
  else
    nok "make install: the man page in PREFIX/share/man/man1/scout.1"
  fi
  # The example unit, pointed at the installed binary and the example policy, passes systemd's own checks.
  sed "s|/usr/local/bin/scout|$P/bin/scout|g; s|/etc/scout/policy.lua|$SRC/examples/systemd/policy.lua|g" \
      "$SRC/examples/systemd/scout.service" > "$TMP/scout.service"
  if out=$(systemd-analyze verify --man=no "$TMP/scout.service" 2>&1 </dev/null) && [ -z "$out" ]; then
    ok "examples/systemd/scout.service passes systemd-analyze verify"
  else
    nok "examples/systemd/scout.service passes systemd-analyze verify"; echo "$out"
  fi
else
  nok "make install PREFIX=P DESTDIR=D"; tail -n 20 "$TMP/install.log"; (cd "$D" && find . | sort | head -40)
fi
rm -rf "$P"

# From here on only the installed tree exists.
rm -rf "$SRC"
cd "$ELSEWHERE" || exit 1
eval "$("${LR[@]}" path --tree "$TREE")"

# lj NAME CODE: run CODE in LuaJIT with the tree's paths; TREE is in the environment.
lj() {
  local name=$1 out
  if out=$(TREE=$TREE luajit -e "$2" 2>&1 </dev/null); then ok "$name${out:+: $out}"; else nok "$name"; echo "$out"; fi
}

PREAMBLE='local tree = os.getenv("TREE")
local function from_tree(mod, p)
  local f = assert(package.searchpath(mod, p))
  assert(f:sub(1, #tree + 1) == tree .. "/", mod .. " resolves outside the tree: " .. f)
  return f
end'

lj 'require "scout.select.swrr" from the tree' "$PREAMBLE
local f = from_tree('scout.select.swrr', package.path)
local m = require 'scout.select.swrr'
assert(type(m) == 'table', 'module is not a table')
io.write(f:sub(#tree + 2))"

lj 'require "scout.codec.dubbo" from the tree' "$PREAMBLE
local f = from_tree('scout.codec.dubbo', package.path)
local m = require 'scout.codec.dubbo'
assert(type(m) == 'table', 'module is not a table')
io.write(f:sub(#tree + 2))"

# dubbo_rules and its helpers under scout/codec/dubbo/ (a subfolder), and the YAML it reads through Debian's lyaml
lj 'require "scout.codec.dubbo_rules" from the tree, with its helpers' "$PREAMBLE
from_tree('scout.codec.dubbo_rules', package.path)
for _, m in ipairs({ 'yaml', 'match', 'configurator', 'router' }) do from_tree('scout.codec.dubbo.' .. m, package.path) end
local R = require 'scout.codec.dubbo_rules'
local set, errs = R.compile('config', { { name = 'I::.configurators',
  data = 'configVersion: v2.7\\nkey: I\\nconfigs:\\n- side: consumer\\n  parameters: {timeout: 9}\\n' } }, { interface = 'I' })
assert(#errs == 0, errs[1] and errs[1].why)
local ep = R.configure({ host = 'h', port = 1, weight = 100, status = 'up', meta = {} }, { config = set }, { interface = 'I' })
assert(ep.meta.timeout == '9', 'the YAML rule did not apply')
io.write('ok')"

# scout.shm checks the library's ABI against its cdef on load, so a successful require has called into it.
lj 'require "scout.shm" loads the tree'"'"'s libscout.so' "$PREAMBLE
from_tree('scout.shm', package.path)
local shm = require 'scout.shm'
local want = tree .. '/lib/lua/5.1/libscout.so'
assert(shm._lib_path == want, 'loaded ' .. tostring(shm._lib_path) .. ', want ' .. want)
local r, err = shm.open(os.getenv('TREE') .. '/no-such-snapshot')
assert(r or type(err) == 'string', 'open gave neither a reader nor an error')
if r and r.close then r:close() end
io.write(shm._lib_path:sub(#tree + 2))"

if [ "$HAD_RESTY" = 1 ]; then
  lj 'resty.scout installed and parses' "$PREAMBLE
local f = from_tree('resty.scout', package.path)
assert(loadfile(f))
io.write(f:sub(#tree + 2))"
else
  nok 'resty.scout installed and parses: lua/resty/scout.lua is missing from the checkout'
fi

out=$("$TREE/bin/scout" version 2>&1 </dev/null)
first=${out%%$'\n'*}
case "$first" in
  "scout $VERSION (commit "*")") ok "bin/scout version: $first" ;;
  *) nok "bin/scout version: '$out'" ;;
esac

# The agent finds its Lua runtime in the tree (the path compiled in by the rockspec), with nothing pointing at it.
cat > "$ELSEWHERE/policy.lua" <<'EOF'
zookeeper { servers = "127.0.0.1:2181" }
service "orders" { path = "/dubbo/com.acme.OrderService/providers", codec = "dubbo" }
EOF
if out=$("$TREE/bin/scout" check policy.lua 2>&1 </dev/null); then
  ok "bin/scout check policy.lua (Lua runtime from the tree)"
else
  nok "bin/scout check policy.lua"; echo "$out"
fi

finish
