"""``comfypod presets``: list, show, install, remove, status, validate, check-urls, search,
update and pin. Each command is a thin ``<verb>_command`` over plain functions."""

from __future__ import annotations

import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from presets.catalog import (
    DEFAULT_PATH,
    Catalog,
    CatalogStore,
    Preset,
    _edit,
    load_catalog,
    seed_catalog,
)
from presets.sources import classify_source, hub_file, pinned_url, token_for
from presets.status import disk_usage, files_to_remove, installed_ids, preset_status
from presets.validate import CatalogValidationError, Issue, format_size
from services.cli import get_settings
from services.errors import CatalogError

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _catalog(settings: Any) -> Catalog:
    store = CatalogStore(settings)
    catalog = store.current()
    if store.error:
        click.echo(f"warning: {store.path} has an error, using the last good catalog: {store.error}", err=True)
    return catalog


def _user_file(settings: Any) -> Path:
    path = Path(settings.presets_file)
    if not path.exists():
        seed_catalog(settings)
    return path


def _size(preset: Preset) -> str:
    total, exact = preset.total_size
    return format_size(total, approx=not exact) if total else "?"


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


@click.group("presets")
def presets_group() -> None:
    """Model presets: named sets of files for video, image and audio workflows."""


# ---- list / show / search / status -------------------------------------------------------


@presets_group.command("list")
@click.option("--type", "kind", type=click.Choice(["video", "image", "audio"]), help="only this type")
@click.option("--installed", is_flag=True, help="only presets with every required file in place")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def list_command(ctx: click.Context, kind: str | None, installed: bool, as_json: bool) -> None:
    """List presets with their state and download size."""
    settings = get_settings(ctx)
    catalog = _catalog(settings)
    statuses = preset_status(catalog, settings.models_dir)
    rows = [p for p in catalog if (kind is None or p.type == kind)]
    if installed:
        rows = [p for p in rows if statuses[p.id].state == "installed"]
    if as_json:
        _echo_json([{**p.as_dict(), "state": statuses[p.id].state} for p in rows])
        return
    if not rows:
        click.echo("no presets match")
        return
    width = max(len(p.id) for p in rows)
    for preset in rows:
        state = statuses[preset.id].state
        click.echo(f"{preset.id:<{width}}  {preset.type:<5}  {state:<9}  {_size(preset):>10}  {preset.name}")


@presets_group.command("show")
@click.argument("preset_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_command(ctx: click.Context, preset_id: str, as_json: bool) -> None:
    """Everything about one preset: files, sizes, sources and what is on disk."""
    settings = get_settings(ctx)
    catalog = _catalog(settings)
    preset = catalog.get(preset_id)
    status = preset_status(catalog, settings.models_dir, [preset.id])[preset.id]
    if as_json:
        _echo_json({**preset.as_dict(), "status": status.as_dict()})
        return
    click.echo(f"{preset.id}: {preset.name}")
    click.echo(f"  type: {preset.type} ({preset.category})   state: {status.state}")
    if preset.replaced_by:
        click.echo(f"  replaced by: {preset.replaced_by}")
    if preset.description:
        click.echo(f"  {preset.description}")
    if preset.use_case:
        click.echo(f"  use: {preset.use_case}")
    if preset.tags:
        click.echo(f"  tags: {', '.join(preset.tags)}")
    needs = []
    if preset.vram_gb:
        needs.append(f"VRAM {preset.vram_gb:g} GB")
    if preset.disk_gb:
        needs.append(f"disk {preset.disk_gb:g} GB")
    if needs:
        click.echo(f"  needs: {', '.join(needs)}")
    for item, fstat in zip(preset.files, status.files, strict=True):
        flags = " (optional)" if item.optional else ""
        others = fstat.shared_with
        shared = ""
        if others:
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            shared = f", shared with {', '.join(others[:3])}{more}"
        size = format_size(item.expected_size, approx=item.size is None)
        click.echo(f"  - {item.path}{flags}: {fstat.state}, {size}{shared}")
        click.echo(f"      {item.url}")
        if item.sha256:
            click.echo(f"      sha256 {item.sha256}")
        if item.note:
            click.echo(f"      note: {item.note}")
        check = item.last_check or {}
        if check.get("status") in ("needs_token", "gated"):
            kind = "CIVITAI_TOKEN" if item.source.get("type") == "civitai" else "HF_TOKEN"
            has = token_for(item.url, settings) is not None
            click.echo(f"      last check {check.get('at', '?')}: {check['status']} (HTTP {check.get('http_status')})"
                       + ("" if has else f": set {kind}, or the repository is private or gone"))


@presets_group.command("search")
@click.argument("text", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def search_command(ctx: click.Context, text: tuple[str, ...], as_json: bool) -> None:
    """Find presets by id, name, tag, type or words of their description."""
    settings = get_settings(ctx)
    found = _catalog(settings).search(" ".join(text))
    if as_json:
        _echo_json([p.as_dict() for p in found])
        return
    if not found:
        click.echo("no preset matches")
        sys.exit(1)
    for preset in found:
        click.echo(f"{preset.id}  ({preset.type}, {_size(preset)})  {preset.name}")


@presets_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="also list presets with nothing on disk")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool, show_all: bool) -> None:
    """What is installed, partly downloaded or damaged under workspace/models."""
    settings = get_settings(ctx)
    catalog = _catalog(settings)
    statuses = preset_status(catalog, settings.models_dir)
    used = disk_usage(catalog, settings.models_dir)
    if as_json:
        _echo_json({"disk_bytes": used, "presets": {pid: s.as_dict() for pid, s in statuses.items()}})
        return
    counts = {state: 0 for state in ("installed", "partial", "damaged", "missing")}
    for status in statuses.values():
        counts[status.state] += 1
    click.echo(", ".join(f"{n} {state}" for state, n in counts.items()) + f"; {format_size(used)} on disk")
    for pid, status in statuses.items():
        if status.state == "missing" and not show_all:
            continue
        detail = f"{status.files_present}/{len(status.files)} files"
        if status.bytes_missing:
            detail += f", {format_size(status.bytes_missing, approx=not status.exact)} to fetch"
        bad = [f.path for f in status.files if f.state == "damaged"]
        if bad:
            detail += f", wrong size: {', '.join(bad)}"
        click.echo(f"  {pid:<32} {status.state:<9} {detail}")


# ---- validate ----------------------------------------------------------------------------


@presets_group.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def validate_command(ctx: click.Context, file: Path | None, as_json: bool) -> None:
    """Check a catalog (default: workspace/config/presets.yaml); exit 6 on errors."""
    if file is None:
        settings = get_settings(ctx)
        file = Path(settings.presets_file)
        if not file.exists():
            file = DEFAULT_PATH
    issues: list[Issue]
    try:
        catalog = load_catalog(file)
        issues = list(catalog.warnings)
        error: CatalogError | None = None
    except CatalogValidationError as err:
        issues, error, catalog = err.issues, err, None
    except CatalogError as err:
        issues, error, catalog = [Issue(str(err), file=str(file))], err, None
    if as_json:
        _echo_json({"file": str(file), "valid": error is None, "issues": [i.as_dict() for i in issues]})
    else:
        for issue in issues:
            click.echo(str(issue), err=issue.is_error)
        if catalog is not None:
            click.echo(f"{file}: {len(catalog)} presets, valid"
                       + (f" ({len(issues)} warning{'s' if len(issues) != 1 else ''})" if issues else ""))
    if error is not None:
        if as_json:
            sys.exit(error.exit_code)
        errors = sum(1 for i in issues if i.is_error)
        raise CatalogError(f"{file}: {errors} error{'s' if errors != 1 else ''}")


# ---- install / remove --------------------------------------------------------------------


@presets_group.command("install")
@click.argument("ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="show what would be fetched, and the free space")
@click.pass_context
def install_command(ctx: click.Context, ids: tuple[str, ...], dry_run: bool) -> None:
    """Download presets (queued for the downloader when it runs, else here), then verify."""
    from presets.install import install_presets

    settings = get_settings(ctx)
    result = install_presets(settings, list(ids), dry_run=dry_run, follow=True)
    if isinstance(result, bool):
        sys.exit(0 if result else 1)
    if isinstance(result, int):
        sys.exit(result)


@presets_group.command("remove")
@click.argument("ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="do not ask")
@click.option("--dry-run", is_flag=True, help="only list the files that would be deleted")
@click.pass_context
def remove_command(ctx: click.Context, ids: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Delete a preset's files, except those another installed preset still needs."""
    settings = get_settings(ctx)
    catalog = _catalog(settings)
    presets, problems = catalog.resolve_ids(list(ids))
    if problems:
        raise CatalogError("; ".join(problems))
    statuses = preset_status(catalog, settings.models_dir)
    keep = set(installed_ids(statuses))
    removing = {p.id for p in presets}
    targets: list[Path] = []
    for preset in presets:
        for path in files_to_remove(catalog, settings.models_dir, preset.id, keep - removing):
            if path not in targets:
                targets.append(path)
    if not targets:
        click.echo("nothing to delete")
        return
    total = sum(p.lstat().st_size for p in targets)
    for path in targets:
        click.echo(f"  {path}")
    click.echo(f"{len(targets)} file(s), {format_size(total)}")
    if dry_run:
        return
    if not yes and not click.confirm("delete them?", default=False):
        raise click.exceptions.Abort
    _cancel_jobs(settings, [p.id for p in presets])
    for path in targets:
        path.unlink(missing_ok=True)
        if path.name.endswith(".part"):
            path.with_name(path.name[: -len(".part")] + ".lock").unlink(missing_ok=True)
    click.echo(f"removed {', '.join(p.id for p in presets)}")


def _cancel_jobs(settings: Any, ids: list[str]) -> None:
    """Cancel unfinished download jobs of these presets, so nothing writes what we delete."""
    from presets.install import cancel_job, open_queue
    from presets.queue import ACTIVE_STATES

    if not Path(settings.queue_db).exists():
        return
    queue = open_queue(settings)
    for preset_id in ids:
        job = queue.find_active(preset_id=preset_id)
        if job is not None and job.state in ACTIVE_STATES:
            cancel_job(settings, job.id)


# ---- network: check-urls / pin / update --------------------------------------------------


def _targets(catalog: Catalog, ids: tuple[str, ...]) -> list[Preset]:
    if not ids:
        return list(catalog)
    presets, problems = catalog.resolve_ids(list(ids))
    if problems:
        raise CatalogError("; ".join(problems))
    return presets


def _probe_all(urls: list[str], settings: Any, workers: int = 8) -> dict[str, Any]:
    from presets.download import probe

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(urls)))) as pool:
        results = list(pool.map(lambda u: probe(u, settings), urls))
    return dict(zip(urls, results, strict=True))


@presets_group.command("check-urls")
@click.argument("ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@click.option("--record", is_flag=True, help="write each answer into presets.yaml as last_check")
@click.pass_context
def check_urls_command(ctx: click.Context, ids: tuple[str, ...], as_json: bool, record: bool) -> None:
    """Ask every URL (HEAD / ranged GET, with the tokens) whether it still serves its file."""
    settings = get_settings(ctx)
    catalog = _catalog(settings)
    presets = _targets(catalog, ids)
    urls: list[str] = []
    users: dict[str, list[str]] = {}
    for preset in presets:
        for item in preset.files:
            if item.url not in users:
                urls.append(item.url)
            users.setdefault(item.url, []).append(preset.id)
    results = _probe_all(urls, settings) if urls else {}
    bad = [u for u, r in results.items() if r.status != "ok"]
    if as_json:
        _echo_json([
            {"url": u, "presets": users[u], "status": r.status, "http_status": r.http_status,
             "size": r.size, "final_url": r.final_url, "message": r.message}
            for u, r in results.items()
        ])
    else:
        for url, res in results.items():
            extra = f" ({res.message})" if res.message and res.status != "ok" else ""
            code = res.http_status if res.http_status is not None else "-"
            click.echo(f"{res.status:<11} {code:<4} {url}{extra}")
        click.echo(f"{len(results) - len(bad)} ok, {len(bad)} with problems, of {len(results)} URLs")
    if record and results:
        _record_checks(settings, results)
    if bad:
        sys.exit(1)


def _record_checks(settings: Any, results: dict[str, Any]) -> None:
    import datetime

    today = datetime.date.today().isoformat()

    def change(data: dict[str, Any]) -> bool:
        changed = False
        for item in data.get("files") or []:
            res = results.get(item.get("url"))
            if res is None:
                continue
            item["last_check"] = {"status": res.status, "http_status": res.http_status, "at": today}
            changed = True
        return changed

    _edit_presets(settings, change)


def _edit_presets(settings: Any, change: Any) -> list[str]:
    """Apply ``change(preset_data) -> bool`` to every preset of the user's file, in one write."""
    from presets import yamledit

    path = _user_file(settings)
    touched: list[str] = []

    def edit(text: str) -> str:
        root = yamledit.parse(text)
        values = {}
        for pid, node in root["presets"].items():
            data = yamledit._plain(node)
            if change(data):
                values[pid] = data
                touched.append(pid)
        return yamledit.set_entries(text, ("presets",), values) if values else text

    _edit(path, edit)
    return touched


@presets_group.command("pin")
@click.argument("ids", nargs=-1)
@click.option("--dry-run", is_flag=True)
@click.pass_context
def pin_command(ctx: click.Context, ids: tuple[str, ...], dry_run: bool) -> None:
    """Record each Hugging Face file's commit, sha256 and size, so resolve/main cannot drift."""
    settings = get_settings(ctx)
    catalog = _catalog(settings)
    presets = _targets(catalog, ids)
    urls = []
    for preset in presets:
        for item in preset.files:
            hub = hub_file(item.url)
            if hub is None or (_COMMIT.match(hub["revision"]) and item.sha256 and item.size is not None):
                continue
            if item.url not in urls:
                urls.append(item.url)
    if not urls:
        click.echo("nothing to pin")
        return
    results = _probe_all(urls, settings)
    pins: dict[str, dict[str, Any]] = {}
    failed = 0
    for url, res in results.items():
        if res.status == "ok" and res.commit and res.linked_etag:
            pins[url] = {"url": pinned_url(url, res.commit), "size": res.size, "sha256": res.linked_etag,
                         "revision": res.commit}
            click.echo(f"pinned  {url} @ {res.commit[:12]}")
        else:
            failed += 1
            why = res.message or (res.status if res.status != "ok" else "no X-Repo-Commit / X-Linked-Etag")
            click.echo(f"skipped {url}: {why}")
    if pins and not dry_run:

        def change(data: dict[str, Any]) -> bool:
            changed = False
            for item in data.get("files") or []:
                pin = pins.get(item.get("url"))
                if pin is None:
                    continue
                item["url"] = pin["url"]
                if isinstance(pin["size"], int):
                    item["size"] = pin["size"]
                item["sha256"] = str(pin["sha256"]).lower()
                source = dict(item.get("source") or {"type": classify_source(pin["url"])["type"]})
                source["revision"] = pin["revision"]
                item["source"] = source
                changed = True
            return changed

        touched = _edit_presets(settings, change)
        click.echo(f"{len(pins)} file(s) pinned in {len(touched)} preset(s)")
    if failed:
        sys.exit(1)


@presets_group.command("update")
@click.argument("source", required=False)
@click.option("--dry-run", is_flag=True, help="show what would change, write nothing")
@click.option("--force", is_flag=True, help="merge even when the new catalog's version is older")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def update_command(ctx: click.Context, source: str | None, dry_run: bool, force: bool, as_json: bool) -> None:
    """Merge a newer catalog (a URL or file; default PRESETS_UPDATE_URL) into yours, keeping your edits."""
    from presets.merge import update_catalog

    settings = get_settings(ctx)
    _user_file(settings)
    result = update_catalog(settings, source, dry_run=dry_run, force=force)
    if as_json:
        _echo_json(result.as_dict())
    else:
        click.echo(result.summary())
        if dry_run and result.changed:
            click.echo("(dry run: nothing written)")
