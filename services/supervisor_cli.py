"""`comfypod ctl …` (supervisorctl with the right config) and `comfypod status`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from services.cli import get_settings
from services.supervisor import from_settings


@click.command("ctl", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ctl_command(args: tuple[str, ...]) -> None:
    """Run supervisorctl against this pod's supervisord (e.g. `comfypod ctl restart comfyui`)."""
    settings = get_settings(click.get_current_context())
    binary = str(settings.venv_bin / "supervisorctl")
    conf = settings.supervisord_conf
    linked = Path(sys.prefix) / "etc" / "supervisord.conf"
    if not conf.exists() and linked.exists():
        conf = linked  # the pod `comfypod up` linked last (e.g. `make up` with its own RUN_DIR)
    sys.stdout.flush()
    os.execv(binary, [binary, "-c", str(conf), *args])


@click.command("status")
def status_command() -> None:
    """One line per program: state, pid, uptime."""
    settings = get_settings(click.get_current_context())
    for item in from_settings(settings).states():
        uptime = f"{item.uptime // 3600}:{item.uptime // 60 % 60:02d}:{item.uptime % 60:02d}" if item.running else ""
        click.echo(f"{item.name:<12} {item.state:<9} {item.pid or '':>7} {uptime}")
