"""Fixtures for the Python-environment tests: ``wheel_index`` (a PEP 503 index on loopback, a
stand-in for PyPI) and ``pyenv_pod`` (a fake image with its own venv, a ComfyUI stand-in and a
workspace, driven through the real ``comfypod`` CLI run by the image's interpreter)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.settings import Settings, load_settings
from tests.conftest import base_environ
from tests.support import pyenv_kit

# the small packages the index offers; cptinyhello plays torch's part (pinned by the image)
INDEX_PACKAGES = (
    ("cptinyhello", "1.0", ()),
    ("cptinyhello", "2.0", ()),
    ("cpnodedep", "0.5", ("cptinyhello==2.0",)),
    ("cpplain", "1.2", ()),
    ("cpplain", "1.3", ()),
)


@pytest.fixture
def wheel_index(tmp_path: Path):
    index = pyenv_kit.WheelIndex(tmp_path / "index")
    for name, version, requires in INDEX_PACKAGES:
        index.add(name, version, requires=requires)
    index.start()
    yield index
    index.stop()


@dataclass
class Pod:
    """One pod: ``app`` (the image: /app with venv/), ``comfyui`` and ``workspace`` (the volume)."""

    root: Path
    app: Path
    comfyui: Path
    workspace: Path
    run_dir: Path
    env: dict[str, str]
    constraints: str | None
    image_wheels: tuple[Path, ...]
    program_env: dict[str, str] | None = None  # what supervisord gives programs, after up()

    @property
    def python(self) -> Path:
        return self.app / "venv" / "bin" / "python"

    def build(self) -> Pod:
        pyenv_kit.make_image(self.app, self.comfyui, constraints=self.constraints, packages=self.image_wheels)
        return self

    def recreate(self) -> Pod:
        """A new container from the same image: /app and ComfyUI fresh, the workspace kept."""
        shutil.rmtree(self.app)
        shutil.rmtree(self.comfyui)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.program_env = None
        return self.build()

    def settings(self, **overrides: str) -> Settings:
        return load_settings({**self.env, **overrides})

    def up(self, **overrides: str) -> dict[str, str]:
        """``comfypod up`` without supervisord: every start-up step, in this process; returns
        (and keeps) the environment the programs would get."""
        from services import startup

        prepared = startup.prepare(self.settings(**overrides), base_env={**self.env, **overrides})
        self.program_env = prepared.env
        return prepared.env

    def start(self, **overrides: str) -> dict[str, str]:
        """The start-up steps this area needs (configs, the Python environment), in this process,
        and the programs' environment as ``comfypod up`` builds it; quicker than ``up()``."""
        from services import paths, pyenv, render

        settings = self.settings(**overrides)
        paths.ensure_workspace(settings.workspace)
        render.write_configs(settings)
        pyenv.prepare_environment(settings)
        env = {**self.env, **overrides, **settings.environment()}
        env.update(pyenv.environment(settings, env))
        self.program_env = env
        return env

    def comfypod(self, *args: str, check: bool = True, timeout: float = 180, **overrides: str):
        """The CLI as a program (or a terminal) runs it: the image's python, the programs' env."""
        env = {**(self.program_env or self.env), **overrides}
        result = subprocess.run([str(self.python), "-m", "services.cli", *args], env=env, cwd=self.workspace,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"comfypod {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def start_comfyui(self, **overrides: str) -> dict:
        """The comfyui program once (sync, then the stand-in loads nodes and exits); its report."""
        report = self.workspace / "output" / "pyenv-report.json"
        report.unlink(missing_ok=True)
        result = self.comfypod("comfyui", COMFYUI_ARGS="--quick-test-for-ci", **overrides)
        data = json.loads(report.read_text())
        data["log"] = result.stdout + result.stderr
        return data


@pytest.fixture
def pyenv_pod(tmp_path: Path, workspace: Path, run_dir: Path, wheel_index):
    """``pyenv_pod(constraints="cptinyhello==1.0\\n", image=("cptinyhello", "1.0"))`` -> Pod."""

    def factory(constraints: str | None = None, image: tuple[tuple[str, str], ...] = (), name: str = "",
                **env: str) -> Pod:
        """``name`` gives a second pod its own folders (another machine, another volume)."""
        base = tmp_path / name if name else tmp_path
        app = base / "app"
        comfyui = base / "ComfyUI"
        ws, run = workspace, run_dir
        if name:
            ws = base / "workspace"
            ws.mkdir(parents=True)
            run = Path(tempfile.mkdtemp(prefix="cp-"))
            extra_runs.append(run)
        wheels = tuple(wheel_index.wheel(name, version) for name, version in image)
        overrides = {
            "APP_DIR": str(app),
            "COMFYUI_DIR": str(comfyui),
            "COMFYUI_PYTHON": str(app / "venv" / "bin" / "python"),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_INDEX_URL": wheel_index.url,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            **env,
        }
        pod = Pod(base, app, comfyui, ws, run, base_environ(ws, run, **overrides), constraints, wheels)
        return pod.build()

    extra_runs: list[Path] = []
    yield factory
    for run in extra_runs:
        shutil.rmtree(run, ignore_errors=True)
