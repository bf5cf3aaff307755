"""The asyncio client: ``AsyncClient`` has ``Client``'s methods, each a
coroutine (the iterators async iterators), over the same wire protocol
(``_wire.Protocol``) and the same operations (``_api.py``).

    async with loom.AsyncClient() as c:
        jobs = await asyncio.gather(*(c.submit(["true"]) for _ in range(100)))
        results = await asyncio.gather(*(j.wait() for j in jobs))

It connects on first use; a reader task hands each response to the
request it answers."""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Any, AsyncIterator, Optional

from . import _api
from ._instance import credentials, instance_uri, uri_to_path
from ._wire import Protocol, greeting
from .errors import LoomError, TimedOut
from .ids import JobId


class AsyncJobFuture:
    """A submitted job: ``id``; ``await job`` (or ``await
    job.wait(timeout)``) for its JobResult; ``await job.cancel()``."""

    def __init__(self, client: "AsyncClient", jid: JobId):
        self.client = client
        self.id = jid

    def wait(self, timeout: Optional[float] = None):
        return self.client.wait(self.id, timeout)

    async def result(self, timeout: Optional[float] = None) -> _api.JobResult:
        """Its JobResult; JobFailed if it did not succeed."""
        return (await self.wait(timeout)).check()

    def cancel(self, note: str = ""):
        return self.client.cancel(self.id, note=note)

    def eventlog(self, follow: bool = True, timeout: Optional[float] = None):
        return self.client.eventlog(self.id, follow=follow, timeout=timeout)

    def __await__(self):
        return self.wait().__await__()

    def __repr__(self) -> str:
        return "AsyncJobFuture(%s)" % self.id


class AsyncClient(_api.ApiMethods):
    """A connection to a loom instance for asyncio; `uri` as for Client."""

    def __init__(self, uri: Optional[str] = None):
        self.uri = instance_uri(uri)
        self._proto: Optional[Protocol] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._reader_task: Optional[asyncio.Task] = None
        self._connecting: Optional[asyncio.Future] = None

    async def connect(self) -> "AsyncClient":
        """Connects now (otherwise the first request does)."""
        if self._proto is not None:
            return self
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        await asyncio.shield(self._connecting)
        return self

    async def _open(self) -> None:
        path = uri_to_path(self.uri)
        proto = Protocol(*credentials())
        try:
            reader, writer = await asyncio.open_unix_connection(path)
        except OSError as e:
            self._connecting = None
            raise LoomError(errno.ECONNREFUSED, "cannot connect to %s: %s" % (self.uri, e.strerror)) from None
        writer.write(greeting())
        self._writer = writer
        self._proto = proto
        self._reader_task = asyncio.ensure_future(self._read(reader, proto))

    async def _read(self, reader: asyncio.StreamReader, proto: Protocol) -> None:
        why = "closed by the broker"
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                proto.feed(data)
        except LoomError:
            return  # a refused greeting or a bad frame: every request has the error
        except OSError as e:
            why = e.strerror or str(e)
        except asyncio.CancelledError:
            why = "the client was closed"
        proto.fail_all(LoomError(errno.ECONNRESET, "lost the connection to the broker: " + why))

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            try:
                await self._reader_task
            except asyncio.CancelledError:
                pass
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _future(self, jid: JobId) -> AsyncJobFuture:
        return AsyncJobFuture(self, jid)

    # The driver: runs an operation of _api.py by awaiting each call.
    async def _drive(self, op, then):
        value = None
        try:
            call = next(op)
            while True:
                try:
                    answer = await self._call(call)
                except LoomError as e:
                    call = op.throw(e)
                else:
                    call = op.send(answer)
        except StopIteration as stop:
            value = stop.value
        return then(value) if then else value

    def _run(self, op, then=None):
        return self._drive(op, then)

    def _send(self, topic: str, payload: Any, sink, nodeid: int, streaming: bool) -> int:
        tag, frame = self._proto.request(topic, payload, sink, nodeid, streaming)
        self._writer.write(frame)
        return tag

    async def _call(self, call: _api.Call):
        await self.connect()
        fut = asyncio.get_running_loop().create_future()

        def sink(resp):
            if not fut.done():
                fut.set_result(resp)

        tag = self._send(call.topic, call.payload, sink, call.nodeid, False)
        try:
            resp = await asyncio.wait_for(fut, call.timeout)
        except asyncio.TimeoutError:
            self._proto.abandon(tag)
            raise TimedOut("timed out after %gs" % call.timeout, call.topic) from None
        except asyncio.CancelledError:
            self._proto.abandon(tag)
            raise
        if resp.errnum:
            raise resp.error()
        return resp.json()

    async def rpc_stream(self, topic: str, payload: Any = None, *, rank: Optional[int] = None,
                         timeout: Optional[float] = None) -> AsyncIterator[Any]:
        """A streaming request: each response's payload until the stream
        ends (ENODATA); an error response raises it; `timeout` bounds it all."""
        await self.connect()
        deadline = None if timeout is None else time.monotonic() + timeout
        q: asyncio.Queue = asyncio.Queue()
        tag = self._send(topic, {} if payload is None else payload, q.put_nowait, _api.rank_nodeid(rank), True)
        ended = False
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    resp = await asyncio.wait_for(q.get(), left)
                except asyncio.TimeoutError:
                    raise TimedOut("timed out after %gs" % timeout, topic) from None
                ended = bool(resp.errnum)
                payload = _api.stream_payload(resp)
                if payload is _api.STREAM_END:
                    return
                yield payload
        finally:
            if not ended:
                self._proto.abandon(tag)

    async def eventlog(self, jid, follow: bool = True,
                       timeout: Optional[float] = None) -> AsyncIterator[_api.Event]:
        """As Client.eventlog, an async iterator."""
        jid = JobId(getattr(jid, "id", jid))
        topic = "job-info.eventlog"
        async for payload in self.rpc_stream(topic, {"id": int(jid), "follow": follow}, timeout=timeout):
            yield _api.parse_event(payload, topic)
