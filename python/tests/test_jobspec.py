"""The jobspecs the client builds are those `loom submit --dry-run`
prints for the same options; bad options are refused before anything is
sent, with the errors the command line gives."""

import json
import os
import subprocess

import pytest

import loom
from conftest import loom_bin


def cli_jobspec(args, env=None):
    r = subprocess.run([loom_bin(), "submit", "--dry-run"] + args, capture_output=True, text=True,
                       env=env or dict(os.environ), timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("options,args", [
    ({}, []),
    ({"nodes": 2}, ["-N2"]),
    ({"nodes": 2, "ntasks": 5, "cores_per_task": 2}, ["-N2", "-n5", "-c2"]),
    ({"ntasks": 4, "gpus_per_task": 1}, ["-n4", "-g1"]),
    ({"nodes": 1, "ntasks": 2, "exclusive": True}, ["-N1", "-n2", "-x"]),
    ({"time_limit": "1:30:00", "name": "w", "cwd": "/tmp"}, ["-t", "1:30:00", "--job-name=w", "--cwd=/tmp"]),
    ({"time_limit": "5"}, ["-t", "5"]),
    ({"time_limit": 90}, ["-t", "90s"]),
    ({"env": {"A": "1"}, "env_remove": ["PATH"]}, ["--env=A=1", "--env-remove=PATH"]),
    ({"env": ["-*", "B=2"]}, ["--env=-*", "--env=B=2"]),
    ({"output": "out.{{id}}.{{name}}", "error": "err"}, ["--output=out.{{id}}.{{name}}", "--error=err"]),
    ({"input": "0-1", "ntasks": 2}, ["--input=0-1", "-n2"]),
    ({"setattr": {"user.tag": "x", "exec.test": {"run_duration": "1s"}}},
     ["--setattr=user.tag=x", '--setattr=exec.test={"run_duration":"1s"}']),
    ({"dependency": ["afterok:1234", "singleton"]}, ["--dependency=afterok:1234", "--dependency=singleton"]),
    ({"dependency": "afterany:1:\u0192rccxzK,after:5"}, ["--dependency=afterany:1:\u0192rccxzK,after:5"]),
])
def test_the_jobspec_is_loom_submits(options, args):
    assert loom.jobspec(["hostname", "-s"], **options) == cli_jobspec(args + ["hostname", "-s"])


def test_a_step_inside_an_allocation_names_it(monkeypatch):
    monkeypatch.setenv("LOOM_ALLOCATION", "\u0192rccxzK")
    js = loom.jobspec(["true"])
    assert js["attributes"]["system"]["allocation"] == 32564576256
    assert js == cli_jobspec(["true"])


@pytest.mark.parametrize("options,text", [
    ({"time_limit": "5x"}, 'invalid time limit "5x"'),
    ({"nodes": 0}, "nodes must be an integer in [1, 1048576], not 0"),
    ({"nodes": 3, "ntasks": 2}, "fewer tasks (2) than nodes (3)"),
    ({"exclusive": True}, "exclusive needs nodes"),
    ({"dependency": "before:1"}, 'unknown dependency type "before"'),
    ({"dependency": "afterok"}, "dependency afterok needs a job id"),
    ({"dependency": "afterok:xyz"}, 'invalid job id "xyz"'),
    ({"dependency": "singleton:1"}, "singleton takes no job id"),
    ({"output": "{{bogus}}"}, "unknown template {{bogus}}"),
    ({"env": ["NOEQUALS"]}, 'env wants NAME=VALUE, got "NOEQUALS"'),
    ({"input": "/no/such/file"}, "is neither a file nor task ranks"),
    ({"input": "0-1"}, "input: task 1 is not one of the job's 1 tasks"),
])
def test_bad_options_are_refused_clearly(options, text):
    with pytest.raises(loom.InvalidArgument) as e:
        loom.jobspec(["true"], **options)
    assert text in str(e.value)


def test_an_unknown_option_names_the_nearest():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'nodse' \(did you mean 'nodes'\?\)"):
        loom.jobspec(["true"], nodse=2)
    with pytest.raises(TypeError, match="'cores'"):
        loom.jobspec(["true"], cores=2)


def test_a_command_is_a_list_of_strings():
    for bad in ("true", [], [1]):
        with pytest.raises(ValueError, match="a command is a non-empty list of strings"):
            loom.jobspec(bad)
