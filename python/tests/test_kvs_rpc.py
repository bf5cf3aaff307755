"""The KVS, raw requests and the connection: finding the instance as the
command line does, and errors that carry the broker's errno and text."""

import errno
import os
import subprocess

import pytest

import loom
from conftest import Instance, loom_bin


def test_kvs_put_get_round_trip(client, instance):
    client.kvs.put("py.text", "hello\nworld")
    assert client.kvs.get("py.text") == "hello\nworld"
    client.kvs.put({"py.dir.a": "1", "py.dir.b": {"n": [1, 2]}})
    assert client.kvs.get("py.dir.b") == '{"n":[1,2]}'
    assert sorted(client.kvs.ls("py.dir")) == ["a", "b"]
    # What the command line reads is what was written.
    out = subprocess.run([loom_bin(), "kvs", "get", "py.dir.a"], capture_output=True, text=True,
                         env=dict(os.environ, LOOM_URI=instance.uri), timeout=30)
    assert out.stdout == "1\n"
    client.kvs.unlink("py.dir")
    with pytest.raises(loom.LoomError) as e:
        client.kvs.get("py.dir.a")
    assert e.value.errno == errno.ENOENT and e.value.topic == "kvs.lookup"
    with pytest.raises(loom.LoomError) as e:
        client.kvs("no-such-namespace").get("x")
    assert e.value.errno == errno.ENOENT


def test_rpc_to_an_unknown_method_raises_the_brokers_errno_and_text(client):
    with pytest.raises(loom.LoomError) as e:
        client.rpc("nosuch.method")
    assert e.value.errno == errno.ENOSYS
    assert e.value.strerror == "no service nosuch is registered (topic nosuch.method)"
    assert str(e.value) == "nosuch.method: no service nosuch is registered (topic nosuch.method)"
    assert isinstance(e.value, OSError)
    with pytest.raises(loom.LoomError) as e:
        client.rpc("broker.info", rank=7)
    assert e.value.errno == errno.ENXIO


def test_rpc_reaches_any_rank_and_streams(client):
    assert client.rpc("broker.info", rank=1)["rank"] == 1
    assert client.rpc("broker.ping", {"hi": 1}) == {"hi": 1}
    job = client.submit(["true"])
    job.wait(timeout=30)
    events = list(client.rpc_stream("job-info.eventlog", {"id": int(job.id)}, timeout=30))
    assert events[-1]["event"]["name"] == "clean"


def test_the_instance_is_found_as_the_command_line_finds_it(instance, tmp_path, monkeypatch):
    monkeypatch.delenv("LOOM_URI", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    if not os.path.exists("/run/loom/local.sock"):
        with pytest.raises(loom.LoomError) as e:
            loom.Client()
        assert e.value.errno == errno.ENOENT and "no instance found: set LOOM_URI" in str(e.value)
    latest = tmp_path / ("loom-%d" % os.getuid()) / "latest"
    latest.parent.mkdir()
    latest.write_text(instance.uri + "\n")
    with loom.Client() as c:
        assert c.uri == instance.uri and c.rpc("broker.info")["rank"] == 0
    monkeypatch.setenv("LOOM_URI", instance.uri.replace("local://", ""))  # a plain path works too
    with loom.Client() as c:
        assert c.rpc("broker.info")["size"] == 2


def test_connecting_to_nothing_fails_at_once(tmp_path):
    with pytest.raises(loom.LoomError) as e:
        loom.Client("local://%s/none.sock" % tmp_path)
    assert e.value.errno == errno.ECONNREFUSED and "cannot connect to local://" in str(e.value)
    with pytest.raises(loom.LoomError, match="unsupported URI"):
        loom.Client("tcp://host:1")


def test_a_lost_broker_ends_every_wait_with_an_error():
    inst = Instance(size=1, cores=1)
    try:
        c = loom.Client(inst.uri)
        job = c.submit(["sleep", "300"])
        inst.stop()
        with pytest.raises(loom.LoomError) as e:
            job.wait(timeout=30)
        assert e.value.errno == errno.ECONNRESET and "lost the connection to the broker" in str(e.value)
        with pytest.raises(loom.LoomError):
            c.rpc("broker.info")
    finally:
        if inst.proc.poll() is None:
            inst.kill()
