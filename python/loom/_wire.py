"""loom's wire encoding, version 1 (docs/protocols/messages.md), sans I/O.

A connection opens with an 8-byte greeting from each side; then each side
sends frames, ``length:u32 body``, little-endian. The body is a 29-byte
header, the topic, the route (8 bytes a hop) and a JSON payload.
``Protocol`` turns requests into bytes and bytes into responses, matched
to their requests by matchtag; the clients (``client.py``, ``aio.py``)
only move the bytes.
"""

from __future__ import annotations

import errno
import json
import os
import struct
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from .errors import LoomError

MAGIC = b"LOOM"
VERSION = 1
ROLE_CLIENT, ROLE_BROKER, ROLE_LINK = 1, 2, 3
_ROLE_NAMES = {
    ROLE_CLIENT: "a loom client",
    ROLE_BROKER: "a loom broker's client socket",
    ROLE_LINK: "a loom broker-to-broker link",
}

TYPE_REQUEST, TYPE_RESPONSE, TYPE_EVENT = 1, 2, 4
FLAG_STREAMING, FLAG_NORESPONSE, FLAG_PRIVATE = 0x01, 0x02, 0x04
NODEID_ANY = 0xFFFFFFFF
USERID_UNKNOWN = 0xFFFFFFFF
ROLE_OWNER, ROLE_USER = 0x1, 0x2

MAX_FRAME = 64 << 20
MAX_HOPS = 64
_HEADER = struct.Struct("<BBBBIIIIiIB")  # 29 bytes, up to and with topic_len
assert _HEADER.size == 29


@dataclass
class Response:
    """One response: its request's topic and matchtag, an errno (0 for
    success) and the payload's bytes (JSON text, or empty)."""

    topic: str
    matchtag: int
    errnum: int
    payload: bytes
    streaming: bool

    def json(self):
        """The payload as JSON ({} when empty); EPROTO if it is not JSON."""
        if not self.payload:
            return {}
        try:
            return json.loads(self.payload)
        except ValueError:
            raise LoomError(errno.EPROTO, "unexpected response from " + self.topic, self.topic) from None

    def error(self) -> LoomError:
        """The error an error response stands for: its errstr, else
        strerror (docs/protocols/messages.md, "Requests and responses")."""
        text = ""
        if self.payload:
            try:
                text = json.loads(self.payload).get("errstr", "")
            except (ValueError, AttributeError):
                text = ""
        return LoomError(self.errnum, text or os.strerror(self.errnum), self.topic)


def greeting(role: int = ROLE_CLIENT) -> bytes:
    return MAGIC + bytes([VERSION, role, 0, 0])


def check_greeting(data: bytes, expect: int = ROLE_BROKER) -> None:
    """Raises the error a client reports for a peer that is not a loom
    broker's client socket."""
    if data[:4] != MAGIC:
        shown = data.decode("latin-1").encode("unicode_escape").decode()
        raise LoomError(errno.EPROTO, 'not a loom peer (it began with "%s")' % shown)
    if data[4] != VERSION:
        raise LoomError(
            errno.EPROTONOSUPPORT,
            "the peer speaks loom protocol version %d; this side speaks version %d" % (data[4], VERSION),
        )
    if data[5] != expect:
        found = _ROLE_NAMES.get(data[5], "role %d" % data[5])
        raise LoomError(errno.EPROTOTYPE, "expected %s, found %s" % (_ROLE_NAMES[expect], found))


def encode_request(
    topic: str,
    payload: bytes,
    matchtag: int,
    nodeid: int = NODEID_ANY,
    streaming: bool = False,
    userid: int = USERID_UNKNOWN,
    rolemask: int = 0,
) -> bytes:
    t = topic.encode()
    if not 1 <= len(t) <= 255 or any(c < 0x21 or c > 0x7E for c in t):
        raise ValueError("a topic is 1-255 printable characters without spaces, not %r" % topic)
    flags = FLAG_STREAMING if streaming else 0
    body = (
        _HEADER.pack(VERSION, TYPE_REQUEST, flags, 0, matchtag, nodeid, userid, rolemask, 0, 0, len(t))
        + t
        + payload
    )
    if len(body) > MAX_FRAME:
        raise ValueError("the request is %d bytes, over the 64 MiB frame limit" % len(body))
    return struct.pack("<I", len(body)) + body


class Protocol:
    """A client connection's state: the greeting, partial frames, and the
    requests in flight by matchtag, each with a sink that gets its
    responses. Not thread-safe: its owner serialises calls."""

    def __init__(self, userid: int = USERID_UNKNOWN, rolemask: int = 0):
        self._buf = bytearray()
        self._greeted = False
        self._sinks: Dict[int, Optional[Callable[[Response], None]]] = {}
        self._next_tag = 1
        self._userid = userid
        self._rolemask = rolemask
        self.closed: Optional[LoomError] = None

    def request(self, topic: str, payload, sink: Callable[[Response], None], nodeid: int = NODEID_ANY,
                streaming: bool = False):
        """The matchtag and the bytes of a request; `sink` gets its
        responses (a streaming one's until its error response)."""
        if self.closed is not None:
            raise self.closed
        if payload is None:
            data = b""
        elif isinstance(payload, (bytes, bytearray)):
            data = bytes(payload)
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = json.dumps(payload, separators=(",", ":")).encode()
        tag = self._take_tag()
        frame = encode_request(topic, data, tag, nodeid, streaming, self._userid, self._rolemask)
        self._sinks[tag] = sink
        return tag, frame

    def in_flight(self) -> int:
        """Requests not yet ended (abandoned ones included)."""
        return len(self._sinks)

    def abandon(self, tag: int) -> None:
        """Drop what still comes for `tag`. The tag stays taken until its
        request ends, so that a late response is never given to another."""
        if tag in self._sinks:
            self._sinks[tag] = None

    def feed(self, data: bytes) -> None:
        """Takes bytes read from the broker; calls the sinks of the
        responses they complete. A stream that cannot be decoded closes."""
        self._buf += data
        if not self._greeted:
            if len(self._buf) < 8:
                return
            try:
                check_greeting(bytes(self._buf[:8]))
            except LoomError as e:
                self.fail_all(e)
                raise
            del self._buf[:8]
            self._greeted = True
        while len(self._buf) >= 4:
            (length,) = struct.unpack_from("<I", self._buf)
            if length > MAX_FRAME or length < 29:
                e = LoomError(errno.EPROTO, "a frame of %d bytes from the broker: not loom's encoding" % length)
                self.fail_all(e)
                raise e
            if len(self._buf) < 4 + length:
                return
            body = bytes(self._buf[4 : 4 + length])
            del self._buf[: 4 + length]
            self._dispatch(body)

    def _dispatch(self, body: bytes) -> None:
        (_v, mtype, flags, hops, tag, _node, _uid, _role, errnum, _seq, tlen) = _HEADER.unpack_from(body)
        if mtype != TYPE_RESPONSE or hops > MAX_HOPS:
            return  # events and requests are not for a plain client
        start = 29 + tlen + 8 * hops
        topic = body[29 : 29 + tlen].decode("ascii", "replace")
        streaming = bool(flags & FLAG_STREAMING)
        resp = Response(topic, tag, errnum, body[start:], streaming)
        if tag not in self._sinks:
            return
        sink = self._sinks[tag]
        if not streaming or errnum != 0:
            del self._sinks[tag]
        if sink is not None:
            sink(resp)

    def fail_all(self, error: LoomError) -> None:
        """The connection is gone: every request in flight ends with
        `error` (as an error response of its own)."""
        if self.closed is None:
            self.closed = error
        sinks, self._sinks = self._sinks, {}
        for tag, sink in sinks.items():
            if sink is not None:
                payload = json.dumps({"errstr": error.strerror}).encode()
                sink(Response("", tag, error.errno or errno.ECONNRESET, payload, False))

    def _take_tag(self) -> int:
        for _ in range(1 << 32):
            tag = self._next_tag
            self._next_tag = 1 if self._next_tag >= 0xFFFFFFFF else self._next_tag + 1
            if tag not in self._sinks:
                return tag
        raise LoomError(errno.EAGAIN, "every matchtag is in use")
