"""presets.install: presets and URLs into jobs; foreground download or following the worker."""

from __future__ import annotations

import hashlib
import logging
import threading

import pytest

from presets import download, install
from presets.download import Downloader, part_path
from presets.install import (
    cancel_job,
    enqueue_presets,
    enqueue_url,
    install_presets,
    queue_startup_presets,
    remove_preset,
    url_target,
)
from presets.queue import JobQueue
from presets.worker import Worker
from services.errors import CatalogError, DownloadError, PathError
from tests.support.range_server import pseudo_random, safetensors_blob

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def queue(settings) -> JobQueue:
    return JobQueue(settings.queue_db)


@pytest.fixture
def catalog(settings, range_server, write_catalog):
    """Two presets sharing a text encoder, one with a broken link, all served by range_server."""
    files = {
        "text_encoders/t5.safetensors": safetensors_blob(300 * KiB, 1),
        "diffusion_models/video.safetensors": safetensors_blob(500 * KiB, 2),
        "loras/style.safetensors": safetensors_blob(100 * KiB, 3),
    }
    url = {path: range_server.add("/" + path, data) for path, data in files.items()}
    write_catalog(settings.presets_file, {
        "VIDEO_ONE": [("text_encoders/t5.safetensors", url["text_encoders/t5.safetensors"],
                       files["text_encoders/t5.safetensors"]),
                      ("diffusion_models/video.safetensors", url["diffusion_models/video.safetensors"],
                       files["diffusion_models/video.safetensors"])],
        "IMAGE_TWO": [("text_encoders/t5.safetensors", url["text_encoders/t5.safetensors"],
                       files["text_encoders/t5.safetensors"]),
                      ("loras/style.safetensors", url["loras/style.safetensors"], None)],
        "BROKEN": [("loras/missing.safetensors", range_server.url("/nowhere.safetensors"), None)],
    })
    return files


def test_enqueue_presets_queues_each_preset_once(settings, catalog, queue):
    (first,) = enqueue_presets(settings, ["video_one"])
    job = queue.job(first)
    assert job.kind == "preset" and job.preset_id == "VIDEO_ONE" and len(job.files) == 2
    assert job.bytes_total == 800 * KiB
    assert enqueue_presets(settings, ["VIDEO-ONE"]) == [first]  # the unfinished job is reused


def test_unknown_preset_names_the_closest_and_queues_nothing(settings, catalog, queue):
    with pytest.raises(CatalogError, match="closest: VIDEO_ONE"):
        enqueue_presets(settings, ["image_two", "VIDEO_ON"])
    assert queue.jobs() == []


def test_foreground_install_downloads_and_verifies(settings, catalog, queue, download_options, capsys):
    code = install_presets(settings, ["VIDEO_ONE", "image_two"], options=download_options(), progress=False)
    assert code == 0
    for path, data in catalog.items():
        assert (settings.models_dir / path).read_bytes() == data
    assert all(j.state == "done" for j in queue.jobs())
    assert "every file in place and verified" in capsys.readouterr().out


def test_install_fails_with_the_reason_and_nothing_in_place(settings, catalog, download_options, capsys):
    assert install_presets(settings, ["BROKEN"], options=download_options(), progress=False) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert not (settings.models_dir / "loras/missing.safetensors").exists()


def test_install_follows_a_running_downloader(settings, catalog, queue, download_options, monkeypatch):
    monkeypatch.setattr(install, "downloader_running", lambda s: True)
    daemon = Worker(settings, downloader=Downloader(settings, options=download_options()), tick=0.05)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert install_presets(settings, ["video_one"], progress=False) == 0
    finally:
        daemon.stop()
        thread.join(30)
    assert (settings.models_dir / "diffusion_models/video.safetensors").exists()


def test_install_without_follow_only_queues_when_the_downloader_runs(settings, catalog, queue, monkeypatch):
    monkeypatch.setattr(install, "downloader_running", lambda s: True)
    assert install_presets(settings, ["video_one"], follow=False) == 0
    assert queue.active()[0].state == "queued"


def test_dry_run_lists_files_urls_destinations_and_space(settings, catalog, range_server, queue, capsys):
    (settings.models_dir / "text_encoders").mkdir(parents=True)
    (settings.models_dir / "text_encoders/t5.safetensors").write_bytes(catalog["text_encoders/t5.safetensors"])
    assert install_presets(settings, ["VIDEO_ONE", "IMAGE_TWO"], dry_run=True) == 0
    out = capsys.readouterr().out
    assert "text_encoders/t5.safetensors: in place" in out
    assert "diffusion_models/video.safetensors: 500.0 KiB to fetch of 500.0 KiB" in out
    assert range_server.url("/diffusion_models/video.safetensors") in out
    assert str(settings.models_dir / "diffusion_models/video.safetensors") in out
    assert "to fetch: 500.0 KiB; free:" in out and "enough space" in out
    assert queue.jobs() == [] and range_server.requests() == []


def test_dry_run_says_when_space_is_short(settings, catalog, monkeypatch, capsys):
    monkeypatch.setattr(install, "disk_free", lambda path: 10 * KiB)
    assert install_presets(settings, ["VIDEO_ONE"], dry_run=True) == 1
    assert "NOT enough space" in capsys.readouterr().out


def test_startup_presets_queue_known_ids_and_report_unknown(make_settings, catalog, caplog):
    settings = make_settings(PRESET_DOWNLOAD=" video_one , VIDEO_TOW", IMAGE_PRESET_DOWNLOAD="image_two")
    caplog.set_level(logging.INFO, logger="comfypod")
    job_ids = queue_startup_presets(settings)
    assert len(job_ids) == 2
    queue = JobQueue(settings.queue_db)
    assert sorted(queue.job(i).preset_id for i in job_ids) == ["IMAGE_TWO", "VIDEO_ONE"]
    assert "VIDEO_TOW" in caplog.text and "closest: VIDEO_ONE" in caplog.text


def test_startup_skips_installed_presets(make_settings, catalog, download_options):
    settings = make_settings(PRESET_DOWNLOAD="VIDEO_ONE")
    assert install_presets(settings, ["VIDEO_ONE"], options=download_options(), progress=False) == 0
    assert queue_startup_presets(settings) == []
    assert queue_startup_presets(make_settings()) == []


def test_remove_preset_keeps_files_other_installed_presets_need(settings, catalog, download_options):
    assert install_presets(settings, ["VIDEO_ONE", "IMAGE_TWO"], options=download_options(), progress=False) == 0
    removed = remove_preset(settings, "video_one")
    assert [p.name for p in removed] == ["video.safetensors"]
    assert (settings.models_dir / "text_encoders/t5.safetensors").exists()
    assert not (settings.models_dir / "diffusion_models/video.safetensors").exists()


def test_url_target_rewrites_hugging_face_blob_links(settings):
    link, rel = url_target(settings, "https://huggingface.co/org/repo/blob/main/sub/x.safetensors", "loras")
    assert link == "https://huggingface.co/org/repo/resolve/main/sub/x.safetensors"
    assert rel == "loras/x.safetensors"
    link, rel = url_target(settings, "https://civitai.com/models/1/name?modelVersionId=42", "loras", "mine.safetensors")
    assert link == "https://civitai.com/api/download/models/42" and rel == "loras/mine.safetensors"


def test_url_target_asks_the_server_for_a_name(settings, range_server):
    url = range_server.add("/api/download/models/42", pseudo_random(1000), disposition="detail_v2.safetensors")
    assert url_target(settings, url, "loras")[1] == "loras/detail_v2.safetensors"


@pytest.mark.parametrize(
    ("url", "folder", "error", "pattern"),
    [
        ("https://example.com/a.bin", "nowhere", PathError, "unknown model folder"),
        ("https://example.com/a.bin", "loras/../../x", PathError, "leaves its folder"),
        ("ftp://example.com/a.bin", "loras", DownloadError, "https://"),
        ("http://example.com/a.bin", "loras", DownloadError, "plain http"),
    ],
)
def test_url_target_refuses_bad_input(settings, url, folder, error, pattern):
    with pytest.raises(error, match=pattern):
        url_target(settings, url, folder)


def test_enqueue_url_reuses_an_unfinished_job(settings, range_server, queue):
    url = range_server.add("/files/a.bin", pseudo_random(100))
    first = enqueue_url(settings, url, "loras")
    assert enqueue_url(settings, url, "loras") == first
    job = queue.job(first)
    assert job.kind == "file" and job.files[0].path == "loras/a.bin" and job.label == "loras/a.bin"


def test_cancel_job_drops_partial_files(settings, range_server, queue, download_options):
    data = pseudo_random(600 * KiB)
    url = range_server.add("/files/p.bin", data, throttle=1 * MiB)
    job_id = enqueue_url(settings, url, "loras")
    dest = settings.models_dir / "loras/p.bin"
    stop = threading.Event()
    dl = Downloader(settings, options=download_options())
    with pytest.raises(download.DownloadStopped):
        dl.fetch(download.FileRequest(url, dest), progress=lambda d, t: d > 100 * KiB and stop.set(), stop=stop)
    assert part_path(dest).exists()
    assert cancel_job(settings, job_id)
    assert not part_path(dest).exists() and queue.job(job_id).state == "cancelled"
    assert not cancel_job(settings, job_id)


def test_verified_means_sha256_checked(settings, catalog, download_options):
    install_presets(settings, ["VIDEO_ONE"], options=download_options(), progress=False)
    data = (settings.models_dir / "diffusion_models/video.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(catalog["diffusion_models/video.safetensors"]).hexdigest()
