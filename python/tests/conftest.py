"""Fixtures of the Python client's tests: the source tree's package, and a
real instance (``loom start --test-size=2``) of the built binaries.

The binaries: LOOM_BUILD_DIR/bin (what ctest sets), else LOOM_BIN_DIR,
else the release tree of this checkout."""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "python"))


def bin_dir() -> str:
    if os.environ.get("LOOM_BUILD_DIR"):
        return os.path.join(os.environ["LOOM_BUILD_DIR"], "bin")
    return os.environ.get("LOOM_BIN_DIR") or os.path.join(SOURCE, "build", "release", "bin")


def loom_bin() -> str:
    path = os.path.join(bin_dir(), "loom")
    if not os.access(path, os.X_OK):
        pytest.fail("no loom binary at %s: build it, or set LOOM_BUILD_DIR or LOOM_BIN_DIR" % path)
    return path


class Instance:
    """``loom start --test-size=SIZE``, its own process group; stopped
    with SIGTERM, which must end it with status 0 (every broker exited
    cleanly)."""

    def __init__(self, size=2, cores=4, timeout=30):
        env = {k: v for k, v in os.environ.items()
               if k not in ("LOOM_URI", "LOOM_HANDLE_USERID", "LOOM_HANDLE_ROLEMASK")}
        self.proc = subprocess.Popen(
            [loom_bin(), "start", "--test-size=%d" % size, "--cores-per-rank=%d" % cores],
            stdout=subprocess.PIPE, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0, left))
            if not ready:
                self.kill()
                pytest.fail("loom start printed no URI within %ds" % timeout)
            chunk = os.read(self.proc.stdout.fileno(), 512)
            if not chunk:
                pytest.fail("loom start exited with %s before printing its URI" % self.proc.wait())
            line += chunk
        self.uri = line.decode().strip()

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def instance():
    inst = Instance()
    old = os.environ.get("LOOM_URI")
    os.environ["LOOM_URI"] = inst.uri
    yield inst
    if old is None:
        os.environ.pop("LOOM_URI", None)
    else:
        os.environ["LOOM_URI"] = old
    assert inst.stop() == 0, "loom start did not exit cleanly"


@pytest.fixture
def client(instance):
    import loom

    with loom.Client(instance.uri) as c:
        yield c
