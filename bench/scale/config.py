"""config.py -- the scale benchmark's knobs (environment variables, see scale.py's header), its
failure list and log, and the registry's names and data.

Why a module: scale.py and perchange.py build the same registry (/scale/svc-NNNNN/ep-E with the
same JSON) and log the same way; perchange.py sets ENDPOINTS here for its own sizes."""

import json
import os
import sys


SERVICES = int(os.environ.get("SERVICES", "10000"))
ENDPOINTS = int(os.environ.get("ENDPOINTS", "10"))
SESSIONS = os.environ.get("SESSIONS", "")
SESSION_TIMEOUT_MS = os.environ.get("SESSION_TIMEOUT_MS", "")   # agent and rawsync; 10000 if unset
CHANGES = int(os.environ.get("CHANGES", "100"))
PERSIST_SAMPLES = int(os.environ.get("PERSIST_SAMPLES", "5"))
COLD_ROUNDS = int(os.environ.get("COLD_ROUNDS", "3"))
RECOVER_S = float(os.environ.get("RECOVER_S", "5"))
POPULATE_WINDOW = int(os.environ.get("POPULATE_WINDOW", "1000"))
SYNC_TIMEOUT_S = float(os.environ.get("SYNC_TIMEOUT_S", "120"))
PERF = os.environ.get("PERF", "0") in ("1", "restart")   # "restart": phase 3 only
PERF_SYNC = os.environ.get("PERF", "0") == "1"
ROOT_PATH = "/scale"

FAILURES = []


def log(msg):
    sys.stderr.write("scale: %s\n" % msg)
    sys.stderr.flush()


def fail(msg):
    FAILURES.append(msg)
    log("FAILED: " + msg)


def svc_name(i):
    return "svc-%05d" % i


def ep_data(s, e, gen=0):
    k = s * ENDPOINTS + e
    return json.dumps({"host": "10.%d.%d.%d" % ((k >> 16) & 255, (k >> 8) & 255, k & 255),
                       "port": 20000 + (gen * ENDPOINTS + e) % 40000, "weight": 1},
                      separators=(",", ":")).encode()
