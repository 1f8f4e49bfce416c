"""Turn preset ids and URLs into queued download jobs, and follow them to the end.

``install_presets`` queues the jobs; when the ``downloader`` program runs under supervisord it
follows them with a progress bar, otherwise it runs a worker in this process (the foreground
download). Either way it returns 0 only when every file is in place and verified.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import click

from presets.download import (
    Downloader,
    DownloadOptions,
    disk_free,
    human,
    part_path,
    remote_name,
)
from presets.queue import ACTIVE_STATES, Job, JobFile, JobQueue
from presets.sources import normalize_url, url_problem
from presets.worker import Worker, WorkerLock, destination, discard_partial
from services.errors import CatalogError, DownloadError, PathError, ServiceError
from services.paths import MODEL_FOLDERS, within

log = logging.getLogger("comfypod.install")

POLL_SECONDS = 0.5


def open_queue(settings: Any) -> JobQueue:
    return JobQueue(settings.queue_db)


# ---- building jobs ---------------------------------------------------------------------------
def _catalog(settings: Any) -> Any:
    from presets.catalog import shared_store

    return shared_store(settings).current()


def preset_files(settings: Any, preset: Any, with_optional: bool = False) -> list[JobFile]:
    """The job files of a preset (required files, plus optional ones when asked)."""
    files: list[JobFile] = []
    for item in preset.files:
        if item.optional and not with_optional:
            continue
        destination(settings, item.path)  # refuses a path outside models/
        files.append(JobFile(path=item.path, url=normalize_url(item.url), size=item.size,
                             sha256=(item.sha256 or None)))
    return files


def enqueue_presets(settings: Any, ids: list[str] | tuple[str, ...], with_optional: bool = False) -> list[int]:
    """Queue one job per preset (an unfinished job for the same preset is reused).

    Raises CatalogError naming the closest ids when an id is unknown; nothing is queued then.
    """
    catalog = _catalog(settings)
    presets, problems = catalog.resolve_ids(list(ids))
    if problems:
        raise CatalogError("; ".join(problems))
    queue = open_queue(settings)
    job_ids: list[int] = []
    for preset in presets:
        existing = queue.find_active(preset_id=preset.id)
        if existing is not None:
            if existing.state == "paused":
                queue.resume(existing.id)
            job_ids.append(existing.id)
            continue
        files = preset_files(settings, preset, with_optional)
        job_ids.append(queue.enqueue("preset", preset.name or preset.id, files, preset_id=preset.id))
        log.info("queued preset %s (%d file(s))", preset.id, len(files))
    return job_ids


def _model_folder(folder: str) -> str:
    text = folder.strip().strip("/")
    first = PurePosixPath(text).parts[0] if text else ""
    if first not in MODEL_FOLDERS:
        raise PathError(f"unknown model folder {folder!r}: use one of {', '.join(MODEL_FOLDERS)}")
    return text


def url_target(settings: Any, url: str, folder: str, filename: str | None = None,
               downloader: Downloader | None = None) -> tuple[str, str]:
    """(normalized URL, models-relative path) for a URL given by a user."""
    link = normalize_url(url)
    problem = url_problem(link)
    if problem:
        raise DownloadError(f"{url.strip()}: {problem}")
    rel_folder = _model_folder(folder)
    name = (filename or "").strip()
    if not name:
        name = remote_name(link)
        if not name or "." not in name:  # a Civitai download id, a bare API path: ask the server
            asker = downloader or Downloader(settings)
            try:
                name = asker.remote_filename(link) or ""
            finally:
                if downloader is None:
                    asker.session.close()
    if not name or name in (".", ".."):
        raise DownloadError(f"{link}: cannot tell the file name; pass --name")
    rel = f"{rel_folder}/{PurePosixPath(name).name}"
    within(settings.models_dir, rel)
    return link, rel


def enqueue_url(settings: Any, url: str, folder: str, filename: str | None = None) -> int:
    """Queue one file from a Hugging Face, Civitai or direct link into ``models/<folder>``."""
    link, rel = url_target(settings, url, folder, filename)
    queue = open_queue(settings)
    existing = queue.find_active(paths=[rel])
    if existing is not None:
        if existing.state == "paused":
            queue.resume(existing.id)
        return existing.id
    job_id = queue.enqueue("file", rel, [JobFile(path=rel, url=link)])
    log.info("queued %s", rel)
    return job_id


def cancel_job(settings: Any, job_id: int) -> bool:
    """Cancel a job; drop the partial files no other unfinished job needs (the worker does the
    same for files it is fetching right now)."""
    queue = open_queue(settings)
    job = queue.job(job_id)
    if job is None or not queue.cancel(job_id):
        return False
    needed = queue.paths_needed(exclude_job=job_id)
    for item in job.files:
        if item.path in needed or item.state == "done":
            continue
        try:
            discard_partial(destination(settings, item.path))
        except PathError:
            continue
    return True


# ---- following ------------------------------------------------------------------------------
def downloader_running(settings: Any) -> bool:
    """True when supervisord answers on its socket and its ``downloader`` program is RUNNING."""
    from services.supervisor import Supervisor

    socket_path = Path(settings.supervisor_socket)
    if not socket_path.exists():
        return False
    try:
        return Supervisor(socket_path, timeout=3).state("downloader").running
    except ServiceError:
        return False


@dataclass
class Outcome:
    ok: bool
    jobs: list[Job]
    missing: list[str]


def verify_jobs(settings: Any, queue: JobQueue, job_ids: list[int]) -> Outcome:
    """Every job done and every file at its destination (at its exact size when known)."""
    jobs = [j for j in (queue.job(i) for i in job_ids) if j is not None]
    missing: list[str] = []
    for job in jobs:
        for item in job.files:
            try:
                dest = destination(settings, item.path)
            except PathError:
                missing.append(item.path)
                continue
            if not dest.is_file() or part_path(dest).exists() or (
                    item.size is not None and dest.stat().st_size != item.size):
                missing.append(item.path)
    ok = len(jobs) == len(job_ids) and all(j.state == "done" for j in jobs) and not missing
    return Outcome(ok, jobs, missing)


def _bar(total: int | None, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled,
                dynamic_ncols=True, file=sys.stderr, leave=True)


def follow_jobs(settings: Any, queue: JobQueue, job_ids: list[int], worker_thread: threading.Thread | None = None,
                progress: bool | None = None) -> Outcome:
    """Show progress until every job is finished (or paused, or the worker is gone)."""
    enabled = sys.stderr.isatty() if progress is None else progress
    bar = _bar(None, enabled)
    seen: dict[int, str] = {}
    try:
        while True:
            jobs = [j for j in (queue.job(i) for i in job_ids) if j is not None]
            total = sum(j.bytes_total or 0 for j in jobs)
            done = sum(j.bytes_done for j in jobs)
            if total and bar.total != total:
                bar.total = total
            bar.n = done
            running = [j for j in jobs if j.state == "running"]
            bar.set_description(running[0].label[:40] if running else "waiting", refresh=False)
            bar.refresh()
            for job in jobs:
                if seen.get(job.id) != job.state:
                    seen[job.id] = job.state
                    if job.state in ("done", "failed", "cancelled", "paused"):
                        note = f": {job.error}" if job.error else ""
                        bar.write(f"{job.label}: {job.state}{note}", file=sys.stderr)
            settled = all(j.state not in ("queued", "probing", "running") for j in jobs)
            if settled:
                break
            if worker_thread is not None and not worker_thread.is_alive():
                break
            time.sleep(POLL_SECONDS)
    finally:
        bar.close()
    return verify_jobs(settings, queue, job_ids)


def run_jobs(settings: Any, job_ids: list[int], follow: bool = True, options: DownloadOptions | None = None,
             progress: bool | None = None) -> int:
    """Wait for ``job_ids``: follow the running downloader, else download here. 0 = all verified."""
    queue = open_queue(settings)
    if downloader_running(settings):
        if not follow:
            click.echo(f"queued job(s) {', '.join(map(str, job_ids))} for the downloader")
            return 0
        outcome = follow_jobs(settings, queue, job_ids, progress=progress)
    else:
        outcome = _foreground(settings, queue, job_ids, options, progress)
    return _report(outcome)


def _foreground(settings: Any, queue: JobQueue, job_ids: list[int], options: DownloadOptions | None,
                progress: bool | None) -> Outcome:
    """Run a worker for these jobs in this process; if another worker holds the lock, follow it."""
    while True:
        if not WorkerLock.held(settings):
            worker = Worker(settings, queue=open_queue(settings), options=options, only_jobs=job_ids)
            errors: list[BaseException] = []

            def body(worker: Worker = worker, errors: list[BaseException] = errors) -> None:
                try:
                    worker.run(until_idle=True)
                except DownloadError as err:  # the lock was taken between our check and now
                    errors.append(err)

            thread = threading.Thread(target=body, name="foreground-worker", daemon=True)
            thread.start()
            try:
                outcome = follow_jobs(settings, queue, job_ids, worker_thread=thread, progress=progress)
            except KeyboardInterrupt:
                worker.stop()
                thread.join(timeout=30)
                raise
            worker.stop()
            thread.join(timeout=30)
            if not errors:
                return verify_jobs(settings, queue, job_ids)
        outcome = follow_jobs_while_locked(settings, queue, job_ids, progress)
        if outcome is not None:
            return outcome


def follow_jobs_while_locked(settings: Any, queue: JobQueue, job_ids: list[int],
                             progress: bool | None) -> Outcome | None:
    """Another worker runs: follow until our jobs settle, or return None once it is gone."""
    click.echo("another download worker is running: following it", err=True)
    while WorkerLock.held(settings):
        states = queue.states(job_ids)
        if all(s not in ("queued", "probing", "running") for s in states.values()):
            return verify_jobs(settings, queue, job_ids)
        time.sleep(POLL_SECONDS * 2)
    return None


def _report(outcome: Outcome) -> int:
    for job in outcome.jobs:
        if job.state != "done":
            click.echo(f"{job.label}: {job.state}{': ' + job.error if job.error else ''}", err=True)
    if outcome.missing and all(j.state == "done" for j in outcome.jobs):
        click.echo(f"not in place: {', '.join(outcome.missing)}", err=True)
    if outcome.ok:
        click.echo(f"done: {len(outcome.jobs)} job(s), every file in place and verified")
        return 0
    return 1


# ---- presets --------------------------------------------------------------------------------
def plan_lines(settings: Any, presets: list[Any], with_optional: bool = False) -> tuple[list[str], int]:
    """Lines of a dry run (file, URL, destination, bytes missing) and the bytes still to fetch."""
    downloader = Downloader(settings)
    lines: list[str] = []
    total = 0
    seen: set[str] = set()
    for preset in presets:
        lines.append(f"{preset.id} ({preset.name})")
        estimates = {f.path: f.approx_size for f in preset.files if getattr(f, "approx_size", None)}
        for item in preset_files(settings, preset, with_optional):
            dest = destination(settings, item.path)
            if item.path in seen:
                lines.append(f"  {item.path}: shared, counted once")
                continue
            seen.add(item.path)
            in_place = dest.is_file() and not part_path(dest).exists() and (
                item.size is None or dest.stat().st_size == item.size)
            if in_place:
                lines.append(f"  {item.path}: in place")
                continue
            have = downloader.done_bytes(dest)
            approx = estimates.get(item.path)
            if item.size is None and approx:
                missing = max(0, approx - have)
                lines.append(f"  {item.path}: about {human(missing)} to fetch of ~{human(approx)} (estimate)")
            elif item.size is None:
                lines.append(f"  {item.path}: size unknown, {human(have)} already fetched")
                missing = 0
            else:
                missing = max(0, item.size - have)
                lines.append(f"  {item.path}: {human(missing)} to fetch of {human(item.size)}")
            lines.append(f"      from {item.url}")
            lines.append(f"      to   {dest}")
            total += missing
    return lines, total


def install_presets(settings: Any, ids: list[str] | tuple[str, ...], dry_run: bool = False, follow: bool = True,
                    *, options: DownloadOptions | None = None, progress: bool | None = None) -> int:
    """`comfypod presets install`: queue, then follow (or download here); 0 = all verified."""
    if dry_run:
        catalog = _catalog(settings)
        presets, problems = catalog.resolve_ids(list(ids))
        if problems:
            raise CatalogError("; ".join(problems))
        lines, missing = plan_lines(settings, presets)
        for line in lines:
            click.echo(line)
        free = disk_free(settings.models_dir)
        margin = (options or DownloadOptions.from_settings(settings)).free_margin
        verdict = "enough" if free >= missing + margin else "NOT enough"
        click.echo(f"to fetch: {human(missing)}; free: {human(free)} ({verdict} space, "
                   f"keeping a {human(margin)} margin)")
        return 0 if free >= missing + margin else 1
    job_ids = enqueue_presets(settings, ids)
    return run_jobs(settings, job_ids, follow=follow, options=options, progress=progress)


def queue_startup_presets(settings: Any) -> list[int]:
    """Start-up step: queue PRESET_DOWNLOAD, IMAGE_PRESET_DOWNLOAD and AUDIO_PRESET_DOWNLOAD.

    An unknown id is reported with the closest matches; the others are still queued. Presets
    already installed are not queued again.
    """
    from presets.status import preset_status

    ids = [*settings.preset_download, *settings.image_preset_download, *settings.audio_preset_download]
    if not ids:
        return []
    catalog = _catalog(settings)
    presets, problems = catalog.resolve_ids(ids)
    for problem in problems:
        log.warning("start-up presets: %s", problem)
    if not presets:
        return []
    statuses = preset_status(catalog, settings.models_dir, [p.id for p in presets])
    wanted = [p.id for p in presets if statuses.get(p.id) is None or statuses[p.id].state != "installed"]
    for preset in presets:
        if preset.id not in wanted:
            log.info("start-up presets: %s is already installed", preset.id)
    job_ids = enqueue_presets(settings, wanted) if wanted else []
    if job_ids:
        log.info("start-up presets: queued %s", ", ".join(wanted))
    return job_ids


def remove_preset(settings: Any, preset_id: str) -> list[Path]:
    """Delete a preset's files that no other installed preset needs; return what was deleted.

    An unfinished job for the preset is cancelled first.
    """
    from presets.status import files_to_remove, installed_ids, preset_status

    catalog = _catalog(settings)
    preset = catalog.get(preset_id)
    queue = open_queue(settings)
    active = queue.find_active(preset_id=preset.id)
    if active is not None and active.state in ACTIVE_STATES:
        cancel_job(settings, active.id)
    keep = set(installed_ids(preset_status(catalog, settings.models_dir))) - {preset.id}
    removed: list[Path] = []
    for path in files_to_remove(catalog, settings.models_dir, preset.id, keep):
        path.unlink(missing_ok=True)
        if path.name.endswith(".part"):
            path.with_name(path.name[:-5] + ".lock").unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed preset %s: %d file(s)", preset.id, len(removed))
    return removed
