#!/usr/bin/python3
"""A 100-job workflow: one job prepares a directory, 98 jobs each write a
part once it is ready (afterok), and one job adds the parts up once all
98 succeeded. A progress line follows the jobs as they end.

    python3 workflow.py [DIR]        # DIR: where the parts go (default: a new temporary one)
"""

import asyncio
import os
import sys
import tempfile

import loom

PARTS = 98


def progress(done: int, total: int, failed: int) -> None:
    """On a terminal, one line redrawn in place; elsewhere a line per tenth."""
    text = "workflow [%-30s] %d/%d jobs, %d failed" % ("#" * (30 * done // total), done, total, failed)
    if sys.stderr.isatty():
        print("\r" + text, end="\n" if done == total else "", file=sys.stderr, flush=True)
    elif done % (total // 10) == 0 or done == total:
        print(text, file=sys.stderr, flush=True)


async def main(workdir: str) -> int:
    async with loom.AsyncClient() as c:
        prepare = await c.submit(["mkdir", "-p", workdir + "/parts"], name="prepare")
        parts = await asyncio.gather(*(
            c.submit(["sh", "-c", "echo $((%d * %d)) > parts/%d" % (i, i, i)], cwd=workdir, name="part",
                     dependency="afterok:%s" % prepare.id)
            for i in range(1, PARTS + 1)))
        total = await c.submit(["sh", "-c", "cat parts/* | awk '{ s += $1 } END { print s }' > total"],
                               cwd=workdir, name="total",
                               dependency="afterok:" + ":".join(str(p.id) for p in parts))
        jobs = [prepare, *parts, total]
        done = failed = 0
        for ended in asyncio.as_completed([j.wait(timeout=300) for j in jobs]):
            result = await ended
            done += 1
            if not result.success:
                failed += 1
                print("job %s (%s)" % (result.id, result.why_not()), file=sys.stderr)
            progress(done, len(jobs), failed)
    if failed:
        return 1
    with open(os.path.join(workdir, "total")) as f:
        print("sum of squares 1..%d = %s" % (PARTS, f.read().strip()))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else tempfile.mkdtemp())))
