"""The download job queue: SQLite (WAL) under the workspace, shared by worker, admin and CLI.

A job (a preset install or one file) has files; both carry a state, bytes done and an error.
The worker claims jobs and files; the admin and the CLI read progress (one query) and ask for
cancel / pause / resume / retry by changing a job's state, which the worker notices within a
tick. The same destination asked for by two jobs is downloaded once: a file whose path is
already being fetched is not claimed again, and finishing a path finishes it in every job.
Everything is in the database, so the queue survives restarts of any process and of the pod.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.errors import DownloadError, WorkspaceError
from services.logs import mask_text

JOB_STATES = ("queued", "probing", "running", "paused", "done", "failed", "cancelled")
ACTIVE_STATES = ("queued", "probing", "running", "paused")
FINISHED_STATES = ("done", "failed", "cancelled")
FILE_STATES = ("queued", "running", "done", "failed", "cancelled")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    preset_id TEXT,
    label TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    error TEXT,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER,
    speed REAL NOT NULL DEFAULT 0,
    eta_seconds REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    path TEXT NOT NULL,
    url TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT,
    state TEXT NOT NULL DEFAULT 'queued',
    bytes_done INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS files_job ON files(job_id);
CREATE INDEX IF NOT EXISTS files_path ON files(path, state);
"""


@dataclass
class JobFile:
    path: str  # relative to workspace/models
    url: str
    state: str = "queued"
    bytes_done: int = 0
    bytes_total: int | None = None
    error: str | None = None
    size: int | None = None  # exact size from the catalog, when known
    sha256: str | None = None
    id: int = 0
    job_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """For the admin and the CLI: a token inside the URL (``?token=…``) is masked (issue 11)."""
        data = asdict(self)
        data["url"] = mask_text(self.url)
        data["error"] = mask_text(self.error) if self.error else self.error
        return data


@dataclass
class Job:
    id: int
    kind: str  # 'preset' | 'file'
    preset_id: str | None
    label: str
    state: str
    bytes_done: int
    bytes_total: int | None
    speed: float
    eta_seconds: float | None
    error: str | None
    files: list[JobFile] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def percent(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(100.0, 100.0 * self.bytes_done / self.bytes_total)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = [f.to_dict() for f in self.files]
        data["error"] = mask_text(self.error) if self.error else self.error
        data["percent"] = self.percent
        return data


_JOB_COLUMNS = ("id, kind, preset_id, label, state, bytes_done, bytes_total, speed, eta_seconds, error, "
                "created_at, updated_at")
_FILE_COLUMNS = "path, url, state, bytes_done, bytes_total, error, size, sha256, id, job_id"


def _valid_id(job_id: object) -> bool:
    """A job id SQLite can hold (a bigger number from a URL is simply no job; issue 11)."""
    return isinstance(job_id, int) and 0 < job_id < 1 << 63


def _job(row: sqlite3.Row | tuple) -> Job:
    (id_, kind, preset_id, label, state, done, total, speed, eta, error, created, updated) = row
    return Job(id=id_, kind=kind, preset_id=preset_id, label=label, state=state, bytes_done=done or 0,
               bytes_total=total, speed=speed or 0.0, eta_seconds=eta, error=error, created_at=created,
               updated_at=updated)


def _file(row: sqlite3.Row | tuple) -> JobFile:
    return JobFile(*row)


class JobQueue:
    """The queue in one SQLite file; safe to use from several threads and processes."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        self._local = threading.local()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        # URLs may carry a token: the file is private from its first byte, and SQLite gives the
        # -wal and -shm files the mode of the database (issue 11)
        # (only when it does not exist: closing any descriptor of an open database drops this
        # process's SQLite locks on it)
        if not self.db_path.exists():
            try:
                os.close(os.open(self.db_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except OSError:
                pass  # made meanwhile by another process, or _connect says what is wrong
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.executescript(SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        for path in (self.db_path, Path(f"{self.db_path}-wal"), Path(f"{self.db_path}-shm")):
            try:
                os.chmod(path, 0o600)
            except OSError:
                pass  # not there, or a volume that ignores modes: the state folder is private anyway

    # -- plumbing ----------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            try:
                conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as err:
                raise DownloadError(f"cannot open the download queue {self.db_path}: {err}") from None
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            self._local.pid = os.getpid()
        yield conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue up instead of failing)."""
        with self._connect() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as err:
                # "database or disk is full" and its kin: one line, not a crash (issue 11)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if "full" in str(err):
                    raise WorkspaceError(f"the disk of {self.db_path.parent} is full: the download queue "
                                         "cannot be written; free space and retry") from None
                raise DownloadError(f"the download queue {self.db_path} cannot be written: {err}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- creating jobs -------------------------------------------------------------------------
    def enqueue(self, kind: str, label: str, files: Iterable[JobFile], preset_id: str | None = None) -> int:
        items = list(files)
        if kind not in ("preset", "file"):
            raise ValueError(f"unknown job kind {kind!r}")
        now = time.time()
        total = sum(f.size or 0 for f in items) if all(f.size is not None for f in items) else None
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO jobs (kind, preset_id, label, state, bytes_total, created_at, updated_at) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (kind, preset_id, label, total, now, now),
            )
            job_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT INTO files (job_id, position, path, url, size, sha256, bytes_total) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job_id, i, f.path, f.url, f.size, f.sha256, f.size) for i, f in enumerate(items)],
            )
        return job_id

    def find_active(self, *, preset_id: str | None = None, paths: Iterable[str] | None = None) -> Job | None:
        """An unfinished job for ``preset_id``, or a single-file job for exactly ``paths``."""
        with self._connect() as conn:
            marks = ",".join("?" for _ in ACTIVE_STATES)
            if preset_id is not None:
                row = conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE preset_id = ? AND state IN ({marks}) ORDER BY id LIMIT 1",
                    (preset_id, *ACTIVE_STATES),
                ).fetchone()
                return self._with_files(conn, _job(row)) if row else None
            wanted = sorted(paths or [])
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE kind = 'file' AND state IN ({marks}) ORDER BY id",
                ACTIVE_STATES,
            ).fetchall()
            for row in rows:
                job = self._with_files(conn, _job(row))
                if sorted(f.path for f in job.files) == wanted:
                    return job
        return None

    # -- reading -------------------------------------------------------------------------------
    def _with_files(self, conn: sqlite3.Connection, job: Job) -> Job:
        job.files = [_file(r) for r in conn.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE job_id = ? ORDER BY position", (job.id,))]
        return job

    def job(self, job_id: int) -> Job | None:
        if not _valid_id(job_id):
            return None
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return self._with_files(conn, _job(row)) if row else None

    def jobs(self, limit: int = 50) -> list[Job]:
        """The newest jobs first, with their files."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            return [self._with_files(conn, _job(r)) for r in rows]

    def active(self) -> list[Job]:
        """Unfinished jobs (queued, probing, running, paused), oldest first, with their files."""
        with self._connect() as conn:
            marks = ",".join("?" for _ in ACTIVE_STATES)
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY id", ACTIVE_STATES
            ).fetchall()
            return [self._with_files(conn, _job(r)) for r in rows]

    def progress(self, recent_seconds: float = 300.0) -> dict[str, Any]:
        """One cheap query: unfinished jobs plus those finished in the last ``recent_seconds``.

        Returns ``{"jobs": [job dicts without files], "active", "bytes_done", "bytes_total",
        "speed", "eta_seconds"}`` (totals over unfinished jobs).
        """
        marks = ",".join("?" for _ in ACTIVE_STATES)
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ({marks}) OR updated_at >= ? ORDER BY id",
                (*ACTIVE_STATES, time.time() - recent_seconds),
            ).fetchall()
        jobs = [_job(r) for r in rows]
        active = [j for j in jobs if j.state in ACTIVE_STATES]
        speed = sum(j.speed for j in active if j.state == "running")
        done = sum(j.bytes_done for j in active)
        total = sum(j.bytes_total or 0 for j in active)
        eta = (total - done) / speed if speed > 0 and total >= done else None
        return {
            "jobs": [{k: v for k, v in j.to_dict().items() if k != "files"} for j in jobs],
            "active": len(active),
            "bytes_done": done,
            "bytes_total": total,
            "speed": speed,
            "eta_seconds": eta,
        }

    # -- control (admin, CLI) ------------------------------------------------------------------
    def _set_state(self, job_id: int, allowed: tuple[str, ...], state: str, file_sql: str | None = None) -> bool:
        if not _valid_id(job_id):
            return False
        with self._write() as conn:
            marks = ",".join("?" for _ in allowed)
            cur = conn.execute(
                f"UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND state IN ({marks})",
                (state, time.time(), job_id, *allowed),
            )
            if cur.rowcount and file_sql:
                conn.execute(file_sql, (job_id,))
            return bool(cur.rowcount)

    def cancel(self, job_id: int) -> bool:
        """Stop a job and drop its partial files (the worker removes the .part files)."""
        return self._set_state(
            job_id, ACTIVE_STATES, "cancelled",
            "UPDATE files SET state = 'cancelled' WHERE job_id = ? AND state IN ('queued', 'running')",
        )

    def pause(self, job_id: int) -> bool:
        """Stop a job and keep its partial files for ``resume``."""
        return self._set_state(job_id, ("queued", "probing", "running"), "paused")

    def resume(self, job_id: int) -> bool:
        return self._set_state(
            job_id, ("paused",), "queued",
            "UPDATE files SET state = 'queued' WHERE job_id = ? AND state = 'running'",
        )

    def retry(self, job_id: int) -> bool:
        """Queue a failed or cancelled job again (its finished files stay done)."""
        ok = self._set_state(
            job_id, ("failed", "cancelled"), "queued",
            "UPDATE files SET state = 'queued', error = NULL WHERE job_id = ? AND state != 'done'",
        )
        if ok:
            with self._write() as conn:
                conn.execute("UPDATE jobs SET error = NULL WHERE id = ?", (job_id,))
        return ok

    def delete(self, job_id: int) -> bool:
        """Forget a finished job."""
        marks = ",".join("?" for _ in FINISHED_STATES)
        if not _valid_id(job_id):
            return False
        with self._write() as conn:
            cur = conn.execute(f"DELETE FROM jobs WHERE id = ? AND state IN ({marks})", (job_id, *FINISHED_STATES))
            return bool(cur.rowcount)

    def clear_finished(self, older_than: float = 0.0) -> int:
        marks = ",".join("?" for _ in FINISHED_STATES)
        with self._write() as conn:
            cur = conn.execute(
                f"DELETE FROM jobs WHERE state IN ({marks}) AND updated_at <= ?",
                (*FINISHED_STATES, time.time() - older_than),
            )
            return cur.rowcount

    # -- worker side ---------------------------------------------------------------------------
    def recover(self) -> int:
        """On worker start: jobs and files left in flight by a dead worker are queued again."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', speed = 0, eta_seconds = NULL, updated_at = ? "
                "WHERE state IN ('probing', 'running')",
                (time.time(),),
            )
            conn.execute(
                "UPDATE files SET state = 'queued' WHERE state = 'running' AND job_id IN "
                "(SELECT id FROM jobs WHERE state IN ('queued', 'paused'))"
            )
            return cur.rowcount

    def claim_job(self, only: Iterable[int] | None = None) -> Job | None:
        """Move the oldest queued job to 'probing' and return it (None when there is none)."""
        ids = list(only) if only is not None else None
        with self._write() as conn:
            sql = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = 'queued'"
            args: list[Any] = []
            if ids is not None:
                sql += f" AND id IN ({','.join('?' for _ in ids) or 'NULL'})"
                args += ids
            row = conn.execute(sql + " ORDER BY id LIMIT 1", args).fetchone()
            if row is None:
                return None
            job = _job(row)
            conn.execute("UPDATE jobs SET state = 'probing', error = NULL, updated_at = ? WHERE id = ?",
                         (time.time(), job.id))
            job.state = "probing"
            return self._with_files(conn, job)

    def start_job(self, job_id: int, totals: dict[int, int | None]) -> bool:
        """After a good probe: 'probing' -> 'running', with each file's size as learnt."""
        with self._write() as conn:
            for file_id, total in totals.items():
                if total is not None:
                    conn.execute("UPDATE files SET bytes_total = ? WHERE id = ?", (total, file_id))
            cur = conn.execute("UPDATE jobs SET state = 'running', updated_at = ? WHERE id = ? AND state = 'probing'",
                               (time.time(), job_id))
            self._refresh_job(conn, job_id)
            return bool(cur.rowcount)

    def fail_job(self, job_id: int, error: str, file_errors: dict[int, str] | None = None) -> None:
        with self._write() as conn:
            for file_id, message in (file_errors or {}).items():
                conn.execute("UPDATE files SET state = 'failed', error = ? WHERE id = ?", (message, file_id))
            conn.execute(
                "UPDATE jobs SET state = 'failed', error = ?, speed = 0, eta_seconds = NULL, updated_at = ? "
                "WHERE id = ? AND state IN ('probing', 'running', 'queued')",
                (error, time.time(), job_id),
            )

    def claim_file(self, busy_paths: Iterable[str], only: Iterable[int] | None = None) -> JobFile | None:
        """The next queued file of a running job whose path nobody is fetching; marks it running."""
        busy = set(busy_paths)
        ids = list(only) if only is not None else None
        with self._write() as conn:
            sql = (f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLUMNS.split(','))} FROM files f "
                   "JOIN jobs j ON j.id = f.job_id WHERE j.state = 'running' AND f.state = 'queued'")
            args: list[Any] = []
            if ids is not None:
                sql += f" AND j.id IN ({','.join('?' for _ in ids) or 'NULL'})"
                args += ids
            running = {r[0] for r in conn.execute("SELECT path FROM files WHERE state = 'running'")}
            for row in conn.execute(sql + " ORDER BY j.id, f.position", args):
                item = _file(row)
                if item.path in busy or item.path in running:
                    continue
                conn.execute("UPDATE files SET state = 'running', error = NULL WHERE id = ?", (item.id,))
                item.state = "running"
                return item
        return None

    def finish_path(self, path: str, bytes_total: int) -> list[int]:
        """``path`` is in place and verified: done in every unfinished job; returns the jobs touched."""
        with self._write() as conn:
            marks = ",".join("?" for _ in ACTIVE_STATES)
            jobs = [r[0] for r in conn.execute(
                f"SELECT DISTINCT f.job_id FROM files f JOIN jobs j ON j.id = f.job_id "
                f"WHERE f.path = ? AND f.state IN ('queued', 'running') AND j.state IN ({marks})",
                (path, *ACTIVE_STATES))]
            conn.execute(
                f"UPDATE files SET state = 'done', error = NULL, bytes_done = ?, bytes_total = ? "
                f"WHERE path = ? AND state IN ('queued', 'running') AND job_id IN "
                f"(SELECT id FROM jobs WHERE state IN ({marks}))",
                (bytes_total, bytes_total, path, *ACTIVE_STATES),
            )
            for job_id in jobs:
                self._refresh_job(conn, job_id)
            return jobs

    def set_file(self, file_id: int, state: str, error: str | None = None) -> None:
        if state not in FILE_STATES:
            raise ValueError(f"unknown file state {state!r}")
        with self._write() as conn:
            conn.execute("UPDATE files SET state = ?, error = ? WHERE id = ?", (state, error, file_id))
            row = conn.execute("SELECT job_id FROM files WHERE id = ?", (file_id,)).fetchone()
            if row:
                self._refresh_job(conn, row[0])

    def record_progress(self, files: dict[int, tuple[int, int | None]], speeds: dict[int, float]) -> None:
        """Bytes per running file and speed per job, in one transaction (the worker, each tick)."""
        if not files and not speeds:
            return
        with self._write() as conn:
            conn.executemany(
                "UPDATE files SET bytes_done = ?, bytes_total = COALESCE(?, bytes_total) WHERE id = ?",
                [(done, total, file_id) for file_id, (done, total) in files.items()],
            )
            job_ids = {r[0] for r in conn.execute(
                f"SELECT DISTINCT job_id FROM files WHERE id IN ({','.join('?' for _ in files) or 'NULL'})",
                list(files))} | set(speeds)
            for job_id in job_ids:
                self._refresh_job(conn, job_id, speeds.get(job_id))

    def _refresh_job(self, conn: sqlite3.Connection, job_id: int, speed: float | None = None) -> None:
        done, total, unknown = conn.execute(
            "SELECT COALESCE(SUM(bytes_done), 0), COALESCE(SUM(bytes_total), 0), "
            "SUM(CASE WHEN bytes_total IS NULL THEN 1 ELSE 0 END) FROM files WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        if speed is None:
            conn.execute("UPDATE jobs SET bytes_done = ?, bytes_total = ?, updated_at = ? WHERE id = ?",
                         (done, None if unknown else total, time.time(), job_id))
            return
        eta = (total - done) / speed if speed > 0 and not unknown and total >= done else None
        conn.execute(
            "UPDATE jobs SET bytes_done = ?, bytes_total = ?, speed = ?, eta_seconds = ?, updated_at = ? WHERE id = ?",
            (done, None if unknown else total, speed, eta, time.time(), job_id),
        )

    def settle(self, job_id: int) -> str | None:
        """A running job with no file left to fetch becomes done or failed; returns the new state."""
        with self._write() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if not row or row[0] != "running":
                return None
            states = [r for r in conn.execute("SELECT state, path, error FROM files WHERE job_id = ?", (job_id,))]
            if any(s in ("queued", "running") for s, _, _ in states):
                return None
            failed = [(p, e) for s, p, e in states if s != "done"]
            if failed:
                error = f"{len(failed)} of {len(states)} files failed: " + "; ".join(
                    f"{p}: {e or 'failed'}" for p, e in failed)
                conn.execute("UPDATE jobs SET state = 'failed', error = ?, speed = 0, eta_seconds = NULL, "
                             "updated_at = ? WHERE id = ?", (error, time.time(), job_id))
                return "failed"
            conn.execute("UPDATE jobs SET state = 'done', error = NULL, speed = 0, eta_seconds = 0, updated_at = ? "
                         "WHERE id = ?", (time.time(), job_id))
            self._refresh_job(conn, job_id)
            return "done"

    def states(self, job_ids: Iterable[int]) -> dict[int, str]:
        ids = list(job_ids)
        if not ids:
            return {}
        with self._connect() as conn:
            return dict(conn.execute(
                f"SELECT id, state FROM jobs WHERE id IN ({','.join('?' for _ in ids)})", ids).fetchall())

    def pending_count(self, only: Iterable[int] | None = None) -> int:
        """Jobs the worker still has to do something about (queued, probing or running)."""
        with self._connect() as conn:
            sql = "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'probing', 'running')"
            args: list[Any] = []
            if only is not None:
                ids = list(only)
                sql += f" AND id IN ({','.join('?' for _ in ids) or 'NULL'})"
                args += ids
            return int(conn.execute(sql, args).fetchone()[0])

    def paths_needed(self, exclude_job: int | None = None) -> set[str]:
        """Paths that some unfinished job still wants (their .part must not be dropped)."""
        marks = ",".join("?" for _ in ACTIVE_STATES)
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT DISTINCT f.path FROM files f JOIN jobs j ON j.id = f.job_id "
                f"WHERE j.state IN ({marks}) AND j.id != ? AND f.state IN ('queued', 'running')",
                (*ACTIVE_STATES, -1 if exclude_job is None else exclude_job),
            ).fetchall()
        return {r[0] for r in rows}
