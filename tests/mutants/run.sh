#!/usr/bin/env bash
# run.sh -- the mutation check behind `make mutants`: does each guarantee have a test that fails when it breaks?
#
# Every record of tests/mutants/mutants.txt (its header says how to write one) is a small change that disables one
# guarantee. For each, one at a time: a scratch copy of the working tree as it is now (tracked and untracked
# files, uncommitted edits included; ignored files such as build/ left out), the change applied -- its original
# text must occur exactly once, or the mutant is "stale" and counts as missed --, `make all tests-c`, then the
# mutant's tests. The mutant is caught when a test fails and missed when they all pass (a test command that runs no
# test at all makes the mutant stale: a renamed test must not let a mutant pass). One line per mutant
# (`caught|missed  id  guarantee`), then `mutants: N caught, N missed`; exit 1 when any is missed.
#
# The unmutated tree is built once in a base copy, and each mutant starts from a copy of it with its timestamps,
# so make rebuilds only what the mutation touched. Logs of each mutant go to build/mutants/ID.log.
#
#   MUTANTS=id1,id2     run only these
#   MUTANTS_BASELINE=1  first run every distinct test command on the unmutated tree; any failure stops the run
#                       (a test that fails anyway would read as "caught")
#   MUTANTS_CHECK=1     only check that every mutant still applies and its integration tests exist (no build)
#   MUTANTS_TIMEOUT=s   limit for one test command (default 900); a test stopped by it counts as failing
#   MUTANTS_JOBS=n      mutants run at once (default 3; each has its own tree, ZooKeeper and ports)
#   MUTANTS_FILE=path   another list
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

LIST=${MUTANTS_FILE:-$ROOT/tests/mutants/mutants.txt}
PY=/usr/bin/python3            # kazoo is packaged for Debian's python only
JOBS=${JOBS:-2}
TIMEOUT=${MUTANTS_TIMEOUT:-900}
LOGDIR=$ROOT/build/mutants
unset SCOUT_LUA_DIR             # the scratch copy's own lua/ must be the one loaded

die() { echo "mutants: $*" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/scout-mutants.XXXXXX") || die "cannot make a scratch directory"
trap 'rm -rf "$work"' EXIT
# mktemp's 0700 kept nginx's workers (nobody, when run as root) out of the copy's lua/: an nginx test then failed
# on "module 'resty.scout' not found", whatever the mutant did, and counted it caught
chmod 755 "$work"
mkdir -p "$LOGDIR" "$work/spec"

# ---- the list -------------------------------------------------------------------------------------------------
# Each mutant becomes $work/spec/N/ with id, guarantee, tests (one command a line) and edits K.file, K.from, K.to.
n=0 k=0 cur=
declare -a IDS=() GUARANTEES=()
declare -A SEEN=()
lineno=0
record_end() {
  [ -z "$cur" ] && return
  local d=$work/spec/$cur
  [ -s "$d/guarantee" ] || die "$LIST: mutant $(cat "$d/id") has no guarantee"
  [ -s "$d/tests" ] || die "$LIST: mutant $(cat "$d/id") has no test"
  [ "$(cat "$d/edits")" -gt 0 ] || die "$LIST: mutant $(cat "$d/id") has no file/from/to"
  for e in $(seq 1 "$(cat "$d/edits")"); do
    [ -f "$d/$e.from" ] && [ -f "$d/$e.to" ] || die "$LIST: mutant $(cat "$d/id"): an edit lacks from or to"
  done
  cur=
}
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  case $line in
    '#'*) continue ;;
    '') record_end; continue ;;
  esac
  key=${line%%:*}
  [ "$key" = "$line" ] && die "$LIST:$lineno: want 'key: value', got: $line"
  val=${line#*:}
  val=${val# }                  # one space after the colon; the rest is verbatim
  if [ "$key" = id ]; then
    record_end
    [[ $val =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "$LIST:$lineno: bad id '$val'"
    [ -n "${SEEN[$val]:-}" ] && die "$LIST:$lineno: duplicate id $val"
    SEEN[$val]=1
    n=$((n + 1)); cur=$n; k=0
    mkdir -p "$work/spec/$cur"
    printf '%s' "$val" >"$work/spec/$cur/id"
    : >"$work/spec/$cur/tests"; echo 0 >"$work/spec/$cur/edits"
    IDS+=("$val")
    continue
  fi
  [ -z "$cur" ] && die "$LIST:$lineno: '$key' before any id"
  d=$work/spec/$cur
  case $key in
    guarantee) printf '%s' "$val" >"$d/guarantee" ;;
    file)      k=$((k + 1)); echo "$k" >"$d/edits"; printf '%s' "$val" >"$d/$k.file" ;;
    from|to)   [ "$k" -gt 0 ] || die "$LIST:$lineno: $key before file"
               [ -f "$d/$k.$key" ] && die "$LIST:$lineno: a second $key in one edit (use $key+)"
               printf '%s' "$val" >"$d/$k.$key" ;;
    from+|to+) [ -f "$d/$k.${key%+}" ] || die "$LIST:$lineno: $key without $key"
               printf '\n%s' "$val" >>"$d/$k.${key%+}" ;;
    test)      printf '%s\n' "$val" >>"$d/tests" ;;
    *)         die "$LIST:$lineno: unknown key '$key'" ;;
  esac
done <"$LIST"
record_end
[ "$n" -gt 0 ] || die "$LIST: no mutants"

# MUTANTS=a,b: the selection, in list order
declare -a RUN=()
if [ -n "${MUTANTS:-}" ]; then
  IFS=, read -ra want <<<"$MUTANTS"
  for w in "${want[@]}"; do [ -n "${SEEN[$w]:-}" ] || die "no mutant '$w' in $LIST"; done
  for i in $(seq 1 "$n"); do
    for w in "${want[@]}"; do [ "${IDS[$((i - 1))]}" = "$w" ] && RUN+=("$i"); done
  done
else
  RUN=($(seq 1 "$n"))
fi

# ---- scratch trees --------------------------------------------------------------------------------------------
# The working tree as it is: tracked files that still exist (edited or not) and untracked, unignored ones.
copy_tree() {
  mkdir -p "$1"
  git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
  done | tar --null -T - -cf - | tar -C "$1" -xf -
}

# apply_edits SPECDIR TREE: 0 when every edit applied; otherwise prints why (stale) and returns 1.
apply_edits() {
  local d=$1 tree=$2 e
  for e in $(seq 1 "$(cat "$d/edits")"); do
    "$PY" - "$tree" "$(cat "$d/$e.file")" "$d/$e.from" "$d/$e.to" <<'EOF' || return 1
import sys
tree, name, from_, to = sys.argv[1:]
old = open(from_, encoding="utf-8").read()
new = open(to, encoding="utf-8").read()
try:
    text = open(tree + "/" + name, encoding="utf-8").read()
except OSError as e:
    print("stale: %s: %s" % (name, e.strerror))
    sys.exit(1)
count = text.count(old)
if count != 1:
    print("stale: %s: the original text occurs %d times, not once: %s" % (name, count, old.splitlines()[0]))
    sys.exit(1)
open(tree + "/" + name, "w", encoding="utf-8").write(text.replace(old, new))
EOF
  done
}

# run_test TREE COMMAND LOG: the command's exit status; 3 when it ran no test at all. Shorthands:
#   it ARGS     integration tests: tests/integration/run.py ARGS (SCOUT_BIN is the tree's build/scout)
#   lua SPEC    busted --lua=luajit tests/lua/SPEC
#   c NAME      build/tests/NAME
#   nginx ARGS  tests/nginx/run.py ARGS
# anything else runs as a shell command in the tree.
run_test() {
  local tree=$1 cmd=$2 log=$3 rc
  case $cmd in
    'it '*)    cmd="$PY tests/integration/run.py ${cmd#it }" ;;
    'lua '*)   cmd="busted --lua=luajit -o TAP tests/lua/${cmd#lua }" ;;
    'c '*)     cmd="build/tests/${cmd#c }" ;;
    'nginx'*)  cmd="$PY tests/nginx/run.py ${cmd#nginx}" ;;
  esac
  echo "=== $cmd" >>"$log"
  (cd "$tree" && SCOUT_BIN="$tree/build/scout" timeout -k 30 "$TIMEOUT" bash -c "$cmd" </dev/null) >>"$log.part" 2>&1
  rc=$?
  cat "$log.part" >>"$log"
  [ "$rc" -eq 124 ] && echo "!!! stopped after ${TIMEOUT}s" >>"$log"
  # a run of no test proves nothing: run.py says "0 passed, 0 failed", busted's TAP plan "1..0"; and a module
  # that is not there fails without testing anything
  if [ "$rc" -eq 0 ] && grep -qE '^(0 passed, 0 failed|1\.\.0)$' "$log.part"; then rc=3; fi
  if grep -qE "^ModuleNotFoundError: No module named 'test_|^AttributeError: module '[a-z_]+' has no attribute" \
       "$log.part"; then rc=3; fi
  rm -f "$log.part"
  return "$rc"
}

if [ -n "${MUTANTS_CHECK:-}" ]; then
  bad=0
  for i in "${RUN[@]}"; do
    d=$work/spec/$i
    rm -rf "$work/m"
    for e in $(seq 1 "$(cat "$d/edits")"); do      # only the files it edits, as they are now
      f=$(cat "$d/$e.file")
      [ -f "$f" ] && mkdir -p "$work/m/$(dirname "$f")" && cp "$f" "$work/m/$f"
    done
    if ! why=$(apply_edits "$d" "$work/m"); then
      :
    else                                            # integration tests named that exist
      while IFS= read -r t; do
        case $t in 'it '*) ;; *) continue ;; esac
        set -- ${t#it }
        mod=tests/integration/$1 pat=
        [ "${2:-}" = -k ] && pat=${3:-}
        if [ ! -f "$mod" ]; then why="stale: no $mod"; break; fi
        if ! grep -qE "def test_[A-Za-z0-9_]*${pat}" "$mod"; then why="stale: no test matches -k $pat in $mod"; break; fi
      done <"$d/tests"
    fi
    if [ -z "$why" ]; then
      printf 'applies  %s\n' "$(cat "$d/id")"
    else
      printf 'stale    %s  %s\n' "$(cat "$d/id")" "$why"; bad=$((bad + 1))
    fi
  done
  exit $((bad > 0))
fi

start=$(date +%s)
echo "mutants: building the unmutated tree (log: $LOGDIR/base.log)"
copy_tree "$work/base"
make -C "$work/base" -j"$JOBS" all tests-c >"$LOGDIR/base.log" 2>&1 || die "the unmutated tree does not build"

if [ -n "${MUTANTS_BASELINE:-}" ]; then
  declare -A DONE=()
  for i in "${RUN[@]}"; do
    while IFS= read -r t; do
      [ -n "${DONE[$t]:-}" ] && continue
      DONE[$t]=1
      run_test "$work/base" "$t" "$LOGDIR/baseline.log"
      rc=$?
      [ "$rc" -eq 3 ] && die "baseline: '$t' runs no test (log: $LOGDIR/baseline.log)"
      [ "$rc" -ne 0 ] && die "baseline: '$t' fails on the unmutated tree (log: $LOGDIR/baseline.log)"
      echo "baseline ok  $t"
    done <"$work/spec/$i/tests"
  done
fi

# one_mutant I: applies mutant I to its own copy of the built tree, builds what changed, runs its tests, and writes
# "verdict<TAB>id<TAB>guarantee<TAB>note" to $work/result/I.  Mutants run MUTANTS_JOBS at a time: most of a caught
# mutant's time is an integration test waiting for what never comes, not CPU.
one_mutant() {
  local i=$1 d=$work/spec/$1 id g log tree verdict=missed note= t
  id=$(cat "$d/id") g=$(cat "$d/guarantee")
  log=$LOGDIR/$id.log tree=$work/m$i
  : >"$log"
  rm -rf "$tree"
  cp -a "$work/base" "$tree"
  if ! note=$(apply_edits "$d" "$tree"); then
    :                                       # stale: counted missed, with the reason
  elif ! make -C "$tree" -j"$JOBS" all tests-c >>"$log" 2>&1; then
    note="broken: the mutant does not build (see $log)"
  else
    while IFS= read -r t; do
      run_test "$tree" "$t" "$log"
      case $? in
        0) ;;
        3) note="stale: '$t' runs no test"; break ;;
        *) verdict=caught; break ;;
      esac
    done <"$d/tests"
  fi
  printf '%s\t%s\t%s\t%s\n' "$verdict" "$id" "$g" "$note" >"$work/result/$i"
  rm -rf "$tree"
}

PAR=${MUTANTS_JOBS:-3}
mkdir -p "$work/result"
running=0
for i in "${RUN[@]}"; do
  one_mutant "$i" &
  running=$((running + 1))
  if [ "$running" -ge "$PAR" ]; then wait -n; running=$((running - 1)); fi
done
wait

caught=0 missed=0
for i in "${RUN[@]}"; do
  IFS=$'\t' read -r verdict id g note <"$work/result/$i" || { verdict=missed id="#$i" g="(no result)" note=; }
  if [ "$verdict" = caught ]; then caught=$((caught + 1)); else missed=$((missed + 1)); fi
  printf '%-6s  %-32s  %s%s\n' "$verdict" "$id" "$g" "${note:+  [$note]}"
done
echo "($(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s, $PAR at a time; logs in $LOGDIR)"
echo "mutants: $caught caught, $missed missed"
[ "$missed" -eq 0 ]
