"""gunicorn settings for the admin (used as ``--config python:admin.gunicorn_conf``)."""

from gunicorn.glogging import Logger

from services.logs import mask_text
from services.parent_death import die_with_parent
from services.settings import load_settings

_settings = load_settings()

bind = f"127.0.0.1:{_settings.admin_internal_port}"
workers = _settings.admin_workers
worker_class = "gthread"
threads = 8  # long requests (a zip being streamed, an SSE stream) each hold a thread
timeout = 120
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level
proc_name = "comfypod-admin"
forwarded_allow_ips = "127.0.0.1"
control_socket_disable = True  # nothing uses gunicornc; no socket left in $HOME


def post_fork(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In each new worker: die with the master, so a master killed with SIGKILL leaves no worker
    holding the port that the next master must bind (see services.parent_death)."""
    die_with_parent(server.pid)


class QuietAccessLogger(Logger):
    """The access log without the noise: nginx's auth_request checks, health checks, and the pages'
    polling (successful GETs of ``/_…`` fragments) and static files. Errors and every change are logged,
    with credentials in the request line or referrer (``?token=…``) masked (issue 11)."""

    def atoms(self, resp, req, environ, request_time) -> dict:
        values = super().atoms(resp, req, environ, request_time)
        return {k: mask_text(v) if isinstance(v, str) else v for k, v in values.items()}

    def access(self, resp, req, environ, request_time) -> None:
        path = environ.get("PATH_INFO", "")
        status = getattr(resp, "status_code", None) or 0
        quiet = path in ("/_auth/verify", "/healthz") or (
            environ.get("REQUEST_METHOD") == "GET" and ("/_" in path or path.startswith("/static/")) and status < 400
        )
        if not quiet:
            super().access(resp, req, environ, request_time)


logger_class = QuietAccessLogger
