"""Failed-login throttle per client, shared by every gunicorn worker through a small SQLite table.

The first ``free`` failures cost only a short pause; after that the client must wait, twice as
long after each further failure (capped), before a password is even checked again. A success
clears the client's record; records older than ``window`` seconds are forgotten.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS login_failures (
    client TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure REAL NOT NULL,
    blocked_until REAL NOT NULL
)
"""


class LoginLimiter:
    def __init__(self, db_path: Path, *, free: int = 5, base_delay: float = 2.0, max_delay: float = 300.0,
                 window: float = 900.0) -> None:
        self.db_path = db_path
        self.free = free
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.window = window
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=5.0, isolation_level=None)
        if not self._ready:
            conn.execute(_SCHEMA)
            self._ready = True
        return conn

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds this client must still wait before its next attempt (0 when it may try)."""
        now = time.time() if now is None else now
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT blocked_until FROM login_failures WHERE client = ?", (client,)).fetchone()
        return max(0.0, row[0] - now) if row else 0.0

    def failed(self, client: str, now: float | None = None) -> float:
        """Record a failure; return how long the client is now blocked (0 while still free)."""
        now = time.time() if now is None else now
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT failures, last_failure FROM login_failures WHERE client = ?", (client,)
            ).fetchone()
            failures = 1 if not row or now - row[1] > self.window else row[0] + 1
            blocked = 0.0
            if failures > self.free:
                blocked = min(self.max_delay, self.base_delay * 2 ** (failures - self.free - 1))
            conn.execute(
                "INSERT OR REPLACE INTO login_failures (client, failures, last_failure, blocked_until)"
                " VALUES (?, ?, ?, ?)",
                (client, failures, now, now + blocked),
            )
            conn.execute("DELETE FROM login_failures WHERE last_failure < ?", (now - self.window - self.max_delay,))
            conn.execute("COMMIT")
        return blocked

    def succeeded(self, client: str) -> None:
        with closing(self._connect()) as conn:
            conn.execute("DELETE FROM login_failures WHERE client = ?", (client,))

    def failures(self, client: str) -> int:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT failures FROM login_failures WHERE client = ?", (client,)).fetchone()
        return row[0] if row else 0
