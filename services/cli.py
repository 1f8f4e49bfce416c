"""The ``comfypod`` command: one click group whose subcommands live in their own modules.

Subcommands are imported lazily (``COMMANDS`` maps a name to ``module:attribute``), so
``comfypod ctl status`` does not pay for importing Flask, and each area owns its commands.
A :class:`ComfyPodError` is printed as one line and the process exits with its code.
"""

from __future__ import annotations

import importlib
import sys

import click

from services.errors import ComfyPodError

# name -> ("module:attribute", one-line help); the help is here so `--help` imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("services.startup_cli:up_command", "Prepare the workspace and run supervisord (entrypoint)."),
    "ctl": ("services.supervisor_cli:ctl_command", "supervisorctl for this pod (ctl restart comfyui)."),
    "status": ("services.supervisor_cli:status_command", "State, pid and uptime of every program."),
    "settings": ("services.settings_cli:settings_command", "Check the environment; show settings."),
    "password": ("services.credentials_cli:password_command", "Reset the one login for every port."),
    "presets": ("presets.cli:presets_group", "List, install, remove and validate model presets."),
    "models": ("presets.models_cli:models_group", "Installed model files; add one by URL."),
    "downloader": ("presets.worker:downloader_command", "Run the download worker (a program)."),
    "comfyui": ("services.launcher:comfyui_command", "Run ComfyUI in the foreground (a program)."),
    "healthprobe": ("services.healthprobe:healthprobe_command", "ComfyUI health probe (event listener)."),
    "run": ("services.run_cli:run_command", "Run a workflow through ComfyUI with progress."),
    "doctor": ("services.doctor_cli:doctor_command", "Check driver, CUDA, GPU and SageAttention."),
    "nodes": ("services.nodes_cli:nodes_group", "Custom nodes on the volume: list, install, export."),
    "jupyter": ("services.programs:jupyter_command", "Run JupyterLab on loopback (a program)."),
    "code-server": ("services.programs:code_server_command", "Run code-server on loopback (a program)."),
    "sshd": ("services.programs:sshd_command", "Run sshd with keys from PUBLIC_KEY (a program)."),
    "nginx": ("services.programs:nginx_command", "Run nginx after clearing orphaned workers (a program)."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="comfypod")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """ComfyPod: ComfyUI on a rented GPU, with one admin and one login."""
    ctx.ensure_object(dict)


def get_settings(ctx: click.Context):
    """The Settings for this invocation, loaded once and kept on ``ctx.obj``."""
    from services.settings import load_settings

    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" not in root.obj:
        root.obj["settings"] = load_settings()
    return root.obj["settings"]


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="comfypod", standalone_mode=False)
    except ComfyPodError as err:
        click.echo(f"comfypod: {err}", err=True)
        return err.exit_code
    except click.exceptions.Abort:
        click.echo("comfypod: aborted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as err:
        return err.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
