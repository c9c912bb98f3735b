#!/usr/bin/env python3
"""Write dubbo providers and governance rules the way dubbo 2.7 and dubbo-admin do (child names are
URL.encode(url.toFullString())), step by step, so you can watch scout follow them:

    /usr/bin/python3 examples/dubbo/publish.py 127.0.0.1:2181      # then, in another shell:
    curl -s 127.0.0.1:8500/v1/services/demo; curl -s 127.0.0.1:8500/v1/explain/demo

Needs kazoo (Debian's python3-kazoo). Everything it writes is under /dubbo and is removed at the end."""

import sys
import time
import urllib.parse

from kazoo.client import KazooClient

IFACE = "com.acme.DemoService"


def enc(url):
    return urllib.parse.quote(url, safe="")


def provider(host):
    return ("dubbo://%s:20880/%s?anyhost=true&application=demo-provider&dubbo=2.0.2&interface=%s"
            "&methods=sayGoodbye,sayHello&side=provider&timestamp=1700000000000" % (host, IFACE, IFACE))


def step(msg):
    print(msg)
    time.sleep(3)


def main(zk):
    kz = KazooClient(hosts=zk)
    kz.start()
    try:
        for h in ("10.0.0.1", "10.0.0.2"):
            kz.create("/dubbo/%s/providers/%s" % (IFACE, enc(provider(h))), makepath=True)
        step("two providers")
        disable = "override://10.0.0.1:20880/%s?category=configurators&disabled=true&dynamic=false" % IFACE
        kz.create("/dubbo/%s/configurators/%s" % (IFACE, enc(disable)), makepath=True)
        step("dubbo-admin disabled 10.0.0.1:20880: it leaves the list")
        yaml = ("configVersion: v2.7\nscope: service\nkey: %s\nenabled: true\nconfigs:\n"
                "- addresses: [10.0.0.2:20880]\n  side: provider\n  parameters:\n    weight: 200\n" % IFACE)
        kz.create("/dubbo/config/dubbo/%s::.configurators" % IFACE, yaml.encode(), makepath=True)
        step("a config-center rule sets 10.0.0.2:20880's weight to 200")
        kz.delete("/dubbo/%s/configurators/%s" % (IFACE, enc(disable)))
        step("the override is gone: 10.0.0.1:20880 is back")
    finally:
        kz.delete("/dubbo", recursive=True)
        kz.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:2181")
