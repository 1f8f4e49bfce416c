"""``comfypod models``: add a model from any URL, list the models folders, remove a file.

``models add URL --folder loras [--name F]`` takes a Hugging Face link (a /blob/ link becomes
/resolve/), a Civitai model page or download link, or a direct URL, and downloads it on the
pod (through the downloader when it runs, else here), verified like a preset file.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from presets.download import human, lock_path, part_path
from services.cli import get_settings
from services.errors import PathError
from services.paths import MODEL_FOLDERS, within


@click.group("models")
def models_group() -> None:
    """Model files under workspace/models: add from a URL, list, remove."""


@models_group.command("add")
@click.argument("url")
@click.option("--folder", "-f", required=True, help=f"models folder, e.g. loras ({', '.join(MODEL_FOLDERS[:6])}, …)")
@click.option("--name", "-n", default=None, help="file name (default: from the URL or the server)")
@click.option("--no-follow", is_flag=True, help="queue for the downloader and return at once")
@click.pass_context
def add_command(ctx: click.Context, url: str, folder: str, name: str | None, no_follow: bool) -> None:
    """Download URL into models/FOLDER (Hugging Face, Civitai or a direct link)."""
    from presets.install import enqueue_url, run_jobs

    settings = get_settings(ctx)
    job_id = enqueue_url(settings, url, folder, name)
    ctx.exit(run_jobs(settings, [job_id], follow=not no_follow))


def _model_files(models_dir: Path, folder: str | None) -> list[tuple[str, int, bool]]:
    """(relative path, size, partial) for every file under models (or one folder)."""
    base = within(models_dir, folder) if folder else models_dir.resolve()
    rows: list[tuple[str, int, bool]] = []
    if not base.is_dir():
        return rows
    root = models_dir.resolve()
    for path in sorted(base.rglob("*")):
        if path.name.endswith(".lock") or not path.is_file():
            continue
        partial = path.name.endswith(".part")
        rel = path.relative_to(root).as_posix()
        rows.append((rel[:-5] if partial else rel, path.stat().st_size, partial))
    return rows


@models_group.command("list")
@click.option("--folder", "-f", default=None, help="only this models folder")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def list_command(ctx: click.Context, folder: str | None, as_json: bool) -> None:
    """Files under workspace/models (partial downloads marked)."""
    settings = get_settings(ctx)
    rows = _model_files(settings.models_dir, folder)
    if as_json:
        click.echo(json.dumps([{"path": p, "size": s, "partial": part} for p, s, part in rows], indent=2))
        return
    for rel, size, partial in rows:
        click.echo(f"{human(size):>10}  {rel}{'  (partial download)' if partial else ''}")
    total = sum(s for _, s, _ in rows)
    click.echo(f"{len(rows)} file(s), {human(total)}")


@models_group.command("rm")
@click.argument("path")
@click.option("--yes", "-y", is_flag=True, help="do not ask")
@click.pass_context
def rm_command(ctx: click.Context, path: str, yes: bool) -> None:
    """Delete models/PATH (and its partial download)."""
    settings = get_settings(ctx)
    rel = path.strip()
    if rel.startswith("models/"):
        rel = rel[len("models/"):]
    target = within(settings.models_dir, rel)
    if target == settings.models_dir.resolve() or target.parent == settings.models_dir.resolve():
        if target.is_dir() or not target.exists():
            raise PathError(f"{path}: give a file inside a models folder, e.g. loras/name.safetensors")
    victims = [p for p in (target, part_path(target), lock_path(target)) if p.is_file() or p.is_symlink()]
    if not victims:
        raise PathError(f"no such model file: {rel}")
    if target.is_dir():
        raise PathError(f"{rel} is a folder; remove files one by one")
    if not yes and not click.confirm(f"delete {rel}?", default=False):
        raise click.exceptions.Abort
    for victim in victims:
        victim.unlink(missing_ok=True)
    click.echo(f"removed {rel}")
