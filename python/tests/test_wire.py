"""The wire encoding against docs/protocols/messages.md, and job ids
against src/base/fluid.cpp; no instance needed."""

import errno
import json
import struct

import pytest

import loom
from loom import _wire


def test_request_is_the_documented_example():
    # docs/protocols/messages.md, "Frames": broker.ping to rank 3, matchtag 1.
    frame = _wire.encode_request("broker.ping", b'{"seq":0}', 1, nodeid=3)
    assert len(frame) == 53
    assert frame[:4] == struct.pack("<I", 49)
    assert frame[4:8] == bytes([1, 1, 0, 0])
    assert frame[8:16] == bytes([1, 0, 0, 0, 3, 0, 0, 0])
    assert frame[16:24] == bytes([0xFF] * 4 + [0] * 4)
    assert frame[24:32] == bytes(8)
    assert frame[32:33] == bytes([11]) and frame[33:44] == b"broker.ping"
    assert frame[44:] == b'{"seq":0}'


def response(tag, errnum=0, payload=b"", streaming=False, topic=b"job-info.eventlog", hops=1):
    header = struct.pack("<BBBBIIIIiIB", 1, 2, 1 if streaming else 0, hops, tag, 0, 0, 1, errnum, 0, len(topic))
    body = header + topic + b"\0" * 8 * hops + payload
    return struct.pack("<I", len(body)) + body


def test_responses_reach_their_request_whatever_the_chunks():
    p = _wire.Protocol()
    got = {}
    tag_a, _ = p.request("a.x", {}, lambda r: got.setdefault("a", []).append(r))
    tag_b, _ = p.request("b.x", {}, lambda r: got.setdefault("b", []).append(r), streaming=True)
    data = (_wire.greeting(_wire.ROLE_BROKER) + response(tag_b, payload=b'{"n":1}', streaming=True)
            + response(tag_a, payload=b'{"ok":true}') + response(tag_b, errnum=errno.ENODATA, streaming=True))
    for i in range(len(data)):  # one byte at a time
        p.feed(data[i:i + 1])
        if i == len(data) - 2:
            assert p.in_flight() == 1  # the stream, until its end
    assert p.in_flight() == 0
    assert got["a"][0].json() == {"ok": True}
    assert [r.errnum for r in got["b"]] == [0, errno.ENODATA]
    assert got["b"][0].json() == {"n": 1}


def test_an_error_response_is_its_errno_and_text():
    p = _wire.Protocol()
    got = []
    tag, _ = p.request("nosuch.x", {}, got.append)
    p.feed(_wire.greeting(_wire.ROLE_BROKER) + response(tag, errno.ENOSYS, b'{"errstr":"no service nosuch"}',
                                                          topic=b"nosuch.x"))
    e = got[0].error()
    assert (e.errno, e.strerror, e.topic) == (errno.ENOSYS, "no service nosuch", "nosuch.x")
    assert str(e) == "nosuch.x: no service nosuch"
    p2 = _wire.Protocol()
    tag, _ = p2.request("x.y", {}, got.append)
    p2.feed(_wire.greeting(_wire.ROLE_BROKER) + response(tag, errno.EPERM, topic=b"x.y"))
    assert got[1].error().strerror == "Operation not permitted"


@pytest.mark.parametrize("greeting,code,text", [
    (b"GET / HT", errno.EPROTO, 'not a loom peer (it began with "GET / HT")'),
    (b"LOOM\x02\x02\0\0", errno.EPROTONOSUPPORT, "the peer speaks loom protocol version 2; this side speaks version 1"),
    (b"LOOM\x01\x03\0\0", errno.EPROTOTYPE,
     "expected a loom broker's client socket, found a loom broker-to-broker link"),
])
def test_a_refused_greeting_fails_every_request(greeting, code, text):
    p = _wire.Protocol()
    got = []
    p.request("broker.ping", {}, got.append)
    with pytest.raises(loom.LoomError) as e:
        p.feed(greeting)
    assert (e.value.errno, e.value.strerror) == (code, text)
    assert got[0].error().strerror == text
    with pytest.raises(loom.LoomError):
        p.request("broker.ping", {}, got.append)


def test_a_late_response_to_an_abandoned_request_is_dropped_and_its_tag_kept():
    p = _wire.Protocol()
    got = []
    tag, _ = p.request("job-manager.wait", {}, got.append)
    p.abandon(tag)
    tag2, _ = p.request("job-manager.wait", {}, got.append)
    assert tag2 != tag
    assert p.in_flight() == 2
    p.feed(_wire.greeting(_wire.ROLE_BROKER) + response(tag, payload=b"{}"))
    assert got == [] and p.in_flight() == 1


def test_job_ids_print_as_f58_and_parse_every_form():
    jid = loom.JobId(32564576256)
    assert str(jid) == "\u0192rccxzK" and jid.dec == "32564576256"
    for form in ("\u0192rccxzK", "frccxzK", "32564576256", " 32564576256 ", "0x795000000",
                 "0000.0007.9500.0000"):
        assert loom.JobId(form) == jid, form
    assert f"{jid}" == "\u0192rccxzK"
    assert json.dumps(int(jid)) == "32564576256"


@pytest.mark.parametrize("bad,why", [
    ("", "empty"), ("abc", "not a number"), ("f0", "not an f58 digit"), ("f", "no digits after the f58 prefix"),
    ("18446744073709551616", "too large"), ("1.2", "dotted hex wants four groups of four digits"),
])
def test_a_bad_job_id_is_a_clear_error(bad, why):
    with pytest.raises(ValueError, match="invalid job id") as e:
        loom.JobId(bad)
    assert e.value.strerror.endswith(why)
    assert e.value.errno == errno.EINVAL
