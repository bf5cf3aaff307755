"""Jobspecs as ``loom submit`` builds them (src/cli/submit.cpp,
src/jobspec/jobspec.cpp): ``jobspec(["cmd", ...], nodes=2, ...)`` is the
jobspec of ``loom submit -N2 cmd ...``. The broker checks it again; this
side refuses what the command line refuses as a usage error, before
anything is sent."""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from .errors import InvalidArgument
from .ids import JobId

# The keyword options and the `loom submit` option each mirrors.
OPTIONS = {
    "nodes": "-N, --nodes",
    "ntasks": "-n, --ntasks",
    "cores_per_task": "-c, --cores-per-task",
    "gpus_per_task": "-g, --gpus-per-task",
    "exclusive": "-x, --exclusive",
    "time_limit": "-t, --time-limit",
    "name": "--job-name",
    "cwd": "--cwd",
    "setattr": "--setattr",
    "env": "--env",
    "env_remove": "--env-remove",
    "env_file": "--env-file",
    "output": "--output",
    "error": "--error",
    "input": "--input",
    "dependency": "--dependency",
}

_DEP_SCHEMES = ("after", "afterany", "afterok", "afternotok", "singleton")


def nearest(word: str, names: Iterable[str]) -> List[str]:
    """The names `word` is the start of, else those within two edits: what
    a mistyped option most likely meant (as the command line suggests)."""
    names = sorted(set(names))
    out = [n for n in names if n.startswith(word)]
    if out or len(word) <= 2:
        return out
    best = 1 if len(word) <= 4 else 2
    scored = [(_distance(word, n), n) for n in names]
    top = min((d for d, _ in scored), default=best + 1)
    return [n for d, n in scored if d == top and d <= best]


def _distance(a: str, b: str) -> int:
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def check_options(func: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    """TypeError for an unknown keyword, naming the nearest known one."""
    known = list(known)
    for key in options:
        if key not in known:
            near = nearest(key, known)
            hint = " (did you mean %s?)" % " or ".join(repr(n) for n in near) if near else ""
            raise TypeError("%s() got an unexpected keyword argument %r%s" % (func, key, hint))


def _duration(text: str, bare_unit: float, what: str) -> float:
    if text in ("inf", "infinity"):
        return math.inf
    if not text:
        raise InvalidArgument("empty " + what)
    unit = bare_unit
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units:
        unit = units[text[-1]]
        text = text[:-1]
    if not re.fullmatch(r"[0-9]*\.?[0-9]*", text) or text in ("", "."):
        raise InvalidArgument("invalid %s (e.g. 30s, 5m, 2h, 1d)" % what)
    return float(text) * unit


def time_limit(value: Union[str, int, float]) -> float:
    """Seconds from a time limit: a number of seconds, or a string as
    ``loom submit -t`` takes it: 30s, 5m, 2h, 1d, a bare number of
    minutes, inf, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. No limit
    (inf) is 0, which the jobspec reads as none."""
    if isinstance(value, bool):
        raise InvalidArgument("time_limit: a number of seconds or a string such as 5m, not %r" % value)
    if isinstance(value, (int, float)):
        if not value >= 0:
            raise InvalidArgument("time_limit must be a non-negative number of seconds, not %r" % value)
        return 0.0 if math.isinf(value) else float(value)
    if not isinstance(value, str):
        raise InvalidArgument("time_limit: a number of seconds or a string such as 5m, not %r" % (value,))
    s = value
    try:
        if ":" not in s and "-" not in s:
            secs = _duration(s, 60, "time limit")
            return 0.0 if math.isinf(secs) else secs
        days = 0
        rest = s
        with_days = "-" in s
        if with_days:
            d, rest = s.split("-", 1)
            if not d.isdigit():
                raise ValueError
            days = int(d)
        parts = [int(p) if p.isdigit() else None for p in rest.split(":")]
        if None in parts or len(parts) > 3:
            raise ValueError
        if with_days:
            secs = sum(p * u for p, u in zip(parts, (3600, 60, 1)))
        elif len(parts) == 2:
            secs = parts[0] * 60 + parts[1]
        elif len(parts) == 3:
            secs = parts[0] * 3600 + parts[1] * 60 + parts[2]
        else:
            raise ValueError
        return float(days * 86400 + secs)
    except (ValueError, InvalidArgument):
        raise InvalidArgument(
            'invalid time limit "%s" (e.g. 30s, 5m, 2h, 1d, MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS)' % s
        ) from None


def dependencies(value: Union[str, Sequence[str]]) -> List[Dict[str, str]]:
    """The jobspec objects of one or more ``--dependency`` arguments
    (TYPE:ID[:ID...][,TYPE:ID...] or singleton; docs/protocols/jobs.md,
    "Dependencies"), the ids in F58."""
    args = [value] if isinstance(value, str) else list(value)
    out = []
    for arg in args:
        if not isinstance(arg, str) or not arg:
            raise InvalidArgument("dependency: a dependency is TYPE:ID[:ID...] or singleton, not %r" % (arg,))
        for item in arg.split(","):
            scheme, colon, ids = item.partition(":")
            if not scheme:
                raise InvalidArgument('dependency: an empty item in "%s"' % arg)
            if scheme not in _DEP_SCHEMES:
                raise InvalidArgument(
                    'dependency: unknown dependency type "%s" (%s)' % (scheme, ", ".join(_DEP_SCHEMES))
                )
            if scheme == "singleton":
                if colon:
                    raise InvalidArgument("dependency: dependency singleton takes no job id")
                out.append({"scheme": "singleton", "value": ""})
                continue
            if not colon:
                raise InvalidArgument(
                    "dependency: dependency %s needs a job id (%s:ID[:ID...])" % (scheme, scheme)
                )
            for one in ids.split(":"):
                try:
                    jid = JobId(one)
                except InvalidArgument as e:
                    raise InvalidArgument("dependency: %s: %s" % (scheme, e.strerror)) from None
                out.append({"scheme": scheme, "value": jid.f58})
    return out


def _idset(text: str) -> Optional[str]:
    """`text` as a normalised idset ("0-3,5"), None if it is not one."""
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text):
        return None
    ids = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        lo, hi = int(lo), int(hi or lo)
        if hi < lo:
            return None
        ids.update(range(lo, hi + 1))
    ordered = sorted(ids)
    runs, start = [], ordered[0]
    for prev, cur in zip(ordered, ordered[1:] + [None]):
        if cur != prev + 1 if cur is not None else True:
            runs.append(str(start) if start == prev else "%d-%d" % (start, prev))
            start = cur
    return ",".join(runs)


def _input(arg: str):
    if arg == "none":
        return None
    if arg == "all":
        return {"type": "kvs", "tasks": "all"}
    ids = _idset(arg)
    if ids is not None:
        return {"type": "kvs", "tasks": ids}
    path = os.path.abspath(arg)
    if not os.path.isfile(path):
        raise InvalidArgument('input: "%s" is neither a file nor task ranks (all, 0, 0-3) nor none' % arg)
    return {"type": "file", "path": os.path.normpath(path)}


def _expand_output(path: str, name: str) -> str:
    out, at = "", 0
    while True:
        start = path.find("{{", at)
        if start < 0:
            return out + path[at:]
        end = path.find("}}", start + 2)
        if end < 0:
            raise InvalidArgument('unclosed "{{" in "%s"' % path)
        key = path[start + 2 : end]
        out += path[at:start]
        if key == "name":
            out += name
        elif key in ("id", "id.f58", "id.dec", "node"):
            out += "{{%s}}" % key
        elif key == "cc":
            raise InvalidArgument("{{cc}} is the copy's id of --cc, which this client does not submit")
        else:
            raise InvalidArgument("unknown template {{%s}} (known: {{id}}, {{id.dec}}, {{name}}, {{node}})" % key)
        at = end + 2


def _env(env, env_remove, env_file) -> Dict[str, str]:
    """The job's environment: the submitter's (without LOOM_URI), less the
    names matching each remove pattern, plus each env file's lines, plus
    each setting (docs/commands.md, "Environment")."""
    out = {k: v for k, v in os.environ.items() if k != "LOOM_URI"}
    patterns = [env_remove] if isinstance(env_remove, str) else list(env_remove or [])
    sets: List[tuple] = []
    if isinstance(env, Mapping):
        sets = [(str(k), str(v)) for k, v in env.items()]
    else:
        for rule in [env] if isinstance(env, str) else list(env or []):
            if rule.startswith("-"):
                if rule == "-":
                    raise InvalidArgument("env: -PATTERN wants a pattern, e.g. -* or -MYX_*")
                patterns.append(rule[1:])
                continue
            k, eq, v = rule.partition("=")
            if not eq or not k:
                raise InvalidArgument('env wants NAME=VALUE, got "%s"' % rule)
            sets.append((k, v))
    for pattern in patterns:
        for k in [k for k in out if fnmatch.fnmatchcase(k, pattern)]:
            del out[k]
    for path in [env_file] if isinstance(env_file, str) else list(env_file or []):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            raise InvalidArgument("env_file: cannot read " + path) from None
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[7:]
            k, eq, v = line.partition("=")
            if not eq or not k:
                raise InvalidArgument('env_file %s line %d wants NAME=VALUE, got "%s"' % (path, n, line))
            out[k] = v
    for k, v in sets:
        out[k] = v
    return out


def _count(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument("%s must be an integer in [%d, %d], not %r" % (name, low, high, value))
    return value


def _set_path(root: dict, path: str, value) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        if not isinstance(root.get(p), dict):
            root[p] = {}
        root = root[p]
    root[parts[-1]] = value


def jobspec(command: Sequence[str], **options) -> Dict[str, Any]:
    """The jobspec ``loom submit OPTIONS COMMAND...`` submits; each keyword
    is one of ``OPTIONS`` (its ``loom submit`` option beside it)."""
    check_options("jobspec", options, OPTIONS)
    if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
        raise InvalidArgument("a command is a non-empty list of strings, e.g. [\"hostname\"], not %r" % (command,))
    o = options
    nodes = _count("nodes", o["nodes"], 1, 1 << 20) if o.get("nodes") is not None else 0
    ntasks = _count("ntasks", o["ntasks"], 1, 1 << 24) if o.get("ntasks") is not None else 0
    cores = _count("cores_per_task", o.get("cores_per_task", 1), 1, 1 << 20)
    gpus = _count("gpus_per_task", o.get("gpus_per_task", 0), 0, 1 << 16)
    exclusive = bool(o.get("exclusive", False))
    tasks = ntasks or nodes or 1
    if nodes and tasks < nodes:
        raise InvalidArgument("fewer tasks (%d) than nodes (%d)" % (tasks, nodes))
    with_ = [{"type": "core", "count": cores}]
    if gpus:
        with_.append({"type": "gpu", "count": gpus})
    if nodes:
        slot = {"type": "slot", "count": -(-tasks // nodes), "label": "task", "with": with_}
        node = {"type": "node", "count": nodes, "with": [slot]}
        if exclusive or not ntasks:  # -N without -n asks for whole nodes, as in Flux
            node["exclusive"] = True
        resources = [node]
        count = {"total": tasks}
    else:
        if exclusive:
            raise InvalidArgument("exclusive needs nodes (-x needs -N)")
        resources = [{"type": "slot", "count": tasks, "label": "task", "with": with_}]
        count = {"per_slot": 1}
    duration = time_limit(o["time_limit"]) if o.get("time_limit") is not None else 0.0
    system: Dict[str, Any] = {"duration": duration}
    cwd = o.get("cwd") or os.getcwd()
    system["cwd"] = str(cwd)
    system["environment"] = _env(o.get("env"), o.get("env_remove"), o.get("env_file"))
    name = o.get("name")
    if name:
        system["job"] = {"name": str(name)}
    within = os.environ.get("LOOM_ALLOCATION")
    if within:
        try:
            system["allocation"] = int(JobId(within))
        except InvalidArgument:
            raise InvalidArgument(
                "LOOM_ALLOCATION=%s is not a job id (unset it to submit to the whole instance)" % within
            ) from None
    js: Dict[str, Any] = {
        "version": 1,
        "resources": resources,
        "tasks": [{"command": list(command), "slot": "task", "count": count}],
        "attributes": {"system": system},
    }
    output = {}
    if o.get("output"):
        output["stdout"] = {"type": "file", "path": str(o["output"])}
    if o.get("error"):
        output["stderr"] = {"type": "file", "path": str(o["error"])}
    if output:
        system.setdefault("shell", {}).setdefault("options", {})["output"] = output
    if o.get("input") is not None:
        inp = _input(str(o["input"]))
        if inp is not None:
            if inp.get("tasks", "all") != "all":
                last = max(int(r.split("-")[-1]) for r in inp["tasks"].split(","))
                if last >= tasks:
                    raise InvalidArgument("input: task %d is not one of the job's %d tasks" % (last, tasks))
            system.setdefault("shell", {}).setdefault("options", {})["input"] = inp
    setattr_ = o.get("setattr") or {}
    if not isinstance(setattr_, Mapping):
        raise InvalidArgument("setattr is a dict of KEY: VALUE, not %r" % (setattr_,))
    for key, value in setattr_.items():
        if not key:
            raise InvalidArgument("setattr wants non-empty keys")
        if not key.startswith(("system.", "user.")):
            key = "system." + key
        _set_path(js["attributes"], key, value)
    if o.get("dependency"):
        deps = js["attributes"]["system"].setdefault("dependencies", [])
        if not isinstance(deps, list):
            raise InvalidArgument("dependency: attributes.system.dependencies is not a list")
        deps.extend(dependencies(o["dependency"]))
    if output:
        shown = name or os.path.basename(command[0])
        for stream, spec in js["attributes"]["system"]["shell"]["options"]["output"].items():
            if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                try:
                    spec["path"] = _expand_output(spec["path"], shown)
                except InvalidArgument as e:
                    raise InvalidArgument("%s: %s" % ("output" if stream == "stdout" else "error", e.strerror))
    json.dumps(js)  # anything that is not JSON fails here, not on the wire
    return js
