"""The Makefile's environment step works from an interpreter that refuses installs (PEP 668) and leaves it alone.

A Debian/Ubuntu system Python carries an ``EXTERNALLY-MANAGED`` marker next to its standard library, and pip
refuses to install into it. The test builds such an interpreter (a copy of the running one's base binary whose
standard library is linked in, plus the marker and an empty site-packages), then runs the real Makefile's
``setup`` on a tiny project: a small local wheel stands in for torch, so it takes seconds (pip fetches only
setuptools, for the editable install's isolated build, as it does for the real project).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pip
import pytest

from tests.helpers import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed"),
]

MARKER = "[externally-managed]\nError=this interpreter belongs to the system: use a virtual environment\n"


def _system_python(root: Path, leave_out: tuple[str, ...] = ()) -> Path:
    """A non-venv interpreter under ``root`` whose stdlib carries the PEP 668 marker; returns its executable.

    Args:
        root: an empty folder to build it in.
        leave_out: standard-library entries it lacks (Debian ships ``ensurepip`` in a separate package).
    """
    base = Path(sys._base_executable).resolve()  # the interpreter itself, not the venv this test may run in
    stdlib = Path(sysconfig.get_path("stdlib"))
    lib = root / "lib" / stdlib.name
    lib.mkdir(parents=True)
    for entry in stdlib.iterdir():  # links, not copies: the standard library is tens of MB
        if entry.name not in ("site-packages", "dist-packages", "EXTERNALLY-MANAGED", *leave_out):
            (lib / entry.name).symlink_to(entry)
    (lib / "site-packages").mkdir()
    (lib / "EXTERNALLY-MANAGED").write_text(MARKER)
    (root / "bin").mkdir()
    python = root / "bin" / "python3"
    shutil.copy2(base, python)  # a copy: a link would lead the interpreter back to the original's prefix
    return python


def _wheel(folder: Path, name: str) -> Path:
    """A minimal pure-Python wheel of one module ``name``, built by hand so no build backend is needed."""
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _snapshot(root: Path) -> set[tuple[str, int]]:
    """Every path under ``root`` (links not followed) with its size: what an install into it would change."""
    return {(str(p.relative_to(root)), p.lstat().st_size) for p in root.rglob("*")}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    # no bytecode writes: anything that lands in the system interpreter is an install. pip may still reach the
    # configured index: the editable install builds in an isolated environment that fetches setuptools.
    env.update(PYTHONDONTWRITEBYTECODE="1", HOME=str(tmp_path / "home"))
    return env


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The real Makefile's `setup` run once on a tiny project from a PEP 668 interpreter."""
    tmp = tmp_path_factory.mktemp("makefile")
    python = _system_python(tmp / "system")
    env = _env(tmp)
    stand_in = _wheel(tmp, "tiny_torch")
    project = tmp / "project"
    (project / "tiny_project").mkdir(parents=True)
    (project / "tiny_project" / "__init__.py").write_text("VALUE = 2\n")
    (project / "setup.py").write_text(
        "from setuptools import setup\n"
        "setup(name='tiny_project', version='1.0', packages=['tiny_project'],\n"
        "      extras_require={'examples': [], 'test': []})\n")
    shutil.copy(REPO / "Makefile", project / "Makefile")
    before = _snapshot(tmp / "system")
    args = ["make", "-C", str(project), "setup", f"PYTHON={python}", f"TORCH_SPEC={stand_in}"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    return {"tmp": tmp, "python": python, "env": env, "project": project, "args": args, "stand_in": stand_in,
            "before": before, "result": result}


def test_the_interpreter_refuses_installs(made, tmp_path):
    """The premise: pip run by that interpreter itself stops with PEP 668's error."""
    pip_home = tmp_path / "pip_home"
    pip_home.mkdir()
    (pip_home / "pip").symlink_to(Path(pip.__file__).parent)
    env = dict(made["env"], PYTHONPATH=str(pip_home))
    result = subprocess.run([str(made["python"]), "-m", "pip", "install", str(made["stand_in"])], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "externally-managed-environment" in result.stdout + result.stderr


def test_setup_makes_the_project_environment_and_installs_into_it(made):
    result = made["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    venv_python = made["project"] / ".venv" / "bin" / "python"
    probe = ("import tiny_project, tiny_torch, sys; "
             "print(tiny_project.__file__); print(tiny_torch.VALUE); print(sys.prefix != sys.base_prefix)")
    out = subprocess.run([str(venv_python), "-c", probe], env=made["env"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    # editable: the package is imported from the project folder, not copied into the environment
    assert out == [str(made["project"] / "tiny_project" / "__init__.py"), "1", "True"]
    assert (made["project"] / ".venv" / ".setup-done").read_text() == f"TORCH_SPEC={made['stand_in']}\n"


def test_the_interpreter_is_left_untouched(made):
    assert made["result"].returncode == 0, made["result"].stderr
    assert _snapshot(made["tmp"] / "system") == made["before"]
    result = subprocess.run([str(made["python"]), "-c", "import tiny_project"], env=made["env"],
                            cwd=made["tmp"], capture_output=True, text=True, timeout=60)
    assert "No module named 'tiny_project'" in result.stderr


def test_the_environment_is_reused_and_an_ignored_setting_is_warned_about(made):
    assert made["result"].returncode == 0, made["result"].stderr
    again = subprocess.run([*made["args"], "-q"], env=made["env"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "has no effect" not in again.stderr, again.stderr  # up to date: nothing runs
    other = [*made["args"][:-1], "TORCH_SPEC=torch==2.13.0", "-q"]
    ignored = subprocess.run(other, env=made["env"], capture_output=True, text=True, timeout=60)
    assert ignored.returncode == 0
    assert ignored.stderr.count("TORCH_SPEC=torch==2.13.0 has no effect") == 1, ignored.stderr


def test_an_interpreter_without_venv_support_fails_clearly_and_leaves_no_environment(tmp_path):
    python = _system_python(tmp_path / "system", leave_out=("ensurepip",))
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Makefile", project / "Makefile")
    (project / "setup.py").write_text("")
    result = subprocess.run(["make", "-C", str(project), "setup", f"PYTHON={python}"], env=_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"could not create .venv with {python} -m venv" in result.stderr
    assert "apt install python3-venv" in result.stderr
    assert not (project / ".venv").exists()  # a half-made one would pass for finished next time
