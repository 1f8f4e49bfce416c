"""presets.download against the local range server: every fault ends verified or with a clear
error and nothing at the final path."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import struct
import threading
import time
from pathlib import Path

import pytest

from presets import download
from presets.download import (
    DiskFullError,
    DownloadBusy,
    Downloader,
    DownloadError,
    DownloadOptions,
    DownloadStopped,
    FileRequest,
    HttpFailure,
    _Intervals,
    check_free_space,
    check_safetensors,
    lock_path,
    part_path,
    sniff_error_body,
)
from tests.plugins.downloads import fast_options
from tests.support.range_server import pseudo_random as blob

KiB = 1024
MiB = 1024 * KiB
TOKEN = "hf_testtoken0123456789abcdef"

FAST = fast_options()


def loopback_tokens(url: str) -> str | None:
    """The test rule: the token belongs to 127.0.0.1 only (a stand-in for huggingface.co)."""
    return TOKEN if "//127.0.0.1:" in url else None


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safetensors_bytes(payload: int = 4096) -> bytes:
    header = json.dumps({"w": {"dtype": "U8", "shape": [payload], "data_offsets": [0, payload]}}).encode()
    return struct.pack("<Q", len(header)) + header + blob(payload, 7)


@pytest.fixture
def dl(settings) -> Downloader:
    return Downloader(settings, options=FAST, token_rule=loopback_tokens)


@pytest.fixture
def models(settings) -> Path:
    path = settings.models_dir / "loras"
    path.mkdir(parents=True)
    return path


def assert_clean_failure(dest: Path) -> None:
    assert not dest.exists(), "nothing may appear at the final path"


# ---- happy paths ---------------------------------------------------------------------------------


def test_multi_connection_download_is_verified_and_renamed(dl, models, range_server):
    data = blob(3 * MiB + 12345)
    url = range_server.add("/m.bin", data)
    dest = models / "m.bin"
    seen: list[tuple[int, int | None]] = []
    request = FileRequest(url, dest, size=len(data), sha256=sha(data))
    result = dl.fetch(request, progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == data
    assert result.sha256 == sha(data) and result.size == len(data) and result.fetched == len(data)
    assert not part_path(dest).exists() and not lock_path(dest).exists()
    ranged = [r for r in range_server.requests("/m.bin", "GET") if r.range and r.range != "bytes=0-0"]
    assert len(ranged) >= 4 and all(r.status == 206 for r in ranged)
    # a connection whose piece was split stops early: what was in flight is the only waste
    assert len(data) < range_server.bytes_served("/m.bin") < len(data) * 1.15
    assert seen[-1] == (len(data), len(data))


def test_small_file_uses_one_stream(dl, models, range_server):
    data = blob(100 * KiB)
    url = range_server.add("/s.bin", data)
    dl.fetch(FileRequest(url, models / "s.bin"))
    gets = range_server.requests("/s.bin", "GET")
    assert len(gets) == 2  # the one-byte probe, then the file
    assert (models / "s.bin").read_bytes() == data


def test_file_already_in_place_is_skipped(dl, models, range_server):
    data = blob(10 * KiB)
    (models / "x.bin").write_bytes(data)
    url = range_server.add("/x.bin", data)
    result = dl.fetch(FileRequest(url, models / "x.bin", size=len(data)))
    assert result.skipped and range_server.requests() == []


def test_work_is_split_when_a_connection_is_idle(dl, models, range_server):
    data = blob(2 * MiB)
    url = range_server.add("/w.bin", data, throttle=4 * MiB)
    options = DownloadOptions(**{**FAST.__dict__, "piece_size": 2 * MiB, "steal_min": 32 * KiB, "connections": 4})
    Downloader(dl.settings, options=options, token_rule=loopback_tokens).fetch(FileRequest(url, models / "w.bin"))
    assert (models / "w.bin").read_bytes() == data
    ranges = [r for r in range_server.requests("/w.bin", "GET") if r.range != "bytes=0-0"]
    assert len(ranges) >= 4  # pieces were split for idle connections


# ---- transient faults: resume and retry ----------------------------------------------------------


def test_dropped_connection_resumes_with_range(dl, models, range_server):
    data = blob(3 * MiB)
    url = range_server.add("/d.bin", data, drop_after=200 * KiB, drop_times=3)
    dl.fetch(FileRequest(url, models / "d.bin", sha256=sha(data)))
    assert (models / "d.bin").read_bytes() == data
    assert range_server.bytes_served("/d.bin") < len(data) + 1 * MiB  # resumed, not restarted


def test_stalled_connection_is_dropped_by_the_watchdog(dl, models, range_server):
    data = blob(512 * KiB)
    url = range_server.add("/st.bin", data, stall_after=100 * KiB, stall_seconds=20)
    started = time.monotonic()
    dl.fetch(FileRequest(url, models / "st.bin", sha256=sha(data)))
    assert time.monotonic() - started < 8
    assert (models / "st.bin").read_bytes() == data
    resumes = [r for r in range_server.requests("/st.bin", "GET") if r.range and not r.range.startswith("bytes=0-")]
    assert resumes and resumes[-1].if_range  # resumed with Range + If-Range


def test_throttled_server(dl, models, range_server):
    data = blob(1536 * KiB)
    url = range_server.add("/t.bin", data, throttle=2 * MiB)
    dl.fetch(FileRequest(url, models / "t.bin", sha256=sha(data)))
    assert (models / "t.bin").read_bytes() == data


def test_5xx_and_429_are_retried_honouring_retry_after(dl, models, range_server):
    data = blob(64 * KiB)
    url = range_server.add("/r.bin", data, errors=[500, 503, 429], retry_after="1")
    started = time.monotonic()
    dl.fetch(FileRequest(url, models / "r.bin"))
    assert time.monotonic() - started >= 0.9  # waited as Retry-After asked
    assert (models / "r.bin").read_bytes() == data


def test_persistent_500_gives_up_with_the_reason(dl, models, range_server):
    url = range_server.add("/e.bin", blob(1000), always_status=500)
    with pytest.raises(DownloadError, match=r"gave up after 4 tries: HTTP 500"):
        dl.fetch(FileRequest(url, models / "e.bin"))
    assert_clean_failure(models / "e.bin")
    assert not lock_path(models / "e.bin").exists()


def test_unreachable_server_gives_up(dl, models):
    with pytest.raises(DownloadError, match="cannot reach"):
        dl.fetch(FileRequest("http://127.0.0.1:9/none.bin", models / "none.bin"))
    assert_clean_failure(models / "none.bin")


@pytest.mark.parametrize(
    ("faults", "status", "pattern"),
    [
        ({"token": "other-token"}, 401, "HF_TOKEN was refused"),
        ({"gated": True, "repo": "org/gated"}, 403, r"licence not accepted: open https://huggingface.co/org/gated"),
        ({"always_status": 404}, 404, "not found"),
    ],
)
def test_401_403_404_are_not_retried(dl, models, range_server, faults, status, pattern):
    url = range_server.add("/p.bin", blob(1000), **faults)
    with pytest.raises(HttpFailure, match=pattern) as info:
        dl.fetch(FileRequest(url, models / "p.bin"))
    assert info.value.status == status
    assert len(range_server.requests("/p.bin")) == 1
    assert_clean_failure(models / "p.bin")
    assert TOKEN not in str(info.value)


# ---- the remote file changes / lies --------------------------------------------------------------


def _partial(dl: Downloader, url: str, dest: Path, after: int) -> None:
    """Fetch until ``after`` bytes are on disk, then stop (the .part stays)."""
    stop = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done >= after:
            stop.set()

    with pytest.raises(DownloadStopped):
        dl.fetch(FileRequest(url, dest), progress=progress, stop=stop)
    assert part_path(dest).exists() and not dest.exists()


def test_stopped_download_resumes_from_the_part(dl, models, range_server):
    data = blob(600 * KiB)
    url = range_server.add("/p.bin", data, throttle=1 * MiB)
    dest = models / "p.bin"
    _partial(dl, url, dest, 200 * KiB)
    have = dl.done_bytes(dest)
    assert have >= 200 * KiB
    range_server.reset_counts()
    dl.fetch(FileRequest(url, dest, sha256=sha(data)))
    assert dest.read_bytes() == data
    assert range_server.bytes_served("/p.bin") <= len(data) - have + 1


def test_416_on_resume_restarts_cleanly(dl, models, range_server):
    data = blob(600 * KiB)
    url = range_server.add("/q.bin", data, throttle=1 * MiB)
    dest = models / "q.bin"
    _partial(dl, url, dest, 200 * KiB)
    range_server.add("/q.bin", data, range_416=True, range_416_times=1)
    range_server.reset_counts()
    dl.fetch(FileRequest(url, dest, sha256=sha(data)))
    assert dest.read_bytes() == data
    assert [r.status for r in range_server.requests("/q.bin", "GET")].count(416) == 1
    assert range_server.bytes_served("/q.bin") >= len(data)  # started over from zero


def test_changed_file_answers_200_to_if_range_and_restarts(dl, models, range_server):
    old, new = blob(600 * KiB, 1), blob(600 * KiB, 2)
    url = range_server.add("/c.bin", old, throttle=1 * MiB)
    dest = models / "c.bin"
    _partial(dl, url, dest, 200 * KiB)
    # the probe still sees the old file; the resume request sees the new one
    range_server.add("/c.bin", old, change_after=1, changed=new)
    range_server.reset_counts()
    dl.fetch(FileRequest(url, dest))
    assert dest.read_bytes() == new
    gets = range_server.requests("/c.bin", "GET")
    assert any(r.if_range and r.status == 200 for r in gets)


def test_changed_etag_at_resume_time_drops_the_part(dl, models, range_server):
    old, new = blob(600 * KiB, 1), blob(600 * KiB, 3)
    url = range_server.add("/v.bin", old, throttle=1 * MiB)
    dest = models / "v.bin"
    _partial(dl, url, dest, 200 * KiB)
    range_server.add("/v.bin", new)
    dl.fetch(FileRequest(url, dest, sha256=sha(new)))
    assert dest.read_bytes() == new


def test_server_without_ranges_restarts_after_a_drop(dl, models, range_server):
    data = blob(2 * MiB)
    url = range_server.add("/n.bin", data, no_range=True, drop_after=300 * KiB, drop_times=1)
    dl.fetch(FileRequest(url, models / "n.bin", sha256=sha(data)))
    assert (models / "n.bin").read_bytes() == data
    assert all(r.status == 200 for r in range_server.requests("/n.bin", "GET"))


@pytest.mark.parametrize("no_range", [False, True])
def test_a_lying_content_length_ends_in_a_clear_error(dl, models, range_server, no_range):
    data = blob(200 * KiB)
    url = range_server.add("/l.bin", data, content_length=len(data) + 1000, no_range=no_range)
    with pytest.raises(DownloadError, match="gave up"):
        dl.fetch(FileRequest(url, models / "l.bin"))
    assert_clean_failure(models / "l.bin")


def test_wrong_bytes_once_are_fetched_again(dl, models, range_server):
    data = blob(200 * KiB)
    bad = bytearray(data)
    bad[1000] ^= 0xFF
    url = range_server.add("/b.bin", data, serve=bytes(bad), serve_times=1)
    dl.fetch(FileRequest(url, models / "b.bin", sha256=sha(data)))
    assert (models / "b.bin").read_bytes() == data


def test_wrong_bytes_always_fail_on_sha256(dl, models, range_server):
    data = blob(200 * KiB)
    url = range_server.add("/w.bin", data, serve=blob(200 * KiB, 9))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        dl.fetch(FileRequest(url, models / "w.bin", sha256=sha(data)))
    assert_clean_failure(models / "w.bin")
    assert not part_path(models / "w.bin").exists()


def test_sha256_from_hugging_face_linked_etag(dl, models, range_server):
    data = blob(300 * KiB)
    url = range_server.add("/org/repo/resolve/main/hf.bin", data, hf=True, serve=blob(300 * KiB, 5))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        dl.fetch(FileRequest(url, models / "hf.bin"))  # no catalog sha: the hub's own header decides
    assert_clean_failure(models / "hf.bin")


def test_catalog_size_mismatch_is_refused_before_writing(dl, models, range_server):
    url = range_server.add("/z.bin", blob(5000))
    with pytest.raises(DownloadError, match="catalog expects 4000"):
        dl.fetch(FileRequest(url, models / "z.bin", size=4000))
    assert not part_path(models / "z.bin").exists() and not (models / "z.bin").exists()


@pytest.mark.parametrize("fault", ["html", "json_error"])
def test_error_pages_are_never_accepted_as_models(dl, models, range_server, fault):
    url = range_server.add("/model.safetensors", blob(1000), **{fault: True})
    with pytest.raises(DownloadError, match="HTML page|JSON error"):
        dl.fetch(FileRequest(url, models / "model.safetensors"))
    assert_clean_failure(models / "model.safetensors")


def test_a_body_far_smaller_than_a_model_is_refused(dl, models, range_server):
    url = range_server.add("/tiny.safetensors", b"Repository not found\n", content_type="text/plain")
    with pytest.raises(DownloadError, match="not a model file"):
        dl.fetch(FileRequest(url, models / "tiny.safetensors"))
    assert_clean_failure(models / "tiny.safetensors")


def test_html_body_served_as_octet_stream_is_refused(dl, models, range_server):
    page = b"<!DOCTYPE html><html>" + b"x" * 4000 + b"</html>"
    url = range_server.add("/page.ckpt", page)
    with pytest.raises(DownloadError, match="HTML/XML page"):
        dl.fetch(FileRequest(url, models / "page.ckpt"))
    assert_clean_failure(models / "page.ckpt")


def test_safetensors_header_must_parse(dl, models, range_server):
    good = safetensors_bytes()
    url = range_server.add("/good.safetensors", good)
    dl.fetch(FileRequest(url, models / "good.safetensors"))
    assert (models / "good.safetensors").read_bytes() == good
    url = range_server.add("/bad.safetensors", blob(8 * KiB))
    with pytest.raises(DownloadError, match="safetensors"):
        dl.fetch(FileRequest(url, models / "bad.safetensors"))
    assert_clean_failure(models / "bad.safetensors")


# ---- tokens ---------------------------------------------------------------------------------------


def test_token_goes_to_its_host_and_never_to_a_redirect_target(dl, models, range_server):
    data = blob(300 * KiB)
    url = range_server.add("/org/repo/resolve/main/cdn.bin", data, hf=True, hf_cdn=True, token=TOKEN)
    dl.fetch(FileRequest(url, models / "cdn.bin"))
    assert (models / "cdn.bin").read_bytes() == data
    records = range_server.requests("/org/repo/resolve/main/cdn.bin")
    origin = [r for r in records if not r.path.startswith("/_cdn")]
    cdn = [r for r in records if r.path.startswith("/_cdn")]
    assert origin and all(r.authorization == f"Bearer {TOKEN}" for r in origin)
    assert cdn and all(r.authorization is None for r in cdn) and all(r.host.startswith("localhost") for r in cdn)


def test_an_expired_signed_link_is_resolved_again(dl, models, range_server):
    data = blob(2 * MiB)
    url = range_server.add("/org/repo/resolve/main/exp.bin", data, hf=True, hf_cdn=True, cdn_expire_after=3)
    dl.fetch(FileRequest(url, models / "exp.bin"))
    assert (models / "exp.bin").read_bytes() == data
    records = range_server.requests("/org/repo/resolve/main/exp.bin")
    assert any(r.status == 403 for r in records if r.path.startswith("/_cdn"))
    assert len([r for r in records if not r.path.startswith("/_cdn")]) >= 2  # resolved again


def test_redirect_to_another_host_drops_the_token(dl, models, range_server):
    data = blob(10 * KiB)
    target = range_server.add("/target.bin", data)
    other = range_server.url("/target.bin", host="localhost")
    url = range_server.add("/start.bin", b"", redirect_to=other)
    dl.fetch(FileRequest(url, models / "target.bin"))
    assert target
    first = range_server.requests("/start.bin")[0]
    assert first.authorization == f"Bearer {TOKEN}"
    assert all(r.authorization is None for r in range_server.requests("/target.bin"))


def test_token_is_never_logged(dl, models, range_server, caplog):
    caplog.set_level(logging.DEBUG, logger="comfypod")
    url = range_server.add("/secret.bin", blob(1000), always_status=503)
    with pytest.raises(DownloadError) as info:
        dl.fetch(FileRequest(url + f"?token={TOKEN}", models / "secret.bin"))
    assert TOKEN not in str(info.value)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("comfypod"))
    assert ours and TOKEN not in ours


def test_default_rule_sends_tokens_only_to_their_hosts(settings, make_settings):
    configured = make_settings(HF_TOKEN="hf_abcdefghijklmnop", CIVITAI_TOKEN="civ_secret")
    rule = download.default_token_rule(configured)
    assert rule("https://huggingface.co/org/repo/resolve/main/a.safetensors") == "hf_abcdefghijklmnop"
    assert rule("https://civitai.com/api/download/models/1") == "civ_secret"
    assert rule("https://cdn-lfs.huggingface.co/x") is None
    assert rule("https://example.com/a.bin") is None
    assert download.default_token_rule(settings)("https://huggingface.co/a/b/resolve/main/c") is None


# ---- probe ---------------------------------------------------------------------------------------


def test_probe_ok_reports_size_etag_and_hub_headers(dl, range_server):
    data = blob(5000)
    url = range_server.add("/org/repo/resolve/main/f.safetensors", data, hf=True, commit="c" * 40)
    result = dl.probe(url)
    assert result.status == "ok" and result.ok
    assert result.size == len(data) and result.linked_etag == sha(data) and result.commit == "c" * 40
    assert result.etag and result.final_url == url
    assert range_server.bytes_served() <= 1


@pytest.mark.parametrize(
    ("faults", "status"),
    [
        ({"token": "zzz"}, "needs_token"),
        ({"gated": True, "repo": "org/m"}, "gated"),
        ({"always_status": 404}, "not_found"),
        ({"always_status": 410}, "not_found"),
        ({"html": True}, "error"),
    ],
)
def test_probe_classifies_problems(range_server, settings, faults, status):
    url = range_server.add("/a.safetensors", blob(1000), **faults)
    result = Downloader(settings, options=FAST, token_rule=lambda u: None).probe(url)
    assert result.status == status, result
    assert result.message
    if status == "gated":
        assert result.licence_url == "https://huggingface.co/org/m"
        assert "HF_TOKEN must be set" in result.message
    if status == "needs_token":
        assert "HF_TOKEN" in result.message


def test_probe_unknown_path_is_not_found(dl, range_server):
    assert dl.probe(range_server.url("/missing.bin")).status == "not_found"


def test_probe_reports_a_moved_file(dl, range_server):
    new = range_server.add("/new/name.bin", blob(1000))
    old = range_server.add("/old/name.bin", b"", redirect_to=new)
    result = dl.probe(old)
    assert result.status == "moved" and result.ok and result.final_url == new


def test_probe_retries_then_reports_an_error(dl, range_server):
    url = range_server.add("/busy.bin", blob(1000), always_status=502)
    result = dl.probe(url)
    assert result.status == "error" and "502" in result.message
    assert len(range_server.requests("/busy.bin")) == FAST.probe_tries


def test_module_probe_shape(settings, range_server):
    url = range_server.add("/shape.bin", blob(2000))
    result = download.probe(url, settings)
    assert (result.status, result.http_status, result.size) == ("ok", 206, 2000)
    for name in ("etag", "linked_etag", "commit", "final_url", "message"):
        assert hasattr(result, name)


def test_remote_filename_from_content_disposition(dl, range_server):
    url = range_server.add("/api/download/models/123", blob(1000), disposition="style_v2.safetensors")
    assert dl.remote_filename(url) == "style_v2.safetensors"
    plain = range_server.add("/files/plain.bin", blob(1000))
    assert dl.remote_filename(plain) == "plain.bin"


# ---- disk ------------------------------------------------------------------------------------------


def test_free_space_is_checked_before_a_job(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "disk_free", lambda path: 100 * MiB)
    check_free_space([(tmp_path / "a.bin", 10 * MiB)], margin=50 * MiB)
    with pytest.raises(DiskFullError, match="not enough space.*only 100.0 MiB free"):
        check_free_space([(tmp_path / "a.bin", 60 * MiB), (tmp_path / "b.bin", 30 * MiB)], margin=50 * MiB)


def test_full_disk_mid_download_keeps_the_part_and_resumes(dl, models, range_server, monkeypatch):
    data = blob(3 * MiB)
    url = range_server.add("/full.bin", data)
    dest = models / "full.bin"
    real = download._write_at
    written = {"n": 0}

    def filling(fd: int, chunk: bytes, offset: int) -> None:
        if written["n"] + len(chunk) > 1 * MiB:
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(chunk)
        real(fd, chunk, offset)

    monkeypatch.setattr(download, "_write_at", filling)
    with pytest.raises(DiskFullError, match="disk is full"):
        dl.fetch(FileRequest(url, dest, sha256=sha(data)))
    assert part_path(dest).exists() and not dest.exists()
    kept = dl.done_bytes(dest)
    assert 0 < kept <= 1 * MiB
    monkeypatch.setattr(download, "_write_at", real)
    range_server.reset_counts()
    dl.fetch(FileRequest(url, dest, sha256=sha(data)))
    assert dest.read_bytes() == data
    # resumed: only what was missing, plus what split pieces had in flight
    assert range_server.bytes_served("/full.bin") < len(data) - kept + len(data) // 4


def test_a_locked_destination_is_busy(dl, models, range_server):
    url = range_server.add("/l.bin", blob(1000))
    dest = models / "l.bin"
    fd = os.open(lock_path(dest), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DownloadBusy):
            dl.fetch(FileRequest(url, dest))
    finally:
        os.close(fd)
    assert_clean_failure(dest)


# ---- pure helpers -----------------------------------------------------------------------------------


def test_intervals_merge_and_gaps():
    iv = _Intervals()
    iv.add(10, 20)
    iv.add(0, 5)
    iv.add(5, 10)
    iv.add(30, 40)
    assert iv.items == [[0, 20], [30, 40]]
    assert iv.prefix() == 20 and iv.total() == 30
    assert iv.gaps(50) == [(20, 30), (40, 50)]
    iv.add(15, 35)
    assert iv.items == [[0, 40]]


def test_sniff_and_safetensors_checks(tmp_path):
    assert sniff_error_body(b"  <!DOCTYPE html><html>")
    assert sniff_error_body(b'{"error": "nope"}')
    assert sniff_error_body(b"\x00\x01binary") is None
    good = tmp_path / "g.safetensors"
    good.write_bytes(safetensors_bytes())
    assert check_safetensors(good, good.stat().st_size) is None
    bad = tmp_path / "b.safetensors"
    data = bytearray(safetensors_bytes())
    bad.write_bytes(bytes(data[:-10]))
    assert "outside" in (check_safetensors(bad, bad.stat().st_size) or "")
