"""Errors: a broker's error response becomes a LoomError carrying its
errno and its text, as the command line prints them (docs/commands.md)."""

from __future__ import annotations

import errno as _errno
from typing import Optional


class LoomError(OSError):
    """An error of loom: ``errno`` (a Linux errno, as on the wire),
    ``strerror`` (the broker's one sentence) and ``topic`` (the request
    that failed, when there was one)."""

    def __init__(self, errnum: int, text: str, topic: Optional[str] = None):
        super().__init__(errnum, text)
        self.topic = topic or None

    def __str__(self) -> str:
        return "%s: %s" % (self.topic, self.strerror) if self.topic else str(self.strerror)

    def __reduce__(self):
        return (type(self), (self.errno, self.strerror, self.topic))


class TimedOut(LoomError, TimeoutError):
    """A wait ran out of time (ETIMEDOUT). What was waited for goes on:
    waiting again picks it up."""

    def __init__(self, text: str, topic: Optional[str] = None):
        super().__init__(_errno.ETIMEDOUT, text, topic)

    def __reduce__(self):
        return (type(self), (self.strerror, self.topic))


class InvalidArgument(LoomError, ValueError):
    """A bad value given to the client (EINVAL), found before anything was
    sent: a job id that is not one, a time limit that cannot be read, an
    unknown dependency type."""

    def __init__(self, text: str):
        super().__init__(_errno.EINVAL, text)

    def __reduce__(self):
        return (type(self), (self.strerror,))


class JobFailed(LoomError):
    """Raised by ``JobResult.check()`` for a job that did not succeed."""

    def __init__(self, result):
        super().__init__(_errno.EIO, "job %s %s" % (result.id, result.why_not()))
        self.result = result

    def __reduce__(self):
        return (type(self), (self.result,))
