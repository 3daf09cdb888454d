"""The built-in approximate-time synchroniser without DDS: pairing within the slop, bounded queues, every drop
reported with its cause, and the re-arm on a jump back (docs/ros.md, "Stamp policy")."""
from __future__ import annotations

from soco_ros.sync import ApproximateSync  # plain Python: no rclpy needed


def test_sync_pairs_within_slop_and_in_order():
    out = []
    sync = ApproximateSync(["image", "depth"], 0.01, lambda *m: out.append(m), queue_size=5)
    ms = 1_000_000
    sync.add("image", 100 * ms, "i100")
    sync.add("depth", 103 * ms, "d103")  # within 10 ms
    sync.add("image", 133 * ms, "i133")
    sync.add("depth", 150 * ms, "d150")  # 17 ms away: no pair
    sync.add("image", 166 * ms, "i166")
    sync.add("depth", 167 * ms, "d167")
    assert out == [("i100", "d103"), ("i166", "d167")]
    assert sync.unmatched == 2  # i133 and d150 were passed over
    sync.add("depth", 120 * ms, "late")  # older than an emitted set: never pairs
    assert sync.unmatched == 3 and sync.pending() == 0


def test_sync_queue_is_bounded_and_slop_reconfigurable():
    out = []
    sync = ApproximateSync(["image", "depth", "mask"], 0.001, lambda *m: out.append(m), queue_size=3)
    for i in range(100):
        sync.add("image", i * 10_000_000, i)
    assert sync.pending() == 3 and sync.unmatched == 97 and not out
    sync.slop_s = 0.05
    sync.add("depth", 990_000_000 + 20_000_000, "d")
    sync.add("mask", 990_000_000, "m")
    assert out == [(99, "d", "m")]
    single = []
    one = ApproximateSync(["image"], 0.0, lambda *m: single.append(m))
    one.add("image", 5, "x")
    assert single == [("x",)]


def test_sync_reports_every_drop_with_its_cause_and_the_nearest_partner():
    out, drops = [], []
    sync = ApproximateSync(["image", "depth"], 0.05, lambda *m: out.append(m), queue_size=3, on_drop=drops.append)
    ms = 1_000_000
    sync.add("image", 1000 * ms, "i1000")
    sync.add("depth", 1200 * ms, "d1200")  # depth 200 ms off: no pair
    sync.add("image", 1500 * ms, "i1500")
    sync.add("depth", 1510 * ms, "d1510")  # pairs; i1000 and d1200 are left behind
    assert out == [("i1500", "d1510")]
    assert [(d.name, d.stamp_ns // ms, d.cause) for d in drops] == [("image", 1000, "no_partner"),
                                                                     ("depth", 1200, "no_partner")]
    assert drops[0].gaps == {"depth": 200 * ms} and drops[1].gaps == {"image": 200 * ms}  # judged before removal
    sync.add("image", 1400 * ms, "late")
    assert drops[-1].cause == "out_of_order" and drops[-1].behind_ns == 110 * ms
    for t in (1600, 1700, 1800, 1900):  # images without depth: the oldest leaves the full queue
        sync.add("image", t * ms, t)
    assert drops[-1] == type(drops[-1])("image", 1600 * ms, "no_partner", gaps={"depth": None})
    assert sync.unmatched == len(drops) == 4


def test_sync_rearms_on_a_jump_back_so_one_future_stamp_cannot_stop_it():
    out, rearms = [], []
    sync = ApproximateSync(["image", "depth"], 0.01, lambda *m: out.append(m[0]), jump_s=1.0,
                           on_rearm=lambda *a: rearms.append(a))
    s = 1_000_000_000
    for t in (100 * s, 3700 * s, 101 * s):  # a frame an hour ahead, then the stream goes on
        sync.add("depth", t, None)
        sync.add("image", t, t)
    assert out == [100 * s, 3700 * s, 101 * s] and rearms == [("depth", 101 * s, 3599 * s)]
    sync.add("image", 100 * s + s // 2, "small step back")  # within jump_s: out of order, no re-arm
    assert len(out) == 3 and len(rearms) == 1 and sync.unmatched == 1
    sync.reset_counters()
    assert (sync.unmatched, sync.rearmed, sync.emitted) == (0, 0, 0)
