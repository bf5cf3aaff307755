"""`cmake --install` puts the package where /usr/bin/python3 imports it
from: installed into a temporary prefix (the component `python` alone,
to keep it fast), it imports from there and runs a job."""

import os
import re
import shutil
import subprocess

import pytest

BUILD = os.environ.get("LOOM_BUILD_DIR")
CMAKE = os.environ.get("LOOM_CMAKE_COMMAND") or shutil.which("cmake")
REL = os.environ.get("LOOM_PYTHON_INSTALL_DIR")

pytestmark = pytest.mark.skipif(not (BUILD and CMAKE and REL), reason="run by ctest (it sets LOOM_BUILD_DIR)")


def test_the_default_prefix_is_on_python3s_path():
    prefix = os.environ.get("LOOM_INSTALL_PREFIX", "/usr/local")
    if os.path.isabs(REL):
        where = REL
    else:
        where = os.path.join(prefix, REL)
    path = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('\\n'.join(sys.path))"],
                          capture_output=True, text=True, check=True, cwd="/").stdout.split("\n")
    assert where in path, "%s is not on /usr/bin/python3's sys.path" % where


def test_the_installed_package_runs_a_job(instance, tmp_path):
    if os.path.isabs(REL):
        pytest.skip("LOOM_PYTHON_INSTALL_DIR is absolute: not under a prefix")
    prefix = tmp_path / "prefix"
    r = subprocess.run([CMAKE, "--install", BUILD, "--prefix", str(prefix), "--component", "python"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    site = prefix / REL
    assert (site / "loom" / "__init__.py").is_file()
    assert not list(site.rglob("__pycache__")) and not list(site.rglob("*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(LOOM_URI=instance.uri, PYTHONPATH=str(site))
    one_liner = "import loom; print(loom.Client().submit([\"true\"]).wait())"
    r = subprocess.run(["/usr/bin/python3", "-c", one_liner], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"JobResult\(id=\u0192\w+, result=COMPLETED, returncode=0\)\n", r.stdout), r.stdout
    where = subprocess.run(["/usr/bin/python3", "-c", "import loom; print(loom.__file__)"], capture_output=True,
                           text=True, env=env, cwd=str(tmp_path), timeout=60).stdout.strip()
    assert where == str(site / "loom" / "__init__.py")
