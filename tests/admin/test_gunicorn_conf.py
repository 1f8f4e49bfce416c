"""The gunicorn settings module and its quiet access log."""

from __future__ import annotations

import importlib
import logging

import pytest


@pytest.fixture
def conf(monkeypatch, settings):
    import services.settings

    monkeypatch.setattr(services.settings, "load_settings", lambda environ=None: settings)
    import admin.gunicorn_conf as module

    return importlib.reload(module)


def test_settings(conf, settings):
    assert conf.bind == f"127.0.0.1:{settings.admin_internal_port}"
    assert conf.worker_class == "gthread" and conf.threads >= 4
    assert conf.workers == settings.admin_workers
    assert conf.control_socket_disable is True
    assert callable(conf.post_fork)  # workers die with their master (services.parent_death)


class _Response:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.status = f"{status} X"
        self.sent = 0
        self.headers = []


@pytest.mark.parametrize(
    "method, path, status, logged",
    [("GET", "/_auth/verify", 401, False), ("GET", "/healthz", 200, False), ("GET", "/presets/_jobs", 200, False),
     ("GET", "/presets/_jobs", 500, True), ("GET", "/presets", 200, True), ("POST", "/services/x/_y", 200, True),
     ("POST", "/_auth/login", 302, True), ("GET", "/static/style.css", 304, False)],
)
def test_quiet_access_log(conf, method, path, status, logged, monkeypatch):
    from gunicorn.config import Config

    logger = conf.QuietAccessLogger(Config())
    seen = []
    monkeypatch.setattr(conf.Logger, "access", lambda self, *args: seen.append(args))
    logger.access(_Response(status), None, {"PATH_INFO": path, "REQUEST_METHOD": method}, 0.01)
    assert bool(seen) is logged
    logging.getLogger("gunicorn.error").handlers.clear()


def test_workers_die_with_a_master_killed_by_sigkill(workspace, run_dir, tmp_path):
    """The OOM killer or `kill -9` on the master: no worker lives on holding the port, so the
    master supervisord starts next binds it at once (it was blocked for seconds before)."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    from tests.conftest import base_environ
    from tests.support.ports import free_port
    from tests.support.processes import alive

    port = free_port()
    env = base_environ(workspace, run_dir, ADMIN_INTERNAL_PORT=str(port), ADMIN_WORKERS="2")
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    root = Path(__file__).resolve().parents[2]
    with open(tmp_path / "gunicorn.log", "wb") as log:
        master = subprocess.Popen([gunicorn, "--config", "python:admin.gunicorn_conf", "admin.wsgi:app"],
                                  cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while len(psutil.Process(master.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [p.pid for p in psutil.Process(master.pid).children()]
        assert len(workers) == 2, (tmp_path / "gunicorn.log").read_text()
        master.kill()
        master.wait(5)

        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "workers outlived their master"
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))  # free for the next master
    finally:
        if master.poll() is None:
            master.kill()
        for child in psutil.Process().children(recursive=True):
            if child.pid != master.pid and "gunicorn" in " ".join(child.cmdline()):
                child.kill()
