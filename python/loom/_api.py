"""What the sync and the asyncio clients share: every method, written once
as an *operation*, a generator that yields the requests it needs
(``Call``) and is sent each answer's payload, or thrown its error. A
client only has to drive operations: ``Client`` by blocking on its
socket, ``AsyncClient`` by awaiting (``client.py``, ``aio.py``).

The requests and their payloads are those of docs/protocols/jobs.md; the
choices (filters, defaults, what counts as an error) are those of the
command line's (src/cli/), so that a script and ``loom`` agree."""

from __future__ import annotations

import errno
import json
import os
import pwd
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import jobspec as _jobspec
from ._wire import NODEID_ANY
from .errors import InvalidArgument, JobFailed, LoomError
from .ids import JobId

# Job states as the job manager numbers them (src/job_manager/job.h).
NEW, DEPEND, PRIORITY, SCHED, RUN, CLEANUP, INACTIVE = 1, 2, 4, 8, 16, 32, 64
PENDING = DEPEND | PRIORITY | SCHED
ACTIVE = NEW | PENDING | RUN | CLEANUP
_STATE_BITS = {"NEW": NEW, "DEPEND": DEPEND, "PRIORITY": PRIORITY, "SCHED": SCHED, "RUN": RUN,
               "CLEANUP": CLEANUP, "INACTIVE": INACTIVE}
_RESULTS = ("COMPLETED", "FAILED", "CANCELED", "TIMEOUT")
PRIMARY = "primary"


@dataclass
class Call:
    """One request of an operation; its answer is the payload as JSON."""

    topic: str
    payload: Any = None
    nodeid: int = NODEID_ANY
    timeout: Optional[float] = None


@dataclass
class Event:
    """One event of an eventlog: ``name``, ``timestamp`` (wall seconds)
    and ``context`` (a dict, empty when the event has none)."""

    name: str
    timestamp: float
    context: Dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    """How a job ended, as ``job-manager.wait`` tells it: ``result``
    (COMPLETED, FAILED, CANCELED, TIMEOUT), ``success``, the largest wait
    ``status`` of its tasks (None if none ran) and the fatal
    ``exception`` ({type, severity, note}) that ended it, if one did."""

    id: JobId
    result: str
    success: bool
    status: Optional[int] = None
    exception: Optional[Dict[str, Any]] = None

    @property
    def returncode(self) -> int:
        """As ``loom job status`` exits for it: the tasks' largest exit
        code, 128+N for a task killed by signal N, 1 for a job ended by an
        exception or failed without a status."""
        if self.exception is not None:
            return 1
        if self.status is not None:
            if os.WIFSIGNALED(self.status):
                return 128 + os.WTERMSIG(self.status)
            return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else 1
        return 0 if self.success else 1

    def why_not(self) -> str:
        """One line for a job that did not succeed (``loom job wait``'s)."""
        why = self.result
        if self.exception is not None:
            note = self.exception.get("note", "")
            why += ": " + self.exception.get("type", "") + (" (%s)" % note if note else "")
        elif self.status is not None:
            why += ": status %d" % self.status
        return why

    def check(self) -> "JobResult":
        """Itself if the job succeeded; else raises JobFailed."""
        if not self.success:
            raise JobFailed(self)
        return self

    def __repr__(self) -> str:
        return "JobResult(id=%s, result=%s, returncode=%d%s)" % (
            self.id, self.result, self.returncode,
            ", exception=%s" % self.exception.get("type") if self.exception else "")


def job_result(payload: Mapping[str, Any], jid: JobId) -> JobResult:
    return JobResult(
        id=JobId(payload.get("id", jid)),
        result=str(payload.get("result", "FAILED")),
        success=bool(payload.get("success", False)),
        status=payload.get("status"),
        exception=payload.get("exception"),
    )


def parse_event(payload: Mapping[str, Any], topic: str) -> Event:
    e = payload.get("event") if isinstance(payload, Mapping) else None
    if not isinstance(e, Mapping) or not isinstance(e.get("name"), str):
        raise LoomError(errno.EPROTO, "unexpected response from " + topic, topic)
    ctx = e.get("context")
    return Event(e["name"], float(e.get("timestamp", 0)), dict(ctx) if isinstance(ctx, Mapping) else {})


STREAM_END = object()  # what stream_payload gives at the end of a stream


def stream_payload(resp) -> Any:
    """One response of a streaming request: its payload, or STREAM_END at
    the stream's end (ENODATA); an error response raises it."""
    if resp.errnum:
        if resp.errnum == errno.ENODATA:
            return STREAM_END
        raise resp.error()
    return resp.json()


def urgency_value(value: Union[int, str]) -> int:
    """0-31, or hold (0), default (16), expedite (31)."""
    named = {"hold": 0, "default": 16, "expedite": 31}
    if isinstance(value, str) and value in named:
        return named[value]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 31:
        raise InvalidArgument("urgency must be 0-31, hold, default or expedite, not %r" % (value,))
    return value


def state_mask(filter: Union[str, Sequence[str]]):
    """``loom jobs -f``'s filter: a state mask and the results asked for
    among inactive jobs (["*"] for any)."""
    words = filter.split(",") if isinstance(filter, str) else list(filter)
    mask, results = 0, []
    for w in (str(w).strip().lower() for w in words):
        if w in ("new", "depend", "priority", "sched", "run", "cleanup"):
            mask |= _STATE_BITS[w.upper()]
        elif w in ("inactive", "completed", "failed", "canceled", "timeout"):
            mask |= INACTIVE
            if w == "inactive":
                results = ["*"]
            elif "*" not in results:
                results.append(w.upper())
        elif w == "pending":
            mask |= NEW | PENDING
        elif w == "running":
            mask |= RUN | CLEANUP
        elif w == "active":
            mask |= ACTIVE
        elif w == "all":
            mask |= ACTIVE | INACTIVE
            results = ["*"]
        else:
            raise InvalidArgument(
                'unknown state or result "%s" (pending, running, active, inactive, all, a state name, or '
                "completed, failed, canceled, timeout)" % w)
    return mask, results


def user_id(user: Union[int, str]) -> int:
    """A uid from a uid or a login name; -1 for "all"."""
    if user == "all":
        return -1
    if isinstance(user, int) and not isinstance(user, bool) and 0 <= user < 1 << 32:
        return user
    if isinstance(user, str):
        if user.isdigit() and int(user) < 1 << 32:
            return int(user)
        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            pass
    raise InvalidArgument('user: no user "%s"' % (user,))


def _my_uid() -> int:
    u = os.environ.get("LOOM_HANDLE_USERID")
    return int(u, 0) if u else os.getuid()


def rank_nodeid(rank: Optional[int]) -> int:
    if rank is None:
        return NODEID_ANY
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < NODEID_ANY:
        raise InvalidArgument("rank must be a rank number or None (any), not %r" % (rank,))
    return rank


def job_ids(ids: Iterable[Any]) -> List[JobId]:
    """Job ids from ids, their strings in any form, or job futures."""
    return [JobId(getattr(i, "id", i)) for i in ids]


# The operations. Each yields Calls and returns the method's value.

def op_submit(specs: List[Dict[str, Any]], urg: int):
    r = yield Call("job-manager.submit", {"jobs": [{"jobspec": s, "urgency": urg} for s in specs]})
    ids = r.get("ids")
    if not isinstance(ids, list) or len(ids) != len(specs):
        raise LoomError(errno.EPROTO, "the job manager answered without the job ids", "job-manager.submit")
    return [JobId(i) for i in ids]


def op_wait(jid: JobId, timeout: Optional[float]):
    r = yield Call("job-manager.wait", {"id": int(jid)}, timeout=timeout)
    return job_result(r, jid)


def op_cancel(ids: List[JobId], note: str):
    r = yield Call("job-manager.cancel", {"ids": [int(i) for i in ids], "note": note})
    errors = r.get("errors") or []
    if errors:
        e = errors[0]
        raise LoomError(int(e.get("errnum", errno.EINVAL)), str(e.get("error", "cannot cancel")),
                        "job-manager.cancel")
    return [JobId(i) for i in r.get("canceled", [])]


def op_cancel_all(states, name, user, dry_run, note):
    req: Dict[str, Any] = {"all": True, "note": note}
    if user is not None:
        req["userid"] = user_id(user)
    if states is not None:
        mask, _ = state_mask(states)
        if mask & INACTIVE:
            raise InvalidArgument("states: %r is not a list of active states" % (states,))
        req["states"] = mask
    if name is not None:
        req["name"] = name
    if dry_run:
        req["dry_run"] = True
    r = yield Call("job-manager.cancel", req)
    return [JobId(i) for i in r.get("would_cancel" if dry_run else "canceled", [])]


def op_jobs(filter, all, name, user, ids, since, count):
    """``loom jobs``'s selection (src/cli/jobs.cpp), as a list of dicts."""
    want = job_ids(ids or [])
    mask = ACTIVE | INACTIVE if all or since is not None or want else ACTIVE
    results: List[str] = []
    if filter is not None:
        mask, results = state_mask(filter)
    uid = _my_uid()
    if user is not None:
        uid = user_id(user)
    elif want:
        uid = -1  # ids name the jobs; the service keeps users to their own
    t_since = 0.0
    if since is not None:
        if isinstance(since, str) and since.startswith("-"):
            t_since = time.time() - _jobspec._duration(since[1:], 1, "since")
        elif isinstance(since, (int, float)) and not isinstance(since, bool):
            t_since = float(since)
        else:
            raise InvalidArgument("since: epoch seconds or -DURATION (-6h, -1d), not %r" % (since,))
    req: Dict[str, Any] = {"states": ACTIVE | INACTIVE if want else mask}
    if uid >= 0:
        req["userid"] = uid
    if want:
        req["ids"] = [int(i) for i in want]
    # The job manager answers a long listing in parts (`more`): ask on,
    # from the oldest job listed so far.
    listed = []
    while True:
        r = yield Call("job-manager.list", req)
        part = r.get("jobs", [])
        listed.extend(part)
        if not r.get("more") or not part:
            break
        req["before"] = part[-1]["id"]
    out = []
    for j in listed:
        state = j.get("state", "")
        if not _STATE_BITS.get(state, 0) & mask:
            continue
        inactive = state == "INACTIVE"
        if results and inactive and "*" not in results and j.get("result") not in results:
            continue
        if uid >= 0 and j.get("userid", -1) != uid:
            continue
        if name is not None and j.get("name") != name:
            continue
        if t_since and inactive and j.get("t_inactive", 0.0) < t_since:
            continue
        j = dict(j)
        j["id"] = JobId(j["id"])
        out.append(j)
        if count and len(out) >= count:
            break
    return out


def op_rpc(topic: str, payload: Any, nodeid: int, timeout: Optional[float]):
    return (yield Call(topic, {} if payload is None else payload, nodeid, timeout))


def op_kvs_get(key: str, namespace: str):
    r = yield Call("kvs.lookup", {"namespace": namespace, "key": key})
    if "value" not in r:
        raise LoomError(errno.EISDIR, key + " is a directory", "kvs.lookup")
    return r["value"]


def _kvs_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode()
    return json.dumps(value, separators=(",", ":"))


def op_kvs_commit(ops: List[Dict[str, Any]], namespace: str):
    yield Call("kvs.commit", {"namespace": namespace, "ops": ops})
    return None


def op_kvs_ls(key: str, namespace: str):
    r = yield Call("kvs.lookup", {"namespace": namespace, "key": key or "."})
    return list(r["dir"]) if "dir" in r else [key]


class Kvs:
    """The key-value store (docs/kvs-layout.md): values are text. The
    primary namespace is the instance owner's; a job's user reads and
    writes its namespace ``job-ID``. Methods return what the client's
    methods do (values, or awaitables for ``AsyncClient``)."""

    def __init__(self, client, namespace: str = PRIMARY):
        self._c = client
        self.namespace = namespace

    def __call__(self, namespace: str) -> "Kvs":
        """The same store, in another namespace."""
        return Kvs(self._c, namespace)

    def get(self, key: str):
        """The value at `key` (a str); ENOENT if none, EISDIR for a directory."""
        return self._c._run(op_kvs_get(key, self.namespace))

    def put(self, key_or_items: Union[str, Mapping[str, Any]], value: Any = None):
        """Stores one key, or every item of a dict, in one transaction. A
        value that is not a str (or bytes) is stored as its JSON text."""
        items = key_or_items if isinstance(key_or_items, Mapping) else {key_or_items: value}
        if not items:
            raise InvalidArgument("kvs put: nothing to store")
        ops = [{"op": "put", "key": str(k), "value": _kvs_text(v)} for k, v in items.items()]
        return self._c._run(op_kvs_commit(ops, self.namespace))

    def unlink(self, *keys: str):
        """Removes keys and everything below them, in one transaction."""
        return self._c._run(op_kvs_commit([{"op": "unlink", "key": k} for k in keys], self.namespace))

    def ls(self, key: str = "."):
        """The names directly below directory `key`."""
        return self._c._run(op_kvs_ls(key, self.namespace))


class ApiMethods:
    """The methods of ``Client`` and ``AsyncClient``. With ``AsyncClient``
    each returns an awaitable (and the iterators are async iterators)."""

    def _run(self, op, then=None):  # the client's driver
        raise NotImplementedError

    @property
    def kvs(self) -> Kvs:
        """The KVS, primary namespace: ``kvs.get(key)``, ``kvs.put(key,
        value)``, ``kvs.unlink(key)``, ``kvs.ls(dir)``; ``kvs("job-ID")``
        for another namespace."""
        return Kvs(self)

    def submit(self, job: Union[Sequence[str], Mapping[str, Any]], *, urgency: Union[int, str] = 16, **options):
        """Submits one job: a command (a list of strings) with the options
        of ``loom submit`` as keywords (``jobspec.OPTIONS``: nodes, ntasks,
        cores_per_task, gpus_per_task, exclusive, time_limit, name, cwd,
        env, env_remove, env_file, setattr, output, error, input,
        dependency), or a whole jobspec (a dict). Returns the job's
        future once the job is stored."""
        return self._run(op_submit([self._spec(job, options)], urgency_value(urgency)),
                         lambda ids: self._future(ids[0]))

    def submit_many(self, jobs: Iterable[Union[Sequence[str], Mapping[str, Any]]], *,
                    urgency: Union[int, str] = 16, **options):
        """Submits several jobs, each a command or a jobspec, the same
        options for every command, in one request: all are stored or
        none. Returns their futures, in order."""
        specs = [self._spec(j, options) for j in jobs]
        if not specs:
            return self._run(iter(()), lambda _: [])
        return self._run(op_submit(specs, urgency_value(urgency)),
                         lambda ids: [self._future(i) for i in ids])

    @staticmethod
    def _spec(job, options):
        if isinstance(job, Mapping):
            if options:
                raise TypeError("submit() of a jobspec takes no job options (got %s)" % ", ".join(options))
            return dict(job)
        return _jobspec.jobspec(job, **options)

    def job(self, jid):
        """The future of a job already submitted (an id in any form)."""
        return self._future(JobId(getattr(jid, "id", jid)))

    def wait(self, jid, timeout: Optional[float] = None):
        """Waits for a job to end (at most `timeout` seconds: TimedOut);
        its JobResult. A job that failed is a result, not an error."""
        return self._run(op_wait(JobId(getattr(jid, "id", jid)), timeout))

    def cancel(self, *ids, note: str = ""):
        """Cancels jobs (a fatal exception of type cancel); the ids
        canceled. Every good id is canceled; the first refused one (e.g.
        EINVAL: already inactive) is then raised."""
        want = job_ids(ids)
        if not want:
            raise InvalidArgument("cancel: give job ids (or use cancel_all)")
        return self._run(op_cancel(want, note))

    def cancel_all(self, *, states=None, name: Optional[str] = None, user=None, dry_run: bool = False,
                   note: str = ""):
        """``loom cancel --all``: every active job of yours (or of `user`)
        in `states` (pending, running, ...), of job name `name`; the ids
        canceled (with `dry_run`, those that would be)."""
        return self._run(op_cancel_all(states, name, user, dry_run, note))

    def jobs(self, filter=None, *, all: bool = False, name: Optional[str] = None, user=None, ids=None,
             since=None, count: int = 0):
        """``loom jobs``: your active jobs, newest first, as dicts (the
        fields of job-manager.list, ``id`` a JobId). `filter`: states or
        results, as ``-f`` takes them ("pending,running", "completed",
        ["failed", "canceled"]); `all`: also inactive ones; `user`: a name,
        uid or "all"; `ids`: only these (any state unless `filter` says);
        `since`: inactive ones that ended since then (epoch seconds, or
        "-1h"); `count`: at most that many."""
        return self._run(op_jobs(filter, all, name, user, ids, since, count))

    def rpc(self, topic: str, payload: Any = None, *, rank: Optional[int] = None,
            timeout: Optional[float] = None):
        """One request, one response: its payload as JSON. `payload` is a
        JSON value (or str/bytes of JSON text); `rank` the broker to ask
        (None: the service wherever it is). An error response raises
        LoomError with its errno and text."""
        return self._run(op_rpc(topic, payload, rank_nodeid(rank), timeout))


def f58(jid) -> str:
    """A job id in any form, as loom prints it."""
    return JobId(jid).f58
