"""A small per-process cache for values that may be a moment old (status scans, rendered lists).

Pages poll every second or two and many tabs (or a load test) may poll at once: each worker
computes a value at most once per ``seconds`` and serves the same object meanwhile. Actions that
change what a value shows call :func:`forget` so their own answer is fresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from flask import current_app

T = TypeVar("T")
_lock = threading.Lock()
MAX_ENTRIES = 256


def _store() -> dict[Hashable, tuple[float, Any]]:
    return current_app.extensions.setdefault("comfypod.cache", {})


def cached(key: Hashable, seconds: float, build: Callable[[], T]) -> T:
    """``build()`` at most once per ``seconds`` per key in this process."""
    store = _store()
    now = time.monotonic()
    hit = store.get(key)
    if hit is not None and now - hit[0] < seconds:
        return hit[1]
    value = build()
    with _lock:
        if len(store) >= MAX_ENTRIES:
            oldest = sorted(store.items(), key=lambda item: item[1][0])[: MAX_ENTRIES // 2]
            for old_key, _ in oldest:
                store.pop(old_key, None)
        store[key] = (time.monotonic(), value)
    return value


def forget(prefix: str) -> None:
    """Drop every entry whose key is ``prefix`` or a tuple starting with it."""
    store = _store()
    with _lock:
        for key in [k for k in store if k == prefix or (isinstance(k, tuple) and k and k[0] == prefix)]:
            store.pop(key, None)
