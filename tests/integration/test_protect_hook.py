"""on_protect decides early: with a hold of an hour and a thousand confirmations, only the hook returning true can
publish a held drop within the test. (test_protect's hook test holds with confirm = 1000 whether or not the hook
runs, so it cannot tell a hook that is never asked.) The hook sees the service and the drop it is asked about."""

import unittest

from scoutharness import policy, wait_until, Scout, ZkCase


class ProtectHook(ZkCase):
    def tearDown(self):
        self.scout.stop()

    def test_the_hook_publishes_a_held_drop_early(self):
        for p in range(4):
            self.kz.create("/ph1/svc/127.0.0.1:%d" % (7000 + p), makepath=True)
        # the hook lets the drop through at its second look: after protection held it once
        self.scout = s = Scout(policy({"svc": 'path = "/ph1/svc",\n'
                                       'protect = { confirm = 1000, confirm_interval = 200, hold = "1h" },\n'
                                       'on_protect = function(svc, ev)\n'
                                       '  return svc.name == "svc" and ev.from == 4 and ev.to == 0\n'
                                       '         and ev.hold_ms == 3600000 and ev.confirms >= 1\n'
                                       'end'}), self.zk.connect).start()
        wait_until(lambda: len(s.ids("svc")) == 4, what="initial list")
        t = self.kz.transaction()
        for p in range(4):
            t.delete("/ph1/svc/127.0.0.1:%d" % (7000 + p))
        t.commit()
        wait_until(lambda: s.metric("scout_service_protections_total", "svc") == 1, what="the drop held first")
        wait_until(lambda: s.ids("svc") == [], what="the hook publishes the drop")
        self.assertEqual(s.state("svc"), "synced")
        self.assertRegex(s.log(), r"protection: publishing the drop from 4 to 0 endpoints")


if __name__ == "__main__":
    unittest.main()
