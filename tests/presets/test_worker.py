"""presets.worker: the downloader program, in-process and as a real process (SIGTERM, kill -9)."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from presets import download
from presets.download import Downloader, lock_path, part_path
from presets.install import enqueue_presets
from presets.queue import JobFile, JobQueue
from presets.worker import Worker, WorkerLock
from services.errors import DownloadError
from tests.conftest import ROOT, base_environ
from tests.support.range_server import pseudo_random as blob
from tests.support.range_server import safetensors_blob

KiB = 1024
MiB = 1024 * KiB


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


class Running:
    """A Worker in a background thread, stopped and joined at the end."""

    def __init__(self, worker: Worker, until_idle: bool = False) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(until_idle,), daemon=True)

    def _run(self, until_idle: bool) -> None:
        try:
            self.worker.run(until_idle=until_idle)
        except BaseException as err:  # surfaced by the test through .error
            self.error = err

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def queue(settings) -> JobQueue:
    return JobQueue(settings.queue_db)


@pytest.fixture
def make_worker(download_options):
    def factory(settings, **option_changes) -> Worker:
        dl = Downloader(settings, options=download_options(**option_changes), token_rule=lambda url: None)
        return Worker(settings, downloader=dl, tick=0.05)

    return factory


def run_until_idle(worker: Worker, timeout: float = 60.0) -> None:
    runner = Running(worker, until_idle=True)
    runner.thread.start()
    runner.thread.join(timeout)
    if runner.thread.is_alive():
        worker.stop()
        runner.thread.join(10)
        raise AssertionError("the worker did not finish")
    if runner.error:
        raise runner.error


def jf(path: str, url: str, data: bytes | None = None) -> JobFile:
    return JobFile(path=path, url=url, size=None if data is None else len(data),
                   sha256=None if data is None else sha(data))


# ---- in-process -----------------------------------------------------------------------------------


def test_jobs_complete_and_a_shared_file_is_fetched_once(make_settings, queue, make_worker, range_server):
    settings = make_settings(DOWNLOAD_CONCURRENCY="2")
    t5, vae, lora = safetensors_blob(1500 * KiB, 1), blob(300 * KiB, 2), blob(200 * KiB, 3)
    urls = {name: range_server.add(f"/{name}", data, throttle=4 * MiB)
            for name, data in (("t5.safetensors", t5), ("vae.bin", vae), ("lora.bin", lora))}
    a = queue.enqueue("preset", "A", [jf("text_encoders/t5.safetensors", urls["t5.safetensors"], t5),
                                      jf("vae/vae.bin", urls["vae.bin"], vae)], preset_id="A")
    b = queue.enqueue("preset", "B", [jf("text_encoders/t5.safetensors", urls["t5.safetensors"], t5),
                                      jf("loras/lora.bin", urls["lora.bin"], lora)], preset_id="B")
    run_until_idle(make_worker(settings))
    for job_id in (a, b):
        job = queue.job(job_id)
        assert job.state == "done", job.error
        assert job.bytes_done == job.bytes_total
        assert all(f.state == "done" for f in job.files)
    assert (settings.models_dir / "text_encoders/t5.safetensors").read_bytes() == t5
    assert (settings.models_dir / "loras/lora.bin").read_bytes() == lora
    # the shared encoder's body went over the wire once (plus one-byte probes)
    assert len(t5) <= range_server.bytes_served("/t5.safetensors") < len(t5) * 1.5


def test_probe_reports_every_problem_before_writing_a_byte(settings, queue, make_worker, range_server):
    good = blob(10 * KiB)
    files = [
        jf("loras/good.bin", range_server.add("/good.bin", good), good),
        jf("loras/private.bin", range_server.add("/private.bin", blob(100), token="t")),
        jf("loras/gated.bin", range_server.add("/gated.bin", blob(100), gated=True, repo="org/gated")),
        jf("loras/gone.bin", range_server.url("/gone.bin")),
    ]
    job_id = queue.enqueue("preset", "P", files, preset_id="P")
    run_until_idle(make_worker(settings))
    job = queue.job(job_id)
    assert job.state == "failed"
    assert job.error.startswith("3 of 4 files cannot be downloaded")
    for text in ("loras/private.bin: HTTP 401", "loras/gated.bin: licence not accepted: open https://huggingface.co/org/gated",
                 "loras/gone.bin: HTTP 404"):
        assert text in job.error
    errors = {f.path: f.error for f in job.files}
    assert errors["loras/good.bin"] is None and "HF_TOKEN" in errors["loras/gated.bin"]
    assert range_server.bytes_served("/good.bin") <= 1  # probed only
    assert not list(settings.models_dir.rglob("*.part")) and not (settings.models_dir / "loras/good.bin").exists()


def test_not_enough_free_space_refuses_the_job(settings, queue, make_worker, range_server, monkeypatch):
    data = blob(300 * KiB)
    job_id = queue.enqueue("file", "x", [jf("loras/x.bin", range_server.add("/x.bin", data), data)])
    monkeypatch.setattr(download, "disk_free", lambda path: 100 * KiB)
    run_until_idle(make_worker(settings))
    job = queue.job(job_id)
    assert job.state == "failed" and "not enough space" in job.error
    assert range_server.bytes_served("/x.bin") <= 1
    assert not (settings.models_dir / "loras/x.bin").exists()


def test_cancel_stops_and_drops_the_partial_file(settings, queue, make_worker, range_server):
    data = blob(2 * MiB)
    job_id = queue.enqueue("file", "c", [jf("loras/c.bin", range_server.add("/c.bin", data, throttle=512 * KiB), data)])
    dest = settings.models_dir / "loras/c.bin"
    with Running(make_worker(settings)) as runner:
        wait_for(lambda: (queue.job(job_id).bytes_done or 0) > 100 * KiB)
        assert queue.cancel(job_id)
        wait_for(lambda: not runner.worker.active)
    assert queue.job(job_id).state == "cancelled"
    assert not dest.exists() and not part_path(dest).exists() and not lock_path(dest).exists()


def test_pause_keeps_the_part_and_resume_finishes(settings, queue, make_worker, range_server):
    data = blob(1536 * KiB)
    url = range_server.add("/p.bin", data, throttle=512 * KiB)
    job_id = queue.enqueue("file", "p", [jf("loras/p.bin", url, data)])
    dest = settings.models_dir / "loras/p.bin"
    with Running(make_worker(settings)) as runner:
        wait_for(lambda: (queue.job(job_id).bytes_done or 0) > 200 * KiB)
        assert queue.pause(job_id)
        wait_for(lambda: not runner.worker.active)
        assert queue.job(job_id).state == "paused" and part_path(dest).exists()
        kept = runner.worker.downloader.done_bytes(dest)
        range_server.reset_counts()
        assert queue.resume(job_id)
        wait_for(lambda: queue.job(job_id).state == "done", timeout=30)
    assert dest.read_bytes() == data
    assert range_server.bytes_served("/p.bin") <= len(data) - kept + 2 * 64 * KiB


def test_disk_full_stops_that_job_keeps_its_part_and_spares_others(settings, queue, make_worker, range_server,
                                                                      monkeypatch):
    big, small = blob(1536 * KiB, 1), blob(64 * KiB, 2)
    a = queue.enqueue("file", "big", [jf("loras/big.bin", range_server.add("/big.bin", big, throttle=2 * MiB), big)])
    b = queue.enqueue("file", "small", [jf("vae/small.bin", range_server.add("/small.bin", small), small)])
    real = download._write_at
    written = {"n": 0}

    def filling(fd: int, chunk: bytes, offset: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("big.bin.part"):
            if written["n"] + len(chunk) > 256 * KiB:
                raise OSError(errno.ENOSPC, "No space left on device")
            written["n"] += len(chunk)
        real(fd, chunk, offset)

    monkeypatch.setattr(download, "_write_at", filling)
    run_until_idle(make_worker(settings))
    job = queue.job(a)
    assert job.state == "failed" and "disk is full" in job.error
    assert part_path(settings.models_dir / "loras/big.bin").exists()
    assert not (settings.models_dir / "loras/big.bin").exists()
    assert queue.job(b).state == "done"
    assert (settings.models_dir / "vae/small.bin").read_bytes() == small


def test_a_traversal_path_fails_without_writing(settings, queue, make_worker, range_server):
    job_id = queue.enqueue("file", "evil", [JobFile(path="../../evil.bin", url=range_server.add("/e.bin", b"x" * 10))])
    run_until_idle(make_worker(settings))
    job = queue.job(job_id)
    assert job.state == "failed" and "leaves its folder" in job.error
    assert range_server.requests() == []


def test_only_one_worker_per_workspace(settings, make_worker):
    first = WorkerLock(settings)
    assert first.acquire()
    try:
        assert WorkerLock.held(settings)
        with pytest.raises(DownloadError, match="another downloader"):
            make_worker(settings).run(until_idle=True)
    finally:
        first.release()
    assert not WorkerLock.held(settings)


# ---- as a real process --------------------------------------------------------------------------------


def start_downloader(workspace: Path, run_dir: Path, log: Path, **env: str) -> subprocess.Popen:
    environ = base_environ(workspace, run_dir, DOWNLOAD_CONCURRENCY="2", **env)
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "services.cli", "downloader"], cwd=ROOT, env=environ,
                                stdout=handle, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def crash_catalog(range_server, write_catalog, settings, count: int, size: int, rate: int) -> dict[str, bytes]:
    data = {f"loras/crash_{i}.safetensors": safetensors_blob(size, 10 + i) for i in range(count)}
    items = [(path, range_server.add("/" + Path(path).name, payload, throttle=rate), payload)
             for path, payload in data.items()]
    write_catalog(settings.presets_file, {"CRASH_TEST": items})
    return data


@pytest.mark.e2e
def test_sigterm_stops_cleanly_and_a_restart_resumes(settings, workspace, run_dir, tmp_path, range_server,
                                                     write_catalog):
    data = crash_catalog(range_server, write_catalog, settings, count=2, size=1536 * KiB, rate=512 * KiB)
    (job_id,) = enqueue_presets(settings, ["crash_test"])
    queue = JobQueue(settings.queue_db)
    log = tmp_path / "downloader.log"
    proc = start_downloader(workspace, run_dir, log)
    try:
        wait_for(lambda: (queue.job(job_id).bytes_done or 0) > 300 * KiB, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
        job = queue.job(job_id)
        assert job.state == "running" or job.state == "queued"
        assert all(f.state in ("queued", "done") for f in job.files)
        assert list(settings.models_dir.rglob("*.part"))
        proc = start_downloader(workspace, run_dir, log)
        wait_for(lambda: queue.job(job_id).state in ("done", "failed"), timeout=60)
        assert queue.job(job_id).state == "done", queue.job(job_id).error
    finally:
        stop_process(proc)
    for path, payload in data.items():
        assert (settings.models_dir / path).read_bytes() == payload
    assert "stopping" in log.read_text()


@pytest.mark.e2e
def test_kill_9_during_a_multi_file_install_then_restart_completes(settings, workspace, run_dir, tmp_path,
                                                                   range_server, write_catalog):
    """No byte is fetched twice beyond the last flushed checkpoint of each file."""
    size, rate = 2 * MiB, 1 * MiB
    data = crash_catalog(range_server, write_catalog, settings, count=4, size=size, rate=rate)
    (job_id,) = enqueue_presets(settings, ["CRASH_TEST"])
    queue = JobQueue(settings.queue_db)
    log = tmp_path / "downloader.log"
    proc = start_downloader(workspace, run_dir, log)
    try:
        wait_for(lambda: (queue.job(job_id).bytes_done or 0) > 2 * MiB + 512 * KiB, timeout=40)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert range_server.wait_idle(10)
        checker = Downloader(settings)
        served_before = {p: range_server.bytes_served("/" + Path(p).name) for p in data}
        checkpoint = {p: checker.done_bytes(settings.models_dir / p) for p in data}
        assert 0 < sum(checkpoint.values()) < len(data) * size
        range_server.reset_counts()
        proc = start_downloader(workspace, run_dir, log)
        wait_for(lambda: queue.job(job_id).state in ("done", "failed"), timeout=60)
        job = queue.job(job_id)
        assert job.state == "done", f"{job.error}\n{log.read_text()}"
    finally:
        stop_process(proc)
    for path, payload in data.items():
        dest = settings.models_dir / path
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha(payload)
        assert not part_path(dest).exists() and not lock_path(dest).exists()
        served_after = range_server.bytes_served("/" + Path(path).name)
        # after the restart: exactly what the checkpoint lacked, plus the one-byte probe and resolve
        assert served_after <= size - checkpoint[path] + 2, (path, served_after, checkpoint[path])
        # before the crash: what was sent after the last checkpoint is bounded (checkpoints every 0.5 s)
        assert served_before[path] - checkpoint[path] <= rate + 256 * KiB, (path, served_before, checkpoint)
