"""The build targets of the Makefile, through `make -n` (nothing is built)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAKE = "docker buildx bake -f docker/docker-bake.hcl -f docker/cuda-matrix.json"


def make(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "--no-print-directory", "-n", f"PYTHON={sys.executable}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def last_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.strip().splitlines()[-1].split())


def test_build_one_cuda_version():
    assert last_line(make("build", "CUDA=12.6")) == f"{BAKE} cu126"


@pytest.mark.parametrize(
    ("cuda", "target"), [("12.4", "cu124"), ("12.5", "cu125"), ("12.8", "cu128"), ("12.9", "cu129"), ("13.0", "cu130")]
)
def test_build_each_version(cuda, target):
    assert last_line(make("build", f"CUDA={cuda}")) == f"{BAKE} {target}"


def test_default_is_13_0():
    assert last_line(make("build")) == f"{BAKE} cu130"


def test_unknown_cuda_fails_at_once_listing_the_supported_ones():
    done = make("build", "CUDA=12.7")
    assert done.returncode != 0
    assert "CUDA=12.7 is not supported; supported: 12.4 12.5 12.6 12.8 12.9 13.0" in done.stderr
    assert "docker" not in done.stdout


def test_build_all_push_print():
    assert last_line(make("build-all")) == f"{BAKE} all"
    assert last_line(make("push", "CUDA=12.8")) == f"{BAKE} --push cu128"
    assert last_line(make("push", "CUDA=all")) == f"{BAKE} --push all"
    assert last_line(make("print", "CUDA=12.9")) == f"{BAKE} --print cu129"


def test_extra_bake_flags_pass_through():
    line = last_line(make("build", "CUDA=12.8", "BAKE_FLAGS=--set *.cache-from=type=gha --load"))
    assert line == f"{BAKE} --set *.cache-from=type=gha --load cu128"


def test_sage_outside_docker():
    line = last_line(make("sage", "CUDA=12.8", "ARCH=8.9 9.0"))
    assert line.endswith('-m ci.sage build --python .venv/bin/python --cuda 12.8 --arch "8.9 9.0"')
    assert make("sage", "CUDA=11.8").returncode != 0
    assert "--cuda" not in last_line(make("sage"))  # nvcc's own version decides
