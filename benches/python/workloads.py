"""Cross-process workloads on the two Python baselines of issue 7, as in benches/src/measures/bus.rs.

Usage: workloads.py <workload> [args]; the parent roles spawn this same file as the subscriber
child. Results go to stdout as one JSON object per workload, progress and notes to stderr as
`# ...` lines. Run through ./run, which installs the pinned libraries into a virtualenv.

Workloads:
  formix-throughput  64-byte messages, one publisher process to one subscriber process, as fast
                     as the publisher can go; reports messages *received* per second and drops.
  formix-latency     one-way latency at a 10,000 msg/s pace (busy-wait pacing); p50/p99 in us.
  mvent-latency      one-way latency of mvent's emit -> watcher callback, paced slower (mvent
                     keeps one value per event name and polls it every 100 ms).
  mvent-store [OPS]  two processes on one mvent SharedMemoryPool, each setting then getting
                     its own 100 keys (64-byte values, ttl 60 s) OPS times, one call at a time;
                     sets/s and gets/s per process, and how many of the 200 values survived.
  report OURS FX_TP FX_LAT MV_LAT [OURS_STORE MV_STORE]
                     reads `compare --only bus --quick` stdout (OURS) and the workloads'
                     results (and `compare --child store-cross` with the mvent-store result),
                     prints the comparison JSON lines (the schema of `compare`).
"""

import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

PAYLOAD = 64
IDLE_S = 2.0  # a subscriber stops after this long without a message once it has started


def log(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def now_ns():
    # CLOCK_MONOTONIC is one clock for every process on the machine.
    return time.monotonic_ns()


def percentile(samples, p):
    s = sorted(samples)
    if not s:
        return None
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def spawn_child(role, env_extra, count):
    env = dict(os.environ)
    env.update(env_extra)
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), role, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    line = child.stdout.readline().strip()
    if line != "ready":
        child.kill()
        raise RuntimeError(f"{role} child did not get ready (said {line!r})")
    return child


def child_result(child):
    out = child.stdout.read()
    rc = child.wait(timeout=60)
    if rc != 0:
        raise RuntimeError(f"child exited with {rc}")
    return json.loads(out)


# ---------------------------------------------------------------------------------------------
# formix-pubsub
# ---------------------------------------------------------------------------------------------

TOPIC = "bench.data"


def formix_sub(count, latency, hold=False):
    from pubsub import Channel, fetch

    ch = Channel(topic=TOPIC)
    ch.open()
    print("ready", flush=True)
    if hold:
        # The burst check: read nothing until the publisher has sent everything.
        sys.stdin.readline()
    received = 0
    lats_us = []
    first_ns = last_ns = None
    idle_since = time.monotonic()
    try:
        while received < count:
            msg = fetch(ch)
            if msg is None:
                if time.monotonic() - idle_since > IDLE_S:
                    break
                time.sleep(0)  # yield only: the best case for the library
                continue
            t = now_ns()
            idle_since = time.monotonic()
            if first_ns is None:
                first_ns = t
            last_ns = t
            received += 1
            if latency:
                sent = struct.unpack_from("<Q", msg.content)[0]
                lats_us.append((t - sent) / 1000.0)
    finally:
        ch.close()
    print(json.dumps({"received": received, "last_ns": last_ns, "lat_us": lats_us}), flush=True)


def formix_env(tmp):
    # PUBSUB_HOME is the library's own override of its base directory (default /dev/shm/...);
    # a fresh directory on /dev/shm per turn keeps turns and other users apart. The library
    # caches the base directory on first use, so forget it before each turn.
    import pubsub.abstractions

    pubsub.abstractions._base_dir_cache = None
    return {"PUBSUB_HOME": tmp}


def formix_throughput_turn(count):
    from pubsub import publish

    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        os.environ.update(formix_env(tmp))
        child = spawn_child("formix-sub-throughput", formix_env(tmp), count)
        payload = bytes(PAYLOAD)
        reached = 0
        start = now_ns()
        for _ in range(count):
            reached += publish(TOPIC, payload)
        pub_end = now_ns()
        res = child_result(child)
    received = res["received"]
    secs = (res["last_ns"] - start) / 1e9 if res["last_ns"] else float("inf")
    return {
        "sent": count,
        "delivered_to_queue": reached,
        "received": received,
        "dropped": count - received,
        "publish_rate": count / ((pub_end - start) / 1e9),
        "received_rate": received / secs if received else 0.0,
    }


def formix_burst(count):
    """Publish `count` messages while the subscriber reads nothing, then let it drain."""
    from pubsub import publish

    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        os.environ.update(formix_env(tmp))
        child = spawn_child("formix-sub-burst", formix_env(tmp), count)
        payload = bytes(PAYLOAD)
        reached = sum(publish(TOPIC, payload) for _ in range(count))
        child.stdin.write("go\n")
        child.stdin.flush()
        res = child_result(child)
    return {"sent": count, "publish_reported": reached, "received": res["received"]}


def formix_latency_turn(count, pace_ns):
    from pubsub import publish

    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        os.environ.update(formix_env(tmp))
        child = spawn_child("formix-sub-latency", formix_env(tmp), count)
        buf = bytearray(PAYLOAD)
        start = now_ns()
        nxt = start
        for _ in range(count):
            while now_ns() < nxt:  # busy-wait: time.sleep cannot pace at 100 us
                pass
            nxt += pace_ns
            struct.pack_into("<Q", buf, 0, now_ns())
            publish(TOPIC, bytes(buf))
        elapsed = (now_ns() - start) / 1e9
        res = child_result(child)
    return res["lat_us"], count / elapsed, count - res["received"]


def formix_throughput(args):
    count = int(args[0]) if args else 20_000
    turns = int(args[1]) if len(args) > 1 else 3
    formix_throughput_turn(min(count, 2_000))  # unmeasured warm-up
    results = [formix_throughput_turn(count) for _ in range(turns)]
    for r in results:
        log(f"formix throughput turn: {json.dumps(r)}")
    rate = statistics.median(r["received_rate"] for r in results)
    drops = sum(r["dropped"] for r in results)
    before = PUBLISH_WARNINGS[0]
    burst = formix_burst(10_000)
    burst["publish_warnings"] = PUBLISH_WARNINGS[0] - before
    log(f"formix logged {before} 'Failed to publish' warnings in the warm-up and measured turns")
    log(f"formix burst (subscriber reads only after all are sent): {json.dumps(burst)}")
    print(json.dumps({"workload": "formix-throughput", "value": rate, "unit": "msg/s",
                      "turns": results, "dropped_total": drops, "burst": burst}), flush=True)


def formix_latency(args):
    count = int(args[0]) if args else 2_000
    turns = int(args[1]) if len(args) > 1 else 3
    pace_ns = 100_000  # 10,000 msg/s
    formix_latency_turn(min(count, 500), pace_ns)  # unmeasured warm-up
    samples, rates, lost = [], [], 0
    for _ in range(turns):
        lat, rate, missing = formix_latency_turn(count, pace_ns)
        samples += lat
        rates.append(rate)
        lost += missing
    log(f"formix latency: achieved publish rates {[round(r) for r in rates]} msg/s "
        f"(target 10000), {lost} messages not received")
    print(json.dumps({"workload": "formix-latency", "unit": "us", "samples": len(samples),
                      "p50": percentile(samples, 50), "p99": percentile(samples, 99),
                      "publish_rates": rates, "lost": lost}), flush=True)


# ---------------------------------------------------------------------------------------------
# mvent
# ---------------------------------------------------------------------------------------------

EVENT = "bench_data"


def mvent_sub(count):
    from mvent import MemoryEventHandler

    events = MemoryEventHandler(os.environ["MVENT_BENCH_POOL"])
    lats_us = []
    seen = set()
    last = [time.monotonic()]

    @events.on(EVENT)
    def on_data(value):
        t = now_ns()
        if value is None:
            return
        seq, sent = value
        seen.add(seq)
        lats_us.append((t - sent) / 1000.0)
        last[0] = time.monotonic()

    print("ready", flush=True)
    while len(seen) < count and time.monotonic() - last[0] < IDLE_S:
        time.sleep(0.01)
    events.cleanup()
    print(json.dumps({"received": len(seen), "last_ns": None, "lat_us": lats_us}), flush=True)


def mvent_turn(count, rate):
    from mvent import MemoryEventHandler

    with tempfile.TemporaryDirectory() as tmp:
        # The pool file goes to tempfile.gettempdir(): point it at a fresh directory.
        env = {"TMPDIR": tmp, "MVENT_BENCH_POOL": "ephemeral_bench"}
        os.environ.update(env)
        tempfile.tempdir = None
        child = spawn_child("mvent-sub", env, count)
        events = MemoryEventHandler("ephemeral_bench")
        time.sleep(0.3)  # let the watcher take its first look at the (empty) value
        period = 1.0 / rate
        nxt = time.monotonic()
        for seq in range(count):
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            nxt += period
            events.emit(EVENT, (seq, now_ns()))
        res = child_result(child)
        events.cleanup()
        tempfile.tempdir = None
    return res["lat_us"], count - res["received"]


def mvent_latency(args):
    count = int(args[0]) if args else 40
    rate = float(args[1]) if len(args) > 1 else 5.0
    samples, lost = mvent_turn(count, rate)
    log(f"mvent latency: {count} events at {rate:g} msg/s, {count - lost} seen, {lost} lost")
    # The loss check: twice the poll rate.
    fast_count, fast_rate = 40, 20.0
    _, fast_lost = mvent_turn(fast_count, fast_rate)
    log(f"mvent loss check: {fast_count} events at {fast_rate:g} msg/s, {fast_lost} lost")
    print(json.dumps({"workload": "mvent-latency", "unit": "us", "samples": len(samples),
                      "p50": percentile(samples, 50), "p99": percentile(samples, 99),
                      "rate": rate, "lost": lost, "fast_rate": fast_rate,
                      "fast_count": fast_count, "fast_lost": fast_lost}), flush=True)


STORE_KEYS = 100
STORE_VALUE = bytes(64)


def mvent_store_load(args):
    """One process of mvent-store: waits for a line on stdin, then sets, then gets."""
    from mvent import SharedMemoryPool

    ops, me = int(args[0]), args[1]
    pool = SharedMemoryPool(os.environ["MVENT_BENCH_POOL"], temp_dir=os.environ["MVENT_BENCH_DIR"],
                            auto_cleanup=False)
    keys = [f"p{me}.key.{i}" for i in range(STORE_KEYS)]
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for i in range(ops):
        pool.set(keys[i % STORE_KEYS], STORE_VALUE, ttl=60)
    set_rate = ops / (time.perf_counter() - start)
    start = time.perf_counter()
    missing = 0
    for i in range(ops):
        if pool.get(keys[i % STORE_KEYS]) is None:
            missing += 1
    get_rate = ops / (time.perf_counter() - start)
    print(json.dumps({"set_per_s": set_rate, "get_per_s": get_rate, "get_missing": missing}),
          flush=True)


def mvent_store(args):
    from mvent import SharedMemoryPool

    ops = int(args[0]) if args else 2000
    sets, gets, survived, missing = [], [], [], 0
    for _ in range(3):
        with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
            env = {"MVENT_BENCH_POOL": "ephemeral_store_bench", "MVENT_BENCH_DIR": tmp}
            kids = []
            for me in range(2):
                child = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "mvent-store-load", str(ops), str(me)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **env}, text=True)
                if child.stdout.readline().strip() != "ready":
                    child.kill()
                    raise RuntimeError("mvent-store-load did not get ready")
                kids.append(child)
            for child in kids:
                child.stdin.write("go\n")
                child.stdin.flush()
            for child in kids:
                res = child_result(child)
                sets.append(res["set_per_s"])
                gets.append(res["get_per_s"])
                missing += res["get_missing"]
            pool = SharedMemoryPool("ephemeral_store_bench", temp_dir=tmp, auto_cleanup=False)
            survived.append(sum(1 for k in pool.get_all() if k.startswith("p")))
    log(f"mvent store: set/s {[round(x) for x in sets]}, get/s {[round(x) for x in gets]}, "
        f"of {2 * STORE_KEYS} values {survived} survived (its lock is per process), "
        f"{missing} gets found no value")
    print(json.dumps({"workload": "mvent-store", "processes": 2, "keys_per_process": STORE_KEYS,
                      "set_per_s": statistics.median(sets), "get_per_s": statistics.median(gets),
                      "survived": survived, "of": 2 * STORE_KEYS, "get_missing": missing}),
          flush=True)


# ---------------------------------------------------------------------------------------------
# The report, in the schema of `compare` (benches/README.md).
# ---------------------------------------------------------------------------------------------


def read_json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def line(name, unit, ours, baseline, value, higher_is_better, target=1.0):
    ratio = None
    if ours is not None and value is not None and ours > 0 and value > 0:
        ratio = round(ours / value if higher_is_better else value / ours, 4)
    return json.dumps({
        "name": name, "unit": unit, "ours": ours, "baseline": baseline,
        "baseline_value": value, "higher_is_better": higher_is_better, "ratio": ratio,
        "target": target, "same_run": False,
    }, separators=(",", ":"))


def report(args):
    ours_path, tp_path, lat_path, mv_path = args[:4]
    ours = {m["name"]: m.get("ours") for m in read_json_lines(ours_path)}
    tp = read_json_lines(tp_path)[-1]
    lat = read_json_lines(lat_path)[-1]
    mv = read_json_lines(mv_path)[-1]
    print(line("bus_throughput_vs_formix", "msg/s", ours.get("bus_throughput"),
               f"formix-pubsub {FORMIX_VERSION}: 64-byte messages received/s, one publisher "
               f"process to one subscriber process ({tp['dropped_total']} dropped; of a burst "
               f"of {tp['burst']['sent']} sent before reading, {tp['burst']['received']} "
               "arrived)",
               tp["value"], True))
    print(line("bus_latency_p99_vs_formix", "us", ours.get("bus_latency_p99"),
               f"formix-pubsub {FORMIX_VERSION}: p99 one-way latency, paced at 10k msg/s "
               f"(achieved {round(min(lat['publish_rates']))} msg/s), {lat['samples']} samples",
               lat["p99"], False))
    # `compare` reports only our p99; our p50 is at most that, so this ratio is a lower bound.
    print(line("bus_latency_p50_vs_mvent", "us", ours.get("bus_latency_p99"),
               f"mvent {MVENT_VERSION}: p50 one-way latency emit->callback at "
               f"{mv['rate']:g} msg/s, {mv['samples']} samples ({mv['lost']} lost; at "
               f"{mv['fast_rate']:g} msg/s {mv['fast_lost']} of {mv['fast_count']} were lost); "
               "ours is our p99 (an upper bound of our p50)",
               mv["p50"], False))
    if len(args) >= 6:
        ours_store = read_json_lines(args[4])[-1]
        mv_store = read_json_lines(args[5])[-1]
        lost = f"{mv_store['of'] - min(mv_store['survived'])} of {mv_store['of']} values lost in its worst turn"
        print(line("store_set_vs_mvent", "ops/s", ours_store["set_per_s"],
                   f"mvent {MVENT_VERSION}: SharedMemoryPool.set of 64-byte values with a ttl, "
                   f"2 processes on one pool, each on its own {mv_store['keys_per_process']} keys, "
                   f"per process ({lost}); ours: Store::set on one bus store, the same shape",
                   mv_store["set_per_s"], True, 10.0))
        print(line("store_get_vs_mvent", "ops/s", ours_store["get_per_s"],
                   f"mvent {MVENT_VERSION}: SharedMemoryPool.get, same pools, per process; "
                   "ours: Store::get, the same shape",
                   mv_store["get_per_s"], True, 100.0))


def version(dist):
    try:
        from importlib.metadata import version as v

        return v(dist)
    except Exception:  # noqa: BLE001 - a report without a version is still a report
        return "?"


FORMIX_VERSION = version("formix-pubsub")
MVENT_VERSION = version("mvent")


PUBLISH_WARNINGS = [0]


def _count_publish_warnings(record):
    """formix logs one warning per failed publish (thousands in the burst): count, don't print."""
    if "Failed to publish" in record.getMessage():
        PUBLISH_WARNINGS[0] += 1
        return False
    return True


def main():
    # The libraries log through the root logger (formix logs each failed publish): keep stderr
    # in the `# ...` form of `compare`.
    import logging

    logging.basicConfig(format="# %(name)s %(levelname)s: %(message)s")
    logging.getLogger().addFilter(_count_publish_warnings)
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    role, args = sys.argv[1], sys.argv[2:]
    if role == "formix-sub-throughput":
        formix_sub(int(args[0]), latency=False)
    elif role == "formix-sub-burst":
        formix_sub(int(args[0]), latency=False, hold=True)
    elif role == "formix-sub-latency":
        formix_sub(int(args[0]), latency=True)
    elif role == "mvent-sub":
        mvent_sub(int(args[0]))
    elif role == "formix-throughput":
        formix_throughput(args)
    elif role == "formix-latency":
        formix_latency(args)
    elif role == "mvent-latency":
        mvent_latency(args)
    elif role == "mvent-store":
        mvent_store(args)
    elif role == "mvent-store-load":
        mvent_store_load(args)
    elif role == "report":
        report(args)
    else:
        print(f"unknown workload {role!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
