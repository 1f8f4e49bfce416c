"""Per-app objects the views share: settings, supervisor client, catalog store, job queue."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app

from services.errors import ComfyPodError
from services.settings import Settings
from services.supervisor import Supervisor

_lock = threading.Lock()


class Unavailable(ComfyPodError):
    """A part of the pod this page needs is not installed (a module missing from this build)."""


class InputError(ComfyPodError):
    """A value sent by a page or an API client is not allowed (HTTP 400)."""


class Conflict(ComfyPodError):
    """The request clashes with the current state (a download running, a job already finished): HTTP 409."""


def current_settings() -> Settings:
    return current_app.extensions["comfypod.settings"]


def _shared(key: str, build) -> Any:
    extensions = current_app.extensions
    value = extensions.get(key)
    if value is None:
        with _lock:
            value = extensions.get(key)
            if value is None:
                value = extensions[key] = build()
    return value


def supervisor(timeout: float = 5.0) -> Supervisor:
    """A fresh client per call: an XML-RPC proxy is not safe to share between threads. Reads
    answer at once; a start or stop passes a longer ``timeout`` (see admin.services)."""
    return Supervisor(current_settings().supervisor_socket, timeout=timeout)


def catalog_store():
    """The ``presets.catalog.CatalogStore`` of this process (hot reload by mtime)."""

    from presets.catalog import shared_store

    # the process-wide store, so the admin and presets.install share one parsed catalog
    return shared_store(current_settings())


def job_queue():
    """The app's ``presets.queue.JobQueue`` on the workspace's queue database."""

    def build():
        try:
            from presets.queue import JobQueue
        except ImportError as err:
            raise Unavailable(f"the download queue is not available in this build ({err})") from None
        settings = current_settings()
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        return JobQueue(settings.queue_db)

    return _shared("comfypod.queue", build)
