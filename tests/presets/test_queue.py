"""presets.queue: the SQLite job queue (WAL), its states, dedup by path and cheap progress."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from presets.queue import Job, JobFile, JobQueue


@pytest.fixture
def queue(tmp_path) -> JobQueue:
    return JobQueue(tmp_path / "state" / "downloads.sqlite3")


def files(*paths: str, size: int | None = 100) -> list[JobFile]:
    return [JobFile(path=p, url=f"https://example.com/{p}", size=size) for p in paths]


def run_job(queue: JobQueue, job_id: int) -> Job:
    job = queue.claim_job()
    assert job is not None and job.id == job_id and job.state == "probing"
    assert queue.start_job(job_id, {f.id: f.size for f in job.files})
    return queue.job(job_id)


def test_enqueue_and_read_back(queue):
    job_id = queue.enqueue("preset", "Wan 2.2", files("vae/a.safetensors", "loras/b.safetensors"), preset_id="WAN")
    job = queue.job(job_id)
    assert job.state == "queued" and job.kind == "preset" and job.preset_id == "WAN"
    assert [f.path for f in job.files] == ["vae/a.safetensors", "loras/b.safetensors"]
    assert job.bytes_total == 200 and job.bytes_done == 0
    data = job.to_dict()
    for key in ("id", "kind", "preset_id", "label", "state", "bytes_done", "bytes_total", "speed", "eta_seconds",
                "error", "files", "created_at", "updated_at"):
        assert key in data
    assert set(data["files"][0]) >= {"path", "url", "state", "bytes_done", "bytes_total", "error"}
    assert queue.jobs()[0].id == job_id and queue.active()[0].id == job_id
    assert queue.job(999) is None


def test_unknown_sizes_leave_the_total_unknown(queue):
    job_id = queue.enqueue("file", "x", files("loras/x.bin", size=None))
    assert queue.job(job_id).bytes_total is None


def test_wal_and_survives_reopening(tmp_path):
    path = tmp_path / "q.sqlite3"
    first = JobQueue(path)
    job_id = first.enqueue("file", "one", files("loras/one.bin"))
    first.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = JobQueue(path)
    assert again.job(job_id).label == "one"


def test_claim_probe_run_finish(queue):
    job_id = queue.enqueue("preset", "p", files("vae/a.bin", "vae/b.bin"))
    run_job(queue, job_id)
    first = queue.claim_file(set())
    second = queue.claim_file(set())
    assert (first.path, second.path) == ("vae/a.bin", "vae/b.bin")
    assert queue.claim_file(set()) is None
    queue.record_progress({first.id: (40, 100), second.id: (10, 100)}, {job_id: 25.0})
    job = queue.job(job_id)
    assert (job.bytes_done, job.bytes_total, job.speed) == (50, 200, 25.0)
    assert job.eta_seconds == pytest.approx(6.0)
    queue.finish_path("vae/a.bin", 100)
    assert queue.settle(job_id) is None  # b is still running
    queue.finish_path("vae/b.bin", 100)
    assert queue.settle(job_id) == "done"
    job = queue.job(job_id)
    assert job.state == "done" and job.bytes_done == 200 and job.percent == 100.0


def test_same_destination_in_two_jobs_is_fetched_once(queue):
    a = queue.enqueue("preset", "A", files("text_encoders/t5.safetensors", "loras/a.bin"), preset_id="A")
    b = queue.enqueue("preset", "B", files("text_encoders/t5.safetensors", "loras/b.bin"), preset_id="B")
    run_job(queue, a)
    run_job(queue, b)
    claimed = [queue.claim_file(set()) for _ in range(4)]
    paths = [c.path for c in claimed if c is not None]
    assert paths.count("text_encoders/t5.safetensors") == 1
    assert sorted(paths) == ["loras/a.bin", "loras/b.bin", "text_encoders/t5.safetensors"]
    touched = queue.finish_path("text_encoders/t5.safetensors", 100)
    assert sorted(touched) == [a, b]
    states = {f.path: f.state for f in queue.job(b).files}
    assert states["text_encoders/t5.safetensors"] == "done"


def test_busy_paths_are_not_claimed(queue):
    job_id = queue.enqueue("file", "x", files("loras/x.bin"))
    run_job(queue, job_id)
    assert queue.claim_file({"loras/x.bin"}) is None
    assert queue.claim_file(set()).path == "loras/x.bin"


def test_failed_file_fails_the_job_with_every_reason(queue):
    job_id = queue.enqueue("preset", "p", files("vae/a.bin", "vae/b.bin"))
    run_job(queue, job_id)
    a = queue.claim_file(set())
    b = queue.claim_file(set())
    queue.set_file(a.id, "failed", "HTTP 404: not found")
    queue.finish_path(b.path, 100)
    assert queue.settle(job_id) == "failed"
    job = queue.job(job_id)
    assert "1 of 2 files failed" in job.error and "vae/a.bin: HTTP 404" in job.error


def test_cancel_pause_resume_retry(queue):
    job_id = queue.enqueue("file", "x", files("loras/x.bin"))
    assert queue.pause(job_id) and queue.job(job_id).state == "paused"
    assert not queue.pause(job_id)
    assert queue.resume(job_id) and queue.job(job_id).state == "queued"
    assert queue.cancel(job_id) and queue.job(job_id).state == "cancelled"
    assert queue.job(job_id).files[0].state == "cancelled"
    assert not queue.cancel(job_id) and not queue.resume(job_id)
    assert queue.retry(job_id)
    job = queue.job(job_id)
    assert job.state == "queued" and job.files[0].state == "queued" and job.error is None
    queue.fail_job(job_id, "boom")
    assert queue.job(job_id).state == "failed" and queue.retry(job_id)
    assert queue.job(job_id).state == "queued"


def test_finished_jobs_can_be_deleted(queue):
    job_id = queue.enqueue("file", "x", files("loras/x.bin"))
    assert not queue.delete(job_id)  # unfinished
    queue.cancel(job_id)
    assert queue.delete(job_id) and queue.job(job_id) is None


def test_recover_requeues_what_was_in_flight(queue):
    job_id = queue.enqueue("preset", "p", files("vae/a.bin", "vae/b.bin"))
    run_job(queue, job_id)
    item = queue.claim_file(set())
    paused = queue.enqueue("file", "paused", files("loras/p.bin"))
    queue.pause(paused)
    assert queue.recover() == 1
    job = queue.job(job_id)
    assert job.state == "queued"
    assert {f.id: f.state for f in job.files}[item.id] == "queued"
    assert queue.job(paused).state == "paused"


def test_find_active_for_a_preset_and_a_single_file(queue):
    a = queue.enqueue("preset", "A", files("vae/a.bin"), preset_id="A")
    f = queue.enqueue("file", "f", files("loras/f.bin"))
    assert queue.find_active(preset_id="A").id == a
    assert queue.find_active(paths=["loras/f.bin"]).id == f
    assert queue.find_active(paths=["loras/other.bin"]) is None
    queue.cancel(a)
    assert queue.find_active(preset_id="A") is None


def test_progress_is_one_query(queue):
    for i in range(20):
        queue.enqueue("preset", f"p{i}", files(f"vae/{i}.bin", f"loras/{i}.bin"), preset_id=f"P{i}")
    statements: list[str] = []
    with queue._connect() as conn:
        conn.set_trace_callback(statements.append)
        try:
            result = queue.progress()
        finally:
            conn.set_trace_callback(None)
    assert len(statements) == 1
    assert result["active"] == 20 and result["bytes_total"] == 20 * 200 and len(result["jobs"]) == 20
    assert "files" not in result["jobs"][0]


def test_concurrent_claims_never_hand_out_a_file_twice(tmp_path):
    path = tmp_path / "q.sqlite3"
    queue = JobQueue(path)
    job_id = queue.enqueue("preset", "p", files(*[f"loras/{i}.bin" for i in range(40)]))
    run_job(queue, job_id)
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer() -> None:
        own = JobQueue(path)
        while (item := own.claim_file(set())) is not None:
            with lock:
                claimed.append(item.path)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(f"loras/{i}.bin" for i in range(40))
