"""The `mesh` fixture: the real `comfypod up` (supervisord, gunicorn, nginx, downloader,
fake ComfyUI, code-server stand-in) on a temporary workspace with free loopback ports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from services import credentials
from services.settings import Settings, load_settings
from services.supervisor import Supervisor
from tests.conftest import base_environ
from tests.support.ports import free_port

PORT_VARIABLES = (
    "COMFYUI_PORT",
    "ADMIN_PORT",
    "CODE_SERVER_PORT",
    "JUPYTER_PORT",
    "SSH_PORT",
    "COMFYUI_INTERNAL_PORT",
    "ADMIN_INTERNAL_PORT",
    "CODE_SERVER_INTERNAL_PORT",
    "JUPYTER_INTERNAL_PORT",
)
PUBLIC = {
    "comfyui": "comfyui_port",
    "admin": "admin_port",
    "code-server": "code_server_port",
    "jupyter": "jupyter_port",
}


@dataclass
class Mesh:
    env: dict[str, str]
    settings: Settings
    process: subprocess.Popen
    log_path: Path
    password: str
    descendants: set[int] = field(default_factory=set)

    @property
    def supervisor(self) -> Supervisor:
        return Supervisor(self.settings.supervisor_socket)

    @property
    def api_token(self) -> str:
        return credentials.api_token(self.settings).reveal()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{getattr(self.settings, PUBLIC[service])}"

    def internal_url(self, service: str) -> str:
        field_name = PUBLIC[service].replace("_port", "_internal_port")
        return f"http://127.0.0.1:{getattr(self.settings, field_name)}"

    def enabled(self) -> list[str]:
        from services.programs import PROGRAMS, program

        names = [p.name for p in PROGRAMS if self.env.get(p.enable_variable, "true") == "true"]
        return [n for n in names if not program(n).find(self.settings)]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def remember_tree(self) -> None:
        try:
            self.descendants |= {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass

    def wait_running(self, timeout: float = 60.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        names = self.enabled()
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"comfypod up exited with {self.process.returncode}:\n{self.output()}")
            if self.settings.supervisor_socket.exists():
                states = self.supervisor.wait_for(names, timeout=0.5)
                if all(states.get(n) == "RUNNING" for n in names):
                    self.remember_tree()
                    return states
            time.sleep(0.2)
        raise AssertionError(f"programs not RUNNING after {timeout}s: {states}\n{self.output()[-4000:]}")

    def wait_http(self, url: str, timeout: float = 30.0, expect=(200,)) -> requests.Response:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                response = requests.get(url, timeout=2, allow_redirects=False)
                if response.status_code in expect:
                    return response
                last = response.status_code
            except requests.RequestException as err:
                last = err
            time.sleep(0.2)
        raise AssertionError(f"{url} did not answer {expect} in {timeout}s (last: {last})")

    def login(self, service: str = "admin") -> requests.Session:
        """A requests session logged in through nginx on ``service``'s public port."""
        session = requests.Session()
        base = self.url(service)
        page = session.get(f"{base}/_auth/login", timeout=10)
        token = _csrf_from(page.text)
        response = session.post(
            f"{base}/_auth/login",
            data={"password": self.password, "csrf_token": token, "next": "/"},
            timeout=10,
            allow_redirects=False,
        )
        assert response.status_code in (302, 303), f"login failed: {response.status_code} {response.text[:300]}"
        return session

    def stop(self, timeout: float = 30.0) -> int | None:
        self.remember_tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pid in list(self.descendants):
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        return self.process.returncode

    def alive_descendants(self) -> list[psutil.Process]:
        alive = []
        for pid in self.descendants:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                pass
        return alive


def _csrf_from(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    return match.group(1) if match else ""


@pytest.fixture
def mesh_factory(workspace: Path, run_dir: Path, tmp_path: Path):
    """Start a mesh: ``mesh_factory(ENABLE_JUPYTER="true", wait=True)``; stopped at teardown."""
    started: list[Mesh] = []

    def start(wait: bool = True, timeout: float = 60.0, **overrides: str) -> Mesh:
        ports = {name: str(free_port()) for name in PORT_VARIABLES}
        defaults = {"ENABLE_JUPYTER": "false", "FAKE_COMFYUI_STEP_DELAY": "0.01"}
        env = base_environ(workspace, run_dir, **{**ports, **defaults, **overrides})
        settings = load_settings(env)
        log_path = tmp_path / f"mesh-{len(started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "comfypod"), "up"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        mesh = Mesh(env, settings, process, log_path, env.get("ACCESS_PASSWORD", ""))
        started.append(mesh)
        if wait:
            mesh.wait_running(timeout)
            if settings.enable_admin:
                mesh.wait_http(f"{mesh.internal_url('admin')}/healthz", timeout)
        return mesh

    yield start
    for mesh in started:
        mesh.stop()


@pytest.fixture
def mesh(mesh_factory) -> Mesh:
    return mesh_factory()

