"""admin.cache: values reused for a moment, forgotten after an action."""

from __future__ import annotations

import time

from admin.cache import MAX_ENTRIES, cached, forget


def test_cached_and_forget(admin_app):
    calls = []
    with admin_app.app_context():
        build = lambda: calls.append(1) or len(calls)  # noqa: E731
        assert cached(("k", 1), 60, build) == 1
        assert cached(("k", 1), 60, build) == 1
        assert cached(("k", 2), 60, build) == 2
        forget("k")
        assert cached(("k", 1), 60, build) == 3
        assert cached("other", 0, build) == 4  # zero seconds: always rebuilt
        time.sleep(0.01)
        assert cached("other", 0, build) == 5


def test_bounded(admin_app):
    with admin_app.app_context():
        for i in range(MAX_ENTRIES * 2):
            cached(("many", i), 60, lambda: i)  # noqa: B023
        assert len(admin_app.extensions["comfypod.cache"]) <= MAX_ENTRIES
