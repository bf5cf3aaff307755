"""Finding the instance as the command line does (src/cli/common.cpp,
README.md "Finding the instance"), and the credentials a client asks for."""

from __future__ import annotations

import errno
import os
from typing import Optional, Tuple

from ._wire import ROLE_USER, USERID_UNKNOWN
from .errors import LoomError


def latest_uri_file() -> str:
    """Where ``loom start`` records the URI of the user's latest instance."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return "%s/loom-%d/latest" % (base, os.getuid())


def instance_uri(uri: Optional[str] = None) -> str:
    """`uri` if given; else LOOM_URI; else the user's latest instance; else
    the host's broker of an instance over hosts (docs/deploy.md)."""
    if uri:
        return uri
    env = os.environ.get("LOOM_URI")
    if env:
        return env
    try:
        with open(latest_uri_file()) as f:
            line = f.readline().rstrip("\n")
        if line:
            return line
    except OSError:
        pass
    if os.path.exists("/run/loom/local.sock"):
        return "local:///run/loom/local.sock"
    raise LoomError(errno.ENOENT,
                    "no instance found: set LOOM_URI, start one with `loom start`, or start loomd --config")


def uri_to_path(uri: str) -> str:
    """The socket path of "local://PATH" or of a plain path."""
    if uri.startswith("local://"):
        return uri[len("local://"):]
    if "://" in uri:
        raise LoomError(errno.EINVAL, "unsupported URI %s (want local://PATH)" % uri)
    if not uri:
        raise LoomError(errno.EINVAL, "empty URI")
    return uri


def credentials() -> Tuple[int, int]:
    """The userid and rolemask to put on messages: unknown (the broker
    stamps them) unless LOOM_HANDLE_USERID says (honoured only for the
    instance owner, for tests of access rules)."""

    def number(name: str) -> int:
        v = os.environ.get(name)
        if not v:
            return USERID_UNKNOWN
        try:
            x = int(v, 0)
        except ValueError:
            x = -1
        if not 0 <= x <= 0xFFFFFFFE:
            raise LoomError(errno.EINVAL, "%s is not a number: %s" % (name, v))
        return x

    uid = number("LOOM_HANDLE_USERID")
    if uid == USERID_UNKNOWN:
        return USERID_UNKNOWN, 0
    rm = number("LOOM_HANDLE_ROLEMASK")
    return uid, ROLE_USER if rm == USERID_UNKNOWN else rm
