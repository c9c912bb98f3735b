"""The disk snapshot with its journal folded in, in Python (docs/snapshot.md, "The journal"): what the agent's own
readers serve, for the tests to compare with the API. A journal that does not name the base beside it is ignored;
a torn or corrupt record ends the journal there, and every record before it holds."""

import os
import struct

from test_bad_files import xxh64

JOURNAL = "scout.snapshot.journal"


def _string(buf, pos):
    n = struct.unpack_from("<I", buf, pos)[0]
    if pos + 4 + n > len(buf):
        raise ValueError("string past the end")
    return buf[pos + 4:pos + 4 + n], pos + 4 + n


def _service(buf, pos):
    """(name, end) of the service record at pos: walks every length (struct raises past the end)."""
    name, pos = _string(buf, pos)
    _path, pos = _string(buf, pos)
    pos += 24
    neps = struct.unpack_from("<I", buf, pos)[0]
    pos += 4
    for _ in range(neps):
        for _ in range(3):
            _s, pos = _string(buf, pos)
        pos += 16
        nmeta = struct.unpack_from("<I", buf, pos)[0]
        pos += 4
        for _ in range(2 * nmeta):
            _s, pos = _string(buf, pos)
    if pos > len(buf):
        raise ValueError("service past the end")
    return name, pos


def records(journal):
    """[(offset, length, written_at_ms, {name: record bytes})] of the journal's good records, and the offset where
    the good ones end."""
    out, pos = [], 32
    while pos + 12 <= len(journal):
        n, sum_ = struct.unpack_from("<IQ", journal, pos)
        payload = journal[pos + 12:pos + 12 + n]
        if len(payload) != n or xxh64(payload) != sum_:
            break
        at, count = struct.unpack_from("<qI", payload, 0)
        svcs, p = {}, 12
        try:
            for _ in range(count):
                name, end = _service(payload, p)
                svcs[name] = payload[p:end]
                p = end
        except (ValueError, struct.error):
            break
        if p != n:
            break
        out.append((pos, 12 + n, at, svcs))
        pos += 12 + n
    return out, pos


def load(path):
    """(the full snapshot's bytes, what the journal did: "none", "ignored", "applied N")."""
    with open(path, "rb") as f:
        base = f.read()
    jpath = os.path.join(os.path.dirname(path), JOURNAL)
    if not os.path.exists(jpath):
        return base, "none"
    with open(jpath, "rb") as f:
        journal = f.read()
    magic, version, flags, body_len, checksum = struct.unpack_from("<8sIIQQ", base, 0)
    if (len(journal) < 32 or journal[:8] != b"SCOUTJNL" or struct.unpack_from("<II", journal, 8) != (1, 0)
            or struct.unpack_from("<QQ", journal, 16) != (body_len, checksum)):
        return base, "ignored"
    recs, _ = records(journal)
    if not recs:
        return base, "applied 0"
    body = base[32:]
    pos = 0
    _w, pos = _string(body, pos)
    _e, pos = _string(body, pos)
    head = body[:pos]
    count = struct.unpack_from("<I", body, pos + 8)[0]
    pos += 12
    svcs = {}
    for _ in range(count):
        name, end = _service(body, pos)
        svcs[name] = body[pos:end]
        pos = end
    for _off, _len, _at, changed in recs:
        svcs.update(changed)
    body = head + struct.pack("<qI", recs[-1][2], len(svcs)) + b"".join(svcs[k] for k in sorted(svcs))
    return b"SCOUTSNP" + struct.pack("<IIQQ", 1, 0, len(body), xxh64(body)) + body, "applied %d" % len(recs)
