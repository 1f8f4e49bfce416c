"""The `fake_comfyui` fixture: tests/support/fake_comfyui/main.py on a free loopback port.

``fake_comfyui`` -> FakeComfyUI with ``.url``, ``.ws_url``, ``.state`` (prompts seen, from the
fake's test-only /__fake__/state route), ``.settings`` (test Settings whose comfyui_url points at
it), ``.hang()``, ``.crash()``, ``.stop()``. ``fake_comfyui_factory(**env)`` starts more, e.g.
``fake_comfyui_factory(FAKE_COMFYUI_STEP_DELAY="0.2")``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from services.paths import ensure_workspace
from services.render import extra_model_paths_file, render_extra_model_paths
from services.settings import Settings
from tests.support.ports import free_port

FAKE_MAIN = Path(__file__).resolve().parent.parent / "support" / "fake_comfyui" / "main.py"


@dataclass
class FakeComfyUI:
    url: str
    ws_url: str
    settings: Settings
    process: subprocess.Popen
    log_path: Path

    @property
    def state(self) -> dict:
        return requests.get(self.url + "/__fake__/state", timeout=5).json()

    @property
    def prompts(self) -> list[dict]:
        return self.state["prompts"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def hang(self, seconds: float = 3600) -> None:
        """Freeze the fake's event loop: the process lives on but answers nothing."""
        requests.post(self.url + "/__fake__/hang", params={"seconds": seconds}, timeout=5)

    def crash(self, code: int = 1) -> None:
        requests.post(self.url + "/__fake__/exit", params={"code": code}, timeout=5)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fake ComfyUI exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/system_stats", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"fake ComfyUI did not answer in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_fake_comfyui(settings: Settings, env: dict[str, str] | None = None, port: int | None = None) -> FakeComfyUI:
    """Start the fake on ``settings``' workspace; ``settings.comfyui_internal_port`` unless ``port``."""
    ensure_workspace(settings.workspace)
    config = extra_model_paths_file(settings)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(render_extra_model_paths(settings))
    port = port or settings.comfyui_internal_port
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.logs_dir / f"fake-comfyui-{port}.log"
    child_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
                 "TMPDIR": str(settings.run_dir), "FAKE_COMFYUI_STEP_DELAY": "0.01"}
    child_env.update(env or {})
    argv = [sys.executable, str(FAKE_MAIN), "--listen", "127.0.0.1", "--port", str(port),
            "--extra-model-paths-config", str(config), "--output-directory", str(settings.output_dir),
            "--input-directory", str(settings.input_dir), "--temp-directory", str(settings.run_dir / "comfyui-temp")]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=str(FAKE_MAIN.parent))
    fake = FakeComfyUI(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", settings, process, log_path)
    try:
        fake.wait_ready()
    except RuntimeError:
        fake.stop()
        raise
    return fake


@pytest.fixture
def fake_comfyui_factory(make_settings):
    started: list[FakeComfyUI] = []

    def factory(**env: str) -> FakeComfyUI:
        for _attempt in range(3):
            settings = make_settings(COMFYUI_INTERNAL_PORT=str(free_port()))
            try:
                fake = start_fake_comfyui(settings, env)
            except RuntimeError as err:
                if "address already in use" in str(err):
                    continue
                raise
            started.append(fake)
            return fake
        raise RuntimeError("could not find a free port for the fake ComfyUI")

    yield factory
    for fake in started:
        fake.stop()


@pytest.fixture
def fake_comfyui(fake_comfyui_factory) -> FakeComfyUI:
    return fake_comfyui_factory()
