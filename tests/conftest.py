"""Shared fixtures. Area fixtures live in tests/plugins/*.py and are loaded here as plugins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from services.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = ROOT / "tests" / "support"
SHARED = Path(os.environ.get("COMFYPOD_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"

pytest_plugins = sorted(
    f"tests.plugins.{path.stem}" for path in (ROOT / "tests" / "plugins").glob("*.py") if path.stem != "__init__"
)


def base_environ(workspace: Path, run_dir: Path, **overrides: str) -> dict[str, str]:
    """An environment for a test pod: everything on loopback, free of the real /workspace."""
    env = {
        "WORKSPACE": str(workspace),
        "APP_DIR": str(ROOT),
        "RUN_DIR": str(run_dir),
        "COMFYUI_DIR": str(SUPPORT / "fake_comfyui"),
        "LISTEN_ADDRESS": "127.0.0.1",
        "LINK_SUPERVISOR_CONFIG": "false",
        "ACCESS_PASSWORD": "test-password-123",
        "ENABLE_SSH": "false",
        "PATH": os.pathsep.join([str(SUPPORT / "bin"), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HOME": os.environ.get("HOME", "/root"),
    }
    env.update(overrides)
    return env


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    # unix socket paths are limited to ~107 bytes: keep the run dir short
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cp-"))
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_settings(workspace: Path, run_dir: Path):
    """Build Settings for a test workspace: ``make_settings(ENABLE_JUPYTER="false", ...)``."""

    def factory(**overrides: str) -> Settings:
        return load_settings(base_environ(workspace, run_dir, **overrides))

    return factory


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference material not found at {REFERENCE} (set COMFYPOD_SHARED to its folder)")
    return REFERENCE
