"""`comfypod password`: show whether a password is set, or reset it."""

from __future__ import annotations

import click

from services import credentials
from services.cli import get_settings


@click.command("password")
@click.option("--reset", is_flag=True, help="Generate a new admin password and print it once.")
@click.option("--set", "new", metavar="PASSWORD", help="Set this password instead of generating one.")
def password_command(reset: bool, new: str | None) -> None:
    """Reset the one login used by every port."""
    settings = get_settings(click.get_current_context())
    if not (reset or new):
        if settings.access_password:
            click.echo("The password comes from ACCESS_PASSWORD.")
        else:
            click.echo("The password was printed on first start; use --reset to make a new one.")
        return
    password = credentials.reset_password(settings, new)
    click.echo(f"New admin password: {password}" if not new else "Password set.")
