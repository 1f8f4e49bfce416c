"""`comfypod up`: the container's entrypoint."""

from __future__ import annotations

import click

from services import startup
from services.cli import get_settings
from services.logs import settings_secrets, setup_logging


@click.command("up")
def up_command() -> None:
    """Prepare the workspace, render configs and run supervisord in the foreground."""
    settings = get_settings(click.get_current_context())
    setup_logging(settings.log_level, settings_secrets(settings))
    startup.up(settings)
