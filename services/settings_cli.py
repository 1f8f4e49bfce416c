"""`comfypod settings`: print every variable with its effective value (secrets masked)."""

from __future__ import annotations

import click

from services.cli import get_settings
from services.secret import Secret
from services.settings import VARIABLES


@click.command("settings")
@click.option("--table", is_flag=True, help="Print the Markdown table of variables for the README.")
def settings_command(table: bool) -> None:
    """Check the environment and show the settings ComfyPod would use."""
    if table:
        click.echo("| variable | default | meaning |\n|---|---|---|")
        for var in VARIABLES:
            default = "" if var.default is None else var.default
            click.echo(f"| `{var.name}` | `{default}` | {var.help} |".replace("``", ""))
        return
    settings = get_settings(click.get_current_context())
    for var in VARIABLES:
        value = getattr(settings, var.field)
        if isinstance(value, Secret):
            value = "(set)" if value else "(not set)"
        elif isinstance(value, tuple):
            value = ",".join(value)
        click.echo(f"{var.name}={value}")
    for notice in settings.notices:
        click.echo(f"notice: {notice}", err=True)
