"""gunicorn settings for the admin (used as ``--config python:admin.gunicorn_conf``)."""

from services.settings import load_settings

_settings = load_settings()

bind = f"127.0.0.1:{_settings.admin_internal_port}"
workers = _settings.admin_workers
worker_class = "gthread"
threads = 8  # server-sent event streams each hold a thread
timeout = 120
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level
proc_name = "comfypod-admin"
forwarded_allow_ips = "127.0.0.1"
