"""The blocking client: ``Client()`` connects to the instance (LOOM_URI,
else your latest one) over its Unix socket and speaks the wire protocol
of docs/protocols/messages.md itself; the methods are ``_api.py``'s.

Threads may share a Client: one thread at a time reads the socket and
hands each response to the request it answers, waking the others."""

from __future__ import annotations

import collections
import errno
import select
import socket
import threading
import time
from typing import Any, Iterator, Optional

from . import _api
from ._instance import credentials, instance_uri, uri_to_path
from ._wire import Protocol, greeting
from .errors import LoomError, TimedOut
from .ids import JobId


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if not timeout >= 0:
        raise ValueError("timeout must be None or a non-negative number of seconds, not %r" % (timeout,))
    return time.monotonic() + timeout


class JobFuture:
    """A submitted job: ``id`` (a JobId; ``str()`` is its F58),
    ``wait(timeout)`` for its JobResult, ``cancel()``, ``eventlog()``."""

    def __init__(self, client: "Client", jid: JobId):
        self.client = client
        self.id = jid

    def wait(self, timeout: Optional[float] = None) -> _api.JobResult:
        """Its JobResult once it has ended; TimedOut after `timeout` s."""
        return self.client.wait(self.id, timeout)

    def result(self, timeout: Optional[float] = None) -> _api.JobResult:
        """Its JobResult; JobFailed if it did not succeed."""
        return self.wait(timeout).check()

    def cancel(self, note: str = "") -> None:
        self.client.cancel(self.id, note=note)

    def eventlog(self, follow: bool = True, timeout: Optional[float] = None) -> Iterator[_api.Event]:
        return self.client.eventlog(self.id, follow=follow, timeout=timeout)

    def __repr__(self) -> str:
        return "JobFuture(%s)" % self.id


class Client(_api.ApiMethods):
    """A connection to a loom instance. ``uri``: "local:///path" or a
    socket path; by default LOOM_URI, else your latest instance (as the
    ``loom`` command finds it)."""

    def __init__(self, uri: Optional[str] = None):
        self.uri = instance_uri(uri)
        path = uri_to_path(self.uri)
        self._proto = Protocol(*credentials())
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise LoomError(errno.ECONNREFUSED, "cannot connect to %s: %s" % (self.uri, e.strerror)) from None
        self._sock.sendall(greeting())
        self._send_lock = threading.Lock()
        self._cv = threading.Condition()
        self._reading = False

    def close(self) -> None:
        with self._cv:
            if self._proto.closed is None:
                self._proto.fail_all(LoomError(errno.ECONNRESET, "the client was closed"))
            self._sock.close()
            self._cv.notify_all()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _future(self, jid: JobId) -> JobFuture:
        return JobFuture(self, jid)

    # The driver: runs an operation of _api.py, blocking.
    def _run(self, op, then=None):
        value = None
        try:
            call = next(op)
            while True:
                try:
                    answer = self._call(call)
                except LoomError as e:
                    call = op.throw(e)
                else:
                    call = op.send(answer)
        except StopIteration as stop:
            value = stop.value
        return then(value) if then else value

    def _send(self, topic: str, payload: Any, sink, nodeid: int, streaming: bool) -> int:
        with self._cv:
            tag, frame = self._proto.request(topic, payload, sink, nodeid, streaming)
        try:
            with self._send_lock:
                self._sock.sendall(frame)
        except OSError as e:
            self._lost(e)
        return tag

    def _lost(self, e: Exception) -> None:
        why = getattr(e, "strerror", None) or str(e) or "closed by the broker"
        with self._cv:
            self._proto.fail_all(LoomError(errno.ECONNRESET, "lost the connection to the broker: " + why))
            self._cv.notify_all()

    def _pump(self, ready, deadline: Optional[float]) -> bool:
        """Reads the socket (or lets another thread read it) until
        `ready()` or `deadline`; whether ready."""
        while True:
            with self._cv:
                while self._reading and not ready():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cv.wait(left)
                if ready():
                    return True
                self._reading = True
            try:
                while not ready():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    # select, not a socket timeout, which would apply to
                    # other threads' sends too.
                    try:
                        readable, _, _ = select.select([self._sock], [], [], left)
                        if not readable:
                            return False
                        data = self._sock.recv(1 << 16)
                    except (OSError, ValueError) as e:
                        self._lost(e)
                        continue
                    if not data:
                        self._lost(OSError(errno.ECONNRESET, "closed by the broker"))
                        continue
                    with self._cv:
                        try:
                            self._proto.feed(data)
                        except LoomError:
                            pass  # every request in flight has the error
                        self._cv.notify_all()
                return True
            finally:
                with self._cv:
                    self._reading = False
                    self._cv.notify_all()

    def _call(self, call: _api.Call):
        box: list = []
        tag = self._send(call.topic, call.payload, box.append, call.nodeid, False)
        if not self._pump(lambda: box, _deadline(call.timeout)):
            with self._cv:
                self._proto.abandon(tag)
            raise TimedOut("timed out after %gs" % call.timeout, call.topic)
        resp = box[0]
        if resp.errnum:
            raise resp.error()
        return resp.json()

    def rpc_stream(self, topic: str, payload: Any = None, *, rank: Optional[int] = None,
                   timeout: Optional[float] = None) -> Iterator[Any]:
        """A streaming request: yields each response's payload until the
        stream ends (ENODATA); an error response raises it. `timeout`
        bounds the whole stream. Leaving the loop early drops the rest."""
        deadline = _deadline(timeout)
        nodeid = _api.rank_nodeid(rank)
        q: collections.deque = collections.deque()
        tag = self._send(topic, {} if payload is None else payload, q.append, nodeid, True)
        ended = False
        try:
            while True:
                if not self._pump(lambda: q, deadline):
                    raise TimedOut("timed out after %gs" % timeout, topic)
                resp = q.popleft()
                ended = bool(resp.errnum)
                payload = _api.stream_payload(resp)
                if payload is _api.STREAM_END:
                    return
                yield payload
        finally:
            if not ended:
                with self._cv:
                    self._proto.abandon(tag)

    def eventlog(self, jid, follow: bool = True, timeout: Optional[float] = None) -> Iterator[_api.Event]:
        """The job's events (Event: name, timestamp, context), each as it
        is posted; with `follow` until ``clean``, else those so far.
        `timeout` bounds the whole iteration (TimedOut)."""
        jid = JobId(getattr(jid, "id", jid))
        topic = "job-info.eventlog"
        for payload in self.rpc_stream(topic, {"id": int(jid), "follow": follow}, timeout=timeout):
            yield _api.parse_event(payload, topic)
