#!/usr/bin/env python3
"""bench/watch_drop.py N: how long rank 0 stays busy once a client holding
N eventlog follows of one job goes away (job-info and the KVS end every
one of its watches). Run inside an instance (LOOM_URI set), e.g.

    loom start --test-size=2 -- bench/watch_drop.py 40000

It submits a held job, opens N `job-info.eventlog {follow}` streams on one
connection, reads their first events, drops the connection, and times a
broker.ping sent on a new connection at once: it is answered only once
the drop's clean-up is done. docs/performance.md, "Dropping many watches".
"""
import json
import os
import socket
import struct
import subprocess
import sys
import time

HEADER = "<BBBBIIIIiIB"  # docs/protocols/messages.md: version, type, flags, hops, matchtag, nodeid, userid, rolemask, errnum, seq, topic length


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.environ["LOOM_URI"].replace("local://", ""))
    s.sendall(b"LOOM\x01\x01\x00\x00")
    recv_exactly(s, 8)
    return s


def recv_exactly(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise EOFError("the broker closed the connection")
        out += d
    return out


def request(topic, payload, matchtag):
    t = topic.encode()
    body = struct.pack(HEADER, 1, 1, 1, 0, matchtag, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0, 0, len(t)) + t + payload
    return struct.pack("<I", len(body)) + body


def response(s):
    n, = struct.unpack("<I", recv_exactly(s, 4))
    return recv_exactly(s, n)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    loom = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "release", "bin", "loom")
    loom = os.environ.get("LOOM", loom)
    job = subprocess.run([loom, "submit", "--urgency=hold", "true"], capture_output=True, text=True, check=True).stdout.strip()
    s = connect()
    payload = json.dumps({"id": job, "follow": True}).encode()
    s.sendall(b"".join(request("job-info.eventlog", payload, i + 1) for i in range(n)))
    for _ in range(4 * n):  # submit, validate, depend, priority: every follow's first events
        response(s)
    s.close()
    t0 = time.time()
    p = connect()
    p.sendall(request("broker.ping", b"{}", 1))
    response(p)
    print("%d follows dropped: rank 0 answered a ping %.2f s later" % (n, time.time() - t0))
    subprocess.run([loom, "cancel", job], capture_output=True)


if __name__ == "__main__":
    main()
