"""Issue 11, full disk: the workspace lives on a small tmpfs (the tests run as root, as CI does; where
``mount`` is refused they fail and say why). A disk filling up in the middle of a download is ENOSPC
injected at the write. With the disk full, a download,
a presets.yaml save, a gallery thumbnail and a log write each fail with a clear message; no
existing file is truncated or lost; the services stay up, and work again once space is freed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from presets import catalog
from services import credentials, paths
from services.errors import ComfyPodError
from tests.plugins.admin import SMALL_CATALOG
from tests.support.range_server import safetensors_blob

MiB = 1024 * 1024
PNG_SIZE = 96


def _mount(where: Path, size_mib: int) -> None:
    """Mount a small tmpfs at ``where``; the suite runs as root (as CI does), so this must work."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.fail("the full-disk tests mount a 48 MiB tmpfs and need root (CI runs as root)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(where)],
                            capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        pytest.fail(f"mount -t tmpfs failed: {result.stderr.strip()}")


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=20)


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MiB tmpfs."""
    where = tmp_path / "small-disk"
    _mount(where, 48)
    yield where
    _umount(where)


@pytest.fixture
def workspace(small_disk, tmp_path) -> Path:
    """The workspace of this module's tests sits on the small disk (overrides the shared fixture)."""
    path = small_disk / "workspace"
    path.mkdir()
    return path


def fill(folder: Path, leave: int = 0) -> Path:
    """Write a filler file until the filesystem of ``folder`` has ``leave`` bytes (or none) free."""
    filler = folder / f"filler-{uuid.uuid4().hex[:6]}.bin"
    chunk = b"\0" * MiB
    with open(filler, "wb") as handle:
        while True:
            free = shutil.disk_usage(folder).free - leave
            if free <= 0:
                break
            try:
                handle.write(chunk[: min(MiB, free)])
                handle.flush()
            except OSError as err:
                assert err.errno == errno.ENOSPC
                break
    return filler


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_file() and not path.is_symlink() and not rel.startswith(skip) and "filler-" not in rel:
            data = path.read_bytes()
            out[rel] = (len(data), hashlib.sha256(data).hexdigest())
    return out


def _png(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes("RGB", (PNG_SIZE, PNG_SIZE), os.urandom(PNG_SIZE * PNG_SIZE * 3)).save(path)


def _workspace_with_things(settings) -> None:
    paths.ensure_workspace(settings.workspace)
    credentials.ensure_credentials(settings)
    settings.presets_file.write_text(SMALL_CATALOG)
    for i in range(3):
        _png(settings.output_dir / f"ComfyUI_{i:05}_.png", i)
    (settings.models_dir / "loras" / "kept.safetensors").write_bytes(safetensors_blob(MiB, seed=3))
    (settings.logs_dir / "comfyui.log").write_text("an old line\n" * 100)


def test_full_disk_fails_clearly_and_loses_nothing(settings, small_disk, range_server, caplog, figures) -> None:
    from presets.download import DiskFullError, Downloader, FileRequest
    from tests.plugins.admin import make_admin_app
    from tests.plugins.downloads import fast_options

    _workspace_with_things(settings)
    app = make_admin_app(settings)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {credentials.api_token(settings).reveal()}"
    before = snapshot(settings.workspace)
    data = safetensors_blob(4 * MiB, seed=9)
    url = range_server.add("/big.safetensors", data)
    messages: dict[str, str] = {}
    # the disk filling up in the middle of a download: ENOSPC at the write of the bytes
    dl = Downloader(settings, options=fast_options())
    dest = settings.models_dir / "checkpoints" / "big.safetensors"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("presets.download._write_at", _enospc)
        with pytest.raises(DiskFullError) as midway:
            dl.fetch(FileRequest(url=url, dest=dest, size=len(data)))
    messages["download (while writing)"] = str(midway.value)
    filler = fill(settings.workspace)
    try:
        # a download on the full disk: refused with the disk-full message
        with pytest.raises(DiskFullError) as refused:
            dl.fetch(FileRequest(url=url, dest=dest, size=len(data)))
        messages["download"] = str(refused.value)
        dl.session.close()
        assert not dest.exists()

        # a presets.yaml save: refused with a message, the old file untouched, no temp file left
        bigger = SMALL_CATALOG + "\n".join(f"# padding line {i} " + "x" * 100 for i in range(4000)) + "\n"
        with pytest.raises(ComfyPodError) as saving:
            catalog.save_text(settings.presets_file, bigger)
        messages["presets.yaml save"] = str(saving.value)
        response = client.put("/api/settings/presets-yaml", json={"text": bigger})
        assert response.status_code != 500 and not response.get_json()["saved"], response.get_data()[:300]
        assert settings.presets_file.read_text() == SMALL_CATALOG
        assert not [p for p in settings.config_dir.iterdir() if p.name.endswith(".tmp")]

        # a gallery thumbnail: a placeholder answer, a log line saying why, no partial file left
        with caplog.at_level(logging.WARNING):
            response = client.get("/gallery/thumb/ComfyUI_00001_.png")
        assert response.status_code == 200
        thumbs = settings.workspace / ".cache" / "thumbnails"
        assert not [p for p in thumbs.rglob("*") if p.is_file()] if thumbs.exists() else True
        reason = [r.getMessage() for r in caplog.records if "thumbnail" in r.getMessage()]
        assert reason and ("space" in reason[-1].lower() or "errno 28" in reason[-1].lower()), reason
        messages["gallery thumbnail"] = reason[-1]

        # a log write: logging reports the failure and the program goes on
        handler = logging.FileHandler(settings.logs_dir / "comfyui.log")
        record = logging.LogRecord("comfypod.test", logging.INFO, __file__, 1, "x" * (256 * 1024), None, None)
        errors: list[str] = []
        handler.handleError = lambda rec: errors.append(str(sys.exc_info()[1]))  # type: ignore[method-assign]
        for _ in range(4):
            handler.emit(record)
        handler.close()
        assert errors, "a log write on a full disk did not fail"
        messages["log write"] = errors[0]
        assert client.get("/healthz").status_code == 200
    finally:
        filler.unlink()
    for what, message in messages.items():
        assert "space" in message.lower() or "full" in message.lower() or "errno 28" in message.lower(), (what,
                                                                                                         message)
    after = snapshot(settings.workspace)
    lost = [rel for rel in before if rel not in after]
    assert lost == [], lost
    changed = [rel for rel, (size, digest) in before.items()
               if rel != "logs/comfyui.log" and after[rel] != (size, digest)]
    assert changed == [], changed
    assert after["logs/comfyui.log"][0] >= before["logs/comfyui.log"][0]  # appended to, never truncated
    # with space again, the same download works
    Downloader(settings, options=fast_options()).fetch(FileRequest(url=url, dest=dest, size=len(data)))
    assert dest.read_bytes() == data
    figures("full_disk", mode="tmpfs", writes_refused=len(messages), files_verified=len(before), files_lost=0,
            files_truncated=0, failures=0, messages=messages)


def _enospc(fd, data, offset):  # noqa: ANN001 - presets.download._write_at's signature
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.e2e
def test_full_disk_under_the_mesh_keeps_services_up(mesh_factory, small_disk, range_server, figures) -> None:
    mesh = mesh_factory(ENABLE_CODE_SERVER="false")
    settings = mesh.settings
    for i in range(2):
        _png(settings.output_dir / f"ComfyUI_{i:05}_.png", i)
    (settings.models_dir / "loras" / "kept.safetensors").write_bytes(safetensors_blob(MiB, seed=3))
    names = mesh.enabled()
    bearer = {"Authorization": f"Bearer {mesh.api_token}"}
    admin = mesh.url("admin")
    before = snapshot(settings.workspace, skip=("logs/", "config/state/downloads", ".cache/"))
    logs_before = {p.name: p.stat().st_size for p in settings.logs_dir.glob("*.log")}
    filler = fill(settings.workspace)
    try:
        # a download asked through the admin: refused at once (507, the queue cannot be written),
        # or queued and failed by the worker, either way saying the disk is full
        url = range_server.add("/full.safetensors", safetensors_blob(2 * MiB, seed=4))
        add = {"url": url, "folder": "loras"}
        added = requests.post(f"{admin}/api/models/add", json=add, headers=bearer, timeout=20)
        assert added.status_code in (202, 507), added.text[:300]
        if added.status_code == 507:
            error = added.json()["error"]
        else:
            error = _wait_job(admin, bearer, added.json()["job"], ("failed",)).get("error") or ""
        assert "full" in error.lower() or "space" in error.lower(), error
        # a catalog save answers with a message, not a 500
        text = settings.presets_file.read_text()
        saved = requests.put(f"{admin}/api/settings/presets-yaml", json={"text": text + "#" * 200_000 + "\n"},
                             headers=bearer, timeout=20)
        assert saved.status_code != 500 and not saved.json().get("saved"), saved.text[:300]
        # pages, thumbnails and workflow runs keep answering while programs keep logging
        for _ in range(3):
            for path in ("/gallery/thumb/ComfyUI_00001_.png", "/api/system", "/api/services", "/nope"):
                assert requests.get(f"{admin}{path}", headers=bearer, timeout=20).status_code < 500, path
            requests.get(f"{mesh.url('comfyui')}/system_stats", headers=bearer, timeout=20)
            time.sleep(1)
        states = mesh.supervisor.wait_for(names, timeout=5)
        assert all(states.get(n) == "RUNNING" for n in names), states
    finally:
        filler.unlink()
    assert requests.get(f"{admin}/healthz", timeout=10).status_code == 200
    after = snapshot(settings.workspace, skip=("logs/", "config/state/downloads", ".cache/"))
    assert [r for r in before if r not in after] == []
    assert [r for r in before if r != "config/presets.yaml" and after[r] != before[r]] == []
    assert after["config/presets.yaml"] == before["config/presets.yaml"]
    for name, size in logs_before.items():
        assert (settings.logs_dir / name).stat().st_size >= size, name
    # with space again the same writes work (the worker keeps a 512 MiB margin, more than this
    # small disk holds, so the download itself is checked by the in-process test)
    saved = requests.put(f"{admin}/api/settings/presets-yaml", json={"text": text + "# saved\n"}, headers=bearer,
                         timeout=20)
    assert saved.status_code == 200 and saved.json()["saved"], saved.text[:300]
    thumb = requests.get(f"{admin}/gallery/thumb/ComfyUI_00000_.png", headers=bearer, timeout=20)
    assert thumb.headers["Content-Type"] == "image/webp", thumb.headers
    figures("full_disk_mesh", programs_up=len(names), files_verified=len(before), logs_kept=len(logs_before),
            failures=0)


def test_issue_11_download_state_write_on_a_full_disk_is_a_disk_full_error(small_disk, settings) -> None:
    """Regression (issue 11): on a full disk the first write of a download (its resume state in
    ``<file>.lock``) raised a bare OSError instead of DiskFullError."""
    from presets.download import DiskFullError, _LockFile

    target = settings.workspace / "x.safetensors.lock"
    filler = fill(settings.workspace)
    try:
        with _LockFile(target) as lock, pytest.raises(DiskFullError, match="disk is full"):
            lock.write({"size": 1, "done": [[0, 1]]})
    finally:
        filler.unlink()


def test_issue_11_catalog_save_on_a_full_disk_is_a_catalog_error(small_disk, tmp_path) -> None:
    """Regression (issue 11): presets.catalog.save_text let OSError (ENOSPC) out (a 500 in the admin)."""
    from services.errors import CatalogError

    path = small_disk / "presets.yaml"
    path.write_text(SMALL_CATALOG)
    filler = fill(small_disk)
    try:
        with pytest.raises(CatalogError, match="No space left"):
            catalog.save_text(path, SMALL_CATALOG + "#" * (2 * MiB) + "\n")
    finally:
        filler.unlink()
    assert path.read_text() == SMALL_CATALOG
    left = sorted(p.name for p in small_disk.iterdir() if p.name != "workspace")
    assert left == [".presets.yaml.lock", "presets.yaml"]


def _wait_job(admin: str, bearer: dict, job_id: int, states: tuple[str, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        answer = requests.get(f"{admin}/api/presets/jobs/{job_id}", headers=bearer, timeout=10).json()
        job = answer.get("job", answer)
        if job.get("state") in states:
            break
        time.sleep(0.5)
    return job


def test_issue_11_queue_write_on_a_full_disk_is_a_workspace_error(small_disk) -> None:
    """Regression (issue 11): sqlite3.OperationalError "database or disk is full" escaped the queue
    (the admin answered 500 to "add a model" on a full disk)."""
    from presets.queue import JobFile, JobQueue
    from services.errors import WorkspaceError

    queue = JobQueue(small_disk / "state" / "downloads.sqlite3")
    filler = fill(small_disk)
    try:
        with pytest.raises(WorkspaceError, match="full"):
            for i in range(200):
                queue.enqueue("file", f"loras/x{i}.safetensors",
                              [JobFile(path=f"loras/x{i}.safetensors", url="http://127.0.0.1/x" * 40)])
    finally:
        filler.unlink()
    assert queue.enqueue("file", "loras/ok.safetensors", [JobFile(path="loras/ok.safetensors", url="http://x/")])
