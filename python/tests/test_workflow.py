"""docs/python.md's workflow is python/examples/workflow.py, word for
word, and it runs: 100 jobs with dependencies and a progress line."""

import os
import re
import subprocess

from conftest import SOURCE

EXAMPLE = os.path.join(SOURCE, "python", "examples", "workflow.py")


def test_the_documented_workflow_is_the_example_file():
    with open(os.path.join(SOURCE, "docs", "python.md")) as f:
        doc = f.read()
    with open(EXAMPLE) as f:
        example = f.read()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert example in blocks, "docs/python.md's workflow differs from python/examples/workflow.py"


def test_the_workflow_runs_100_jobs_in_order(instance, tmp_path):
    env = dict(os.environ, LOOM_URI=instance.uri, PYTHONPATH=os.path.join(SOURCE, "python"))
    r = subprocess.run(["/usr/bin/python3", EXAMPLE, str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "sum of squares 1..98 = 318549\n"
    lines = r.stderr.splitlines()
    assert lines[-1] == "workflow [%s] 100/100 jobs, 0 failed" % ("#" * 30)
    assert len(lines) == 10 and lines[0].endswith(" 10/100 jobs, 0 failed")
    assert (tmp_path / "total").read_text() == "318549\n"
    assert len(os.listdir(tmp_path / "parts")) == 98
