"""The ``downloader`` program: claim a job -> probe every file -> download -> record.

One worker per workspace (an flock on ``config/state/downloader.lock``). On start it queues
again whatever a dead worker left in flight; those files resume from their ``.part``. Each tick
it notices cancel / pause asked through the queue, starts files up to DOWNLOAD_CONCURRENCY
(each with DOWNLOAD_CONNECTIONS ranged connections), and writes progress in one transaction.
SIGTERM stops the transfers, keeps their ``.part`` files and leaves their jobs queued.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from presets.download import (
    DiskFullError,
    DownloadBusy,
    Downloader,
    DownloadOptions,
    DownloadStopped,
    FileRequest,
    ProbeResult,
    check_free_space,
    human,
    lock_path,
    part_path,
)
from presets.queue import Job, JobFile, JobQueue
from services.errors import ComfyPodError, PathError
from services.paths import within

log = logging.getLogger("comfypod.downloader")

LOCK_NAME = "downloader.lock"


def destination(settings: Any, rel: str) -> Path:
    """The absolute destination of a models-relative path (refuses traversal)."""
    return within(settings.models_dir, rel)


def discard_partial(dest: Path) -> bool:
    """Remove ``dest``'s .part and .lock unless another process holds the lock."""
    lock = lock_path(dest)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        part_path(dest).unlink(missing_ok=True)
        lock.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


class WorkerLock:
    """Only one worker per workspace: an exclusive, non-blocking flock."""

    def __init__(self, settings: Any) -> None:
        self.path = Path(settings.state_dir) / LOCK_NAME
        self.fd = -1

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @staticmethod
    def held(settings: Any) -> bool:
        """True when some worker holds the lock now."""
        path = Path(settings.state_dir) / LOCK_NAME
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


@dataclass
class _Active:
    item: JobFile
    dest: Path
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    done: int = 0
    total: int | None = None
    outcome: str | None = None  # done | stopped | busy | disk_full | failed
    error: str | None = None
    reason: str | None = None  # why it was stopped: cancel | pause | shutdown | disk_full


class Worker:
    """Runs jobs from the queue until stopped (or, with ``until_idle``, until none is left)."""

    def __init__(
        self,
        settings: Any,
        queue: JobQueue | None = None,
        downloader: Downloader | None = None,
        *,
        options: DownloadOptions | None = None,
        only_jobs: list[int] | None = None,
        tick: float = 0.5,
    ) -> None:
        self.settings = settings
        self.queue = queue or JobQueue(settings.queue_db)
        self._own_downloader = downloader is None
        self.downloader = downloader or Downloader(settings, options=options)
        self.concurrency = max(1, int(getattr(settings, "download_concurrency", 3)))
        self.only_jobs = only_jobs
        self.tick = tick
        self.stopping = threading.Event()
        self.active: dict[int, _Active] = {}  # file id -> transfer
        self._probe: tuple[Job, threading.Thread, dict[str, Any]] | None = None
        self._samples: dict[int, deque[tuple[float, int]]] = {}
        self._busy_until: dict[str, float] = {}
        self.lock = WorkerLock(settings)

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping.set()

    def run(self, until_idle: bool = False) -> None:
        if not self.lock.acquire():
            raise DownloadBusy(f"another downloader already runs on {self.settings.workspace}")
        try:
            recovered = self.queue.recover()
            if recovered:
                log.info("resuming %d job(s) left in flight", recovered)
            while not self.stopping.is_set():
                self.step()
                if until_idle and not self.active and self._probe is None \
                        and self.queue.pending_count(self.only_jobs) == 0:
                    break
                self.stopping.wait(self.tick)
        finally:
            self._shutdown()
            self.lock.release()
            if self._own_downloader:
                self.downloader.session.close()

    def _shutdown(self) -> None:
        if not self.active:
            return
        log.info("stopping %d transfer(s); partial files are kept", len(self.active))
        for act in self.active.values():
            act.reason = act.reason or "shutdown"
            act.stop.set()
        deadline = time.monotonic() + 15
        for act in self.active.values():
            if act.thread is not None:
                act.thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self._reap()
        for file_id in list(self.active):  # threads that did not stop in time
            self.queue.set_file(file_id, "queued")
            self.active.pop(file_id, None)
        if self._probe is not None:
            self._probe[1].join(timeout=5)

    # -- one tick --------------------------------------------------------------------------
    def step(self) -> None:
        self._controls()
        self._reap()
        self._probe_step()
        self._start_files()
        self._flush()

    def _controls(self) -> None:
        """Cancel / pause asked through the queue stop the job's transfers."""
        if not self.active:
            return
        states = self.queue.states({a.item.job_id for a in self.active.values()})
        for act in self.active.values():
            state = states.get(act.item.job_id)
            if state in ("cancelled", "paused") and not act.stop.is_set():
                act.reason = "cancel" if state == "cancelled" else "pause"
                log.info("%s: %s asked", act.item.path, "cancel" if state == "cancelled" else "pause")
                act.stop.set()

    def _probe_step(self) -> None:
        if self._probe is not None:
            job, thread, result = self._probe
            if thread.is_alive():
                return
            self._probe = None
            self._after_probe(job, result)
        if self.stopping.is_set():
            return
        job = self.queue.claim_job(self.only_jobs)
        if job is None:
            return
        result: dict[str, Any] = {}
        thread = threading.Thread(target=self._probe_job, args=(job, result), name=f"probe-{job.id}", daemon=True)
        self._probe = (job, thread, result)
        thread.start()

    def _probe_job(self, job: Job, result: dict[str, Any]) -> None:
        """Probe every file not yet in place (in parallel) and check free space: all problems at once."""
        problems: dict[int, str] = {}
        totals: dict[int, int | None] = {}
        needs: list[tuple[Path, int]] = []
        todo: list[tuple[JobFile, Path]] = []
        in_place: list[JobFile] = []
        for item in job.files:
            if item.state == "done":
                continue
            try:
                dest = destination(self.settings, item.path)
            except PathError as err:
                problems[item.id] = str(err)
                continue
            if _in_place(dest, item.size):
                totals[item.id] = dest.stat().st_size
                in_place.append(item)
                continue
            todo.append((item, dest))
        try:
            with ThreadPoolExecutor(max_workers=min(8, max(1, len(todo)))) as pool:
                probes = list(pool.map(lambda pair: self.downloader.probe(pair[0].url), todo))
        except Exception as err:  # a probe must never kill the worker
            log.exception("probe of job %d failed", job.id)
            result["error"] = f"probe failed: {err.__class__.__name__}: {err}"
            return
        for (item, dest), res in zip(todo, probes, strict=True):
            problem = _probe_problem(item, res)
            if problem:
                problems[item.id] = problem
                continue
            size = item.size if item.size is not None else res.size
            totals[item.id] = size
            if size is not None:
                needs.append((dest, size - self.downloader.done_bytes(dest)))
        result.update(problems=problems, totals=totals, needs=needs, in_place=in_place)

    def _after_probe(self, job: Job, result: dict[str, Any]) -> None:
        if self.queue.states([job.id]).get(job.id) != "probing":
            return  # cancelled or paused meanwhile
        if result.get("error"):
            self.queue.fail_job(job.id, result["error"])
            return
        problems: dict[int, str] = result["problems"]
        if problems:
            paths = {f.id: f.path for f in job.files}
            message = f"{len(problems)} of {len(job.files)} files cannot be downloaded: " + "; ".join(
                f"{paths[i]}: {m}" for i, m in problems.items())
            log.error("job %d (%s): %s", job.id, job.label, message)
            self.queue.fail_job(job.id, message, problems)
            return
        try:
            check_free_space(result["needs"], self.downloader.options.free_margin)
        except DiskFullError as err:
            log.error("job %d (%s): %s", job.id, job.label, err)
            self.queue.fail_job(job.id, str(err))
            return
        self.queue.start_job(job.id, result["totals"])
        for item in result["in_place"]:
            self.queue.finish_path(item.path, result["totals"][item.id] or 0)
        log.info("job %d (%s): %d file(s), %s to fetch", job.id, job.label, len(job.files),
                 human(sum(n for _, n in result["needs"])))
        self.queue.settle(job.id)

    def _start_files(self) -> None:
        if self.stopping.is_set():
            return
        now = time.monotonic()
        self._busy_until = {p: t for p, t in self._busy_until.items() if t > now}
        while len(self.active) < self.concurrency:
            busy = {a.item.path for a in self.active.values()} | set(self._busy_until)
            item = self.queue.claim_file(busy, self.only_jobs)
            if item is None:
                return
            try:
                dest = destination(self.settings, item.path)
            except PathError as err:
                self.queue.set_file(item.id, "failed", str(err))
                self.queue.settle(item.job_id)
                continue
            act = _Active(item=item, dest=dest, total=item.bytes_total)
            act.thread = threading.Thread(target=self._transfer, args=(act,), name=f"file-{item.id}", daemon=True)
            self.active[item.id] = act
            log.info("%s: downloading", item.path)
            act.thread.start()

    def _transfer(self, act: _Active) -> None:
        item = act.item

        def progress(done: int, total: int | None) -> None:
            act.done = done
            if total is not None:
                act.total = total

        try:
            result = self.downloader.fetch(
                FileRequest(url=item.url, dest=act.dest, size=item.size, sha256=item.sha256),
                progress=progress, stop=act.stop,
            )
            act.done = act.total = result.size
            act.outcome = "done"
        except DownloadStopped:
            act.outcome = "stopped"
        except DownloadBusy as err:
            act.outcome, act.error = "busy", str(err)
        except DiskFullError as err:
            act.outcome, act.error = "disk_full", str(err)
        except ComfyPodError as err:
            act.outcome, act.error = "failed", str(err)
        except Exception as err:  # never let one file take the worker down
            log.exception("%s: unexpected error", item.path)
            act.outcome, act.error = "failed", f"unexpected error: {err.__class__.__name__}: {err}"

    def _reap(self) -> None:
        for file_id, act in list(self.active.items()):
            if act.thread is None or act.thread.is_alive():
                continue
            del self.active[file_id]
            item = act.item
            if act.outcome == "done":
                jobs = self.queue.finish_path(item.path, act.total or act.done)
                log.info("%s: in place (%s)", item.path, human(act.total))
                for job_id in jobs:
                    if self.queue.settle(job_id) is not None:
                        self._job_finished(job_id)
            elif act.outcome == "stopped":
                if act.reason == "cancel":
                    self.queue.set_file(file_id, "cancelled")
                    if item.path not in self.queue.paths_needed(exclude_job=item.job_id):
                        discard_partial(act.dest)
                elif act.reason == "disk_full":
                    self.queue.set_file(file_id, "failed", "stopped: the disk is full")
                else:
                    self.queue.set_file(file_id, "queued")
            elif act.outcome == "busy":
                self._busy_until[item.path] = time.monotonic() + 5
                self.queue.set_file(file_id, "queued")
            elif act.outcome == "disk_full":
                log.error("%s: %s", item.path, act.error)
                self.queue.set_file(file_id, "failed", act.error)
                self.queue.fail_job(item.job_id, act.error or "the disk is full")
                for other in self.active.values():  # the rest of that job stops, its .part files kept
                    if other.item.job_id == item.job_id:
                        other.reason = "disk_full"
                        other.stop.set()
            else:
                log.error("%s: %s", item.path, act.error)
                self.queue.set_file(file_id, "failed", act.error)
                if self.queue.settle(item.job_id) is not None:
                    self._job_finished(item.job_id)
            self._samples.pop(file_id, None)

    def _job_finished(self, job_id: int) -> None:
        job = self.queue.job(job_id)
        if job is not None:
            log.info("job %d (%s): %s%s", job.id, job.label, job.state, f": {job.error}" if job.error else "")

    def _flush(self) -> None:
        """Write bytes per running file and a speed per job (sliding window of a few seconds)."""
        if not self.active:
            return
        now = time.monotonic()
        files: dict[int, tuple[int, int | None]] = {}
        per_job: dict[int, float] = {}
        for file_id, act in self.active.items():
            files[file_id] = (act.done, act.total)
            samples = self._samples.setdefault(file_id, deque(maxlen=32))
            samples.append((now, act.done))
            while len(samples) > 2 and now - samples[0][0] > 5.0:
                samples.popleft()
            t0, d0 = samples[0]
            speed = (act.done - d0) / (now - t0) if now > t0 else 0.0
            per_job[act.item.job_id] = per_job.get(act.item.job_id, 0.0) + max(0.0, speed)
        self.queue.record_progress(files, per_job)


def _in_place(dest: Path, size: int | None) -> bool:
    """A file at its final path is complete (the downloader only renames verified files)."""
    if not dest.is_file() or part_path(dest).exists():
        return False
    return size is None or dest.stat().st_size == size


def _probe_problem(item: JobFile, res: ProbeResult) -> str | None:
    if not res.ok:
        return res.message
    if item.size is not None and res.size is not None and res.size != item.size:
        return f"the server's file is {res.size} bytes but the catalog expects {item.size}"
    if item.sha256 and res.linked_etag and item.sha256.lower() != res.linked_etag:
        return "the server announces another sha256 than the catalog pins (the file changed upstream)"
    return None


def run_worker(settings: Any, stop: threading.Event | None = None) -> None:
    """The program body: log setup is the caller's; SIGTERM/SIGINT stop it cleanly."""
    worker = Worker(settings)
    if stop is not None:
        threading.Thread(target=lambda: (stop.wait(), worker.stop()), daemon=True).start()
    worker.run()


@click.command("downloader")
@click.pass_context
def downloader_command(ctx: click.Context) -> None:
    """Run the model download worker (the `downloader` supervisord program)."""
    from services.cli import get_settings
    from services.credentials import TOKEN_NAMES, effective_token
    from services.logs import settings_secrets, setup_logging

    settings = get_settings(ctx)
    saved = [effective_token(settings, name).reveal() for name in TOKEN_NAMES]
    setup_logging(settings.log_level, [*settings_secrets(settings), *saved])
    worker = Worker(settings)

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: stopping", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("downloader started (pid %d, %d file(s) at once, %d connection(s) per file)", os.getpid(),
             worker.concurrency, worker.downloader.options.connections)
    worker.run()
    log.info("downloader stopped")
