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
