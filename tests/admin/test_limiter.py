"""LoginLimiter: free attempts, doubling waits with a cap, reset, expiry, shared between processes."""

from __future__ import annotations

from admin.limiter import LoginLimiter


def test_free_attempts_then_doubling_waits(tmp_path):
    limiter = LoginLimiter(tmp_path / "l.sqlite3", free=3, base_delay=2, max_delay=10)
    now = 1000.0
    assert [limiter.failed("a", now) for _ in range(3)] == [0, 0, 0]
    assert limiter.retry_after("a", now) == 0
    assert limiter.failed("a", now) == 2
    assert limiter.retry_after("a", now + 0.5) == 1.5
    assert limiter.failed("a", now) == 4
    assert limiter.failed("a", now) == 8
    assert limiter.failed("a", now) == 10  # capped
    assert limiter.retry_after("a", now + 10) == 0


def test_clients_are_independent(tmp_path):
    limiter = LoginLimiter(tmp_path / "l.sqlite3", free=0, base_delay=5)
    limiter.failed("a", 0)
    assert limiter.retry_after("a", 1) == 4
    assert limiter.retry_after("b", 1) == 0


def test_success_resets(tmp_path):
    limiter = LoginLimiter(tmp_path / "l.sqlite3", free=0)
    limiter.failed("a")
    limiter.succeeded("a")
    assert limiter.failures("a") == 0 and limiter.retry_after("a") == 0


def test_old_failures_are_forgotten(tmp_path):
    limiter = LoginLimiter(tmp_path / "l.sqlite3", free=2, window=60)
    limiter.failed("a", 0)
    limiter.failed("a", 1)
    assert limiter.failed("a", 1000) == 0  # the window passed: counting starts again
    assert limiter.failures("a") == 1


def test_shared_through_the_database(tmp_path):
    """Two limiters on one file (two gunicorn workers) see each other's failures."""
    path = tmp_path / "state" / "l.sqlite3"
    one, two = LoginLimiter(path, free=1, base_delay=3), LoginLimiter(path, free=1, base_delay=3)
    one.failed("a", 100)
    assert two.failed("a", 100) == 3
    assert one.retry_after("a", 101) == 2
