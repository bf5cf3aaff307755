"""AsyncClient: the same methods as coroutines, many requests in flight
on one connection."""

import asyncio
import errno

import pytest

import loom


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_gather_of_many_submits_and_waits(instance):
    async def main():
        async with loom.AsyncClient(instance.uri) as c:
            jobs = await asyncio.gather(*(c.submit(["sh", "-c", "exit %d" % (i % 3)]) for i in range(100)))
            assert len({j.id for j in jobs}) == 100
            results = await asyncio.gather(*jobs)
            return [r.returncode for r in results]

    assert run(main()) == [i % 3 for i in range(100)]


def test_async_eventlog_kvs_rpc_and_errors(instance):
    async def main():
        c = loom.AsyncClient(instance.uri)  # connects on first use
        try:
            job = await c.submit(["true"], name="async")
            names = [e.name async for e in job.eventlog(timeout=30)]
            assert names[-1] == "clean"
            assert (await job).success
            await c.kvs.put("py.async", "v")
            assert await c.kvs.get("py.async") == "v"
            assert (await c.jobs(ids=[job.id]))[0]["name"] == "async"
            with pytest.raises(loom.LoomError) as e:
                await c.rpc("nosuch.method")
            assert e.value.errno == errno.ENOSYS
            held = await c.submit(["true"], urgency="hold")
            with pytest.raises(loom.TimedOut):
                await held.wait(timeout=0.2)
            await held.cancel()
            assert (await held.wait(timeout=30)).result == "CANCELED"
            with pytest.raises(TypeError, match="did you mean 'nodes'"):
                await c.submit(["true"], node=1)
        finally:
            await c.close()

    run(main())


def test_sync_and_async_clients_agree(instance, client):
    job = client.submit(["true"])

    async def main():
        async with loom.AsyncClient(instance.uri) as c:
            return await c.wait(str(job.id), timeout=30)

    assert run(main()) == job.wait(timeout=30)
