#!/usr/bin/python3
"""The Python client's submission rate beside the command line's
(docs/performance.md, "The Python client"): --jobs test-execution jobs
(attributes.system.exec.test, no processes) submitted, timed from the
first request sent to the last id acknowledged, by

  cli       loom submit --cc=1-N (its batches of 4,096 in flight; the
            process's whole run, start-up included)
  many      Client.submit_many, batches of --batch, one after the other
  async     AsyncClient.submit, one request per job, all in flight
  sync      Client.submit, one job at a time

each --rounds times, the queue drained between runs (the jobs run as
they are submitted, as they would). Prints one line per way: the best
and the median rate.

  loom start --test-size=2 -- bench/python_submit.py --jobs 10000
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import loom  # noqa: E402

TEST = {"exec.test": {"run_duration": 0}}


def cli(args, n):
    loom_bin = os.path.join(args.bin, "loom")
    t0 = time.perf_counter()
    r = subprocess.run([loom_bin, "submit", "--cc=1-%d" % n, '--setattr=exec.test={"run_duration":0}', "true"],
                       stdout=subprocess.PIPE, check=True)
    t = time.perf_counter() - t0
    assert len(r.stdout.splitlines()) == n
    return t


def many(args, n):
    with loom.Client() as c:
        spec = loom.jobspec(["true"], setattr=TEST)
        t0 = time.perf_counter()
        done = 0
        while done < n:
            k = min(args.batch, n - done)
            c.submit_many([spec] * k)
            done += k
        return time.perf_counter() - t0


def async_(args, n):
    async def main():
        async with loom.AsyncClient() as c:
            spec = loom.jobspec(["true"], setattr=TEST)
            t0 = time.perf_counter()
            await asyncio.gather(*(c.submit(spec) for _ in range(n)))
            return time.perf_counter() - t0

    return asyncio.run(main())


def sync(args, n):
    with loom.Client() as c:
        spec = loom.jobspec(["true"], setattr=TEST)
        t0 = time.perf_counter()
        for _ in range(n):
            c.submit(spec)
        return time.perf_counter() - t0


WAYS = {"cli": cli, "many": many, "async": async_, "sync": sync}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=10000)
    p.add_argument("--sync-jobs", type=int, default=0, help="jobs for `sync` (default: --jobs / 5)")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ways", default="cli,many,async,sync")
    p.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build",
                                                 "release", "bin"))
    args = p.parse_args()
    rates = {w: [] for w in args.ways.split(",")}
    with loom.Client() as c:
        for _ in range(args.rounds):
            for way in rates:  # interleaved, so that a slower moment hits every way alike
                n = (args.sync_jobs or max(1, args.jobs // 5)) if way == "sync" else args.jobs
                secs = WAYS[way](args, n)
                rates[way].append(n / secs)
                c.rpc("job-manager.queue-drain", timeout=600)
                c.rpc("job-manager.purge", {"num_limit": 0}, timeout=600)
    for way, r in rates.items():
        print("%-6s %8.0f jobs/s best, %8.0f median of %d" % (way, max(r), statistics.median(r), len(r)))


if __name__ == "__main__":
    main()
