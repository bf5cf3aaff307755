"""loom's Python client: submit and watch jobs, read and write the KVS,
and send any request to a loom instance (docs/python.md).

    import loom
    with loom.Client() as c:                  # LOOM_URI, else your latest instance
        job = c.submit(["hostname"], nodes=2)
        print(job.id, job.wait().returncode)

``AsyncClient`` has the same methods for asyncio."""

from ._api import ACTIVE, INACTIVE, PENDING, Event, JobResult, Kvs
from .aio import AsyncClient, AsyncJobFuture
from .client import Client, JobFuture
from .errors import InvalidArgument, JobFailed, LoomError, TimedOut
from .ids import JobId
from .jobspec import jobspec

__version__ = "0.1.0"

__all__ = [
    "ACTIVE", "INACTIVE", "PENDING", "AsyncClient", "AsyncJobFuture", "Client", "Event", "InvalidArgument",
    "JobFailed", "JobFuture", "JobId", "JobResult", "Kvs", "LoomError", "TimedOut", "jobspec",
]
