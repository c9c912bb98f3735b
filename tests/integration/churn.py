"""Writers for churn tests: several independent kazoo clients creating, deleting and re-writing children as fast as
the server takes them. Each writer owns its names, so the final truth is whatever ZooKeeper holds afterwards."""

import json
import random
import threading

from kazoo.exceptions import NoNodeError, NodeExistsError


def run_writers(zk, path, ops, writers=4, data_every=0, seed=1):
    """Perform `ops` operations in total from `writers` clients. Names are host:port (no data needed) unless
    data_every > 0, in which case every data_every-th name is an id with JSON data that later gets re-written."""
    errors = []

    def writer(w):
        rnd = random.Random(seed * 100 + w)
        kz = zk.client()
        live = []
        n = 0
        try:
            for i in range(ops // writers):
                if live and (rnd.random() < 0.45 or len(live) > 40):
                    name = live.pop(rnd.randrange(len(live)))
                    try:
                        kz.delete("%s/%s" % (path, name))
                    except NoNodeError:
                        pass
                elif data_every and live and rnd.random() < 0.2:
                    name = rnd.choice(live)
                    if name.startswith("id-"):
                        kz.set("%s/%s" % (path, name), _data(w, n, rnd))
                else:
                    n += 1
                    if data_every and n % data_every == 0:
                        name = "id-%d-%d" % (w, n)
                        data = _data(w, n, rnd)
                    else:
                        name = "127.%d.%d.%d:%d" % (w, n // 250, n % 250, 1000 + n)
                        data = b""
                    try:
                        kz.create("%s/%s" % (path, name), data)
                        live.append(name)
                    except NodeExistsError:
                        pass
        except Exception as e:  # surfaced by the test
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _data(w, n, rnd):
    return json.dumps({"host": "10.%d.%d.%d" % (w, n // 250, n % 250), "port": 2000 + n,
                       "weight": rnd.randint(1, 100)}).encode()


def truth(kz, path):
    """What ZooKeeper holds, as the plain codec reads it: {id: (host, port, weight)}."""
    out = {}
    for name in kz.get_children(path):
        if name.startswith("id-"):
            data, _ = kz.get("%s/%s" % (path, name))
            d = json.loads(data)
            out[name] = (d["host"], d["port"], d["weight"])
        else:
            host, port = name.rsplit(":", 1)
            out[name] = (host, int(port), 1)
    return out


def seen(scout, service):
    eps, _ = scout.endpoints(service)
    return {ep["id"]: (ep["host"], ep["port"], ep["weight"]) for ep in eps}
