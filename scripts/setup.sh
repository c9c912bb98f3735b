#!/usr/bin/env bash
# setup.sh -- install the Debian packages scout needs to build, test, benchmark and run, if any is missing.
#
# Every tool any test or benchmark runs is named here: a test never skips for a missing tool, it fails, so a fresh
# machine runs the same tests as a developer's.
#
# Why a script: `make run` and `make test` must work from a clean clone on a fresh Debian machine with nothing
# pre-installed, and be quiet and instant when everything is already there. Idempotent; root or sudo.
set -euo pipefail

PACKAGES=(
  # build
  gcc make pkg-config
  libzookeeper-st-dev libev-dev libhttp-parser-dev libjansson-dev uthash-dev libxxhash-dev
  libmicrohttpd-dev                     # the HTTP API's server (external-loop mode in libev)
  libcurl4-openssl-dev                  # the client commands (HTTP over the unix socket); libsystemd0 (sd_notify,
                                        # dlopen'd, no header needed) comes with systemd below
  systemd                               # systemd-analyze verifies the example unit
  prometheus                            # promtool checks /metrics in the tests
  luajit2 libluajit2-5.1-dev          # OpenResty's LuaJIT: Debian's lua-nginx-module needs it
  # Lua modules the agent and the specs load
  lua-cjson lua-cosmo lua-busted lua-check
  lua-yaml                            # dubbo's config-center rules are YAML (lyaml, on LibYAML)
  # real components for the tests and the demo
  zookeeper python3-kazoo libcurator-discovery-java
  default-jdk-headless                # javac: the Curator interop checks compile CuratorCheck.java
  nginx libnginx-mod-http-lua lua-resty-core
  curl procps python3                 # python3: the integration and nginx harnesses (kazoo is for Debian's python)
  luarocks                            # tests/rockspec: `luarocks make` of the rockspec
  wrk                                 # the nginx hot-path test and bench/nginx drive load with it
  # benchmarks (PERF=1 profiles with perf)
  linux-perf
  valgrind                            # massif: where the agent's heap goes, by call site (docs/performance/memory.md)
  gdb                                 # bench/scale: malloc_stats() in the agent at rest (bench/scale/measure.py)
)

# `scripts/setup.sh fuzz` adds what `make fuzz` needs (clang with libFuzzer's runtime).
if [ "${1:-}" = fuzz ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "setup: installing ${missing[*]}"
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
# the package lists may be absent on a fresh image; refresh them once
if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  $SUDO apt-get update -q >>"$log" 2>&1 || true
  if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    echo "setup: apt-get install failed" >&2
    exit 1
  fi
fi
rm -f "$log"
# nginx's package starts a system service where an init system runs; the tests start their own on loopback.
if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then
  $SUDO systemctl stop nginx || true
fi
echo "setup: done"
