"""`comfypod nodes list|install URL[@rev]|remove NAME|restore NAME|export|import FILE|sync|constraints`."""

from __future__ import annotations

import json
import sys

import click

from services import nodes, pyenv
from services.errors import NodeError

RESTART_HINT = "restart ComfyUI to load the change: comfypod ctl restart comfyui"


def _settings():
    from services.cli import get_settings

    return get_settings(click.get_current_context())


@click.group("nodes")
def nodes_group() -> None:
    """Custom nodes on the volume and the packages they add."""


@nodes_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def list_command(as_json: bool) -> None:
    """List custom nodes with their commit, requirements and ComfyUI's import result."""
    items = nodes.list_nodes(_settings())
    if as_json:
        click.echo(json.dumps({"nodes": [n.to_dict() for n in items]}, indent=1))
        return
    if not items:
        click.echo("no custom nodes (install one: comfypod nodes install https://github.com/owner/repo)")
        return
    rows = [("NAME", "FROM", "COMMIT", "REQUIREMENTS", "IMPORT")]
    for n in items:
        name = n.name if n.enabled else f"{n.name} (disabled)"
        rows.append((name, n.origin, (n.commit or "-")[:10], n.requirements, n.imported))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for n in items:
        if n.requirements in ("refused", "failed") and n.message:
            click.echo(f"{n.name}: requirements {n.requirements}: {n.message}", err=True)
        if n.imported == "failed":
            click.echo(f"{n.name}: ComfyUI could not import it{': ' + n.import_error if n.import_error else ''}",
                       err=True)


@nodes_group.command("install")
@click.argument("spec")
@click.option("--name", help="folder name (default: the repository's name)")
def install_command(spec: str, name: str | None) -> None:
    """Clone URL[@rev] into the custom nodes folder and install its requirements."""
    done = nodes.install_node(_settings(), spec, name=name)
    node = done.node
    click.echo(f"installed {node.name} at {node.commit or '?'}")
    if done.requirements is not None:
        click.echo(done.requirements.line())
    click.echo(RESTART_HINT)


@nodes_group.command("remove")
@click.argument("name")
def remove_command(name: str) -> None:
    """Remove a node (an image node is hidden and stays off)."""
    click.echo(nodes.remove_node(_settings(), name))
    click.echo(RESTART_HINT)


@nodes_group.command("restore")
@click.argument("name")
def restore_command(name: str) -> None:
    """Bring back an image node that was removed."""
    click.echo(nodes.restore_node(_settings(), name))
    click.echo(RESTART_HINT)


@nodes_group.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="write to a file, not stdout")
def export_command(output: str | None) -> None:
    """Print a lock file: the nodes, their commits and the packages they added."""
    text = json.dumps(nodes.export_lock(_settings()), indent=1) + "\n"
    if output:
        with open(output, "w") as handle:
            handle.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@nodes_group.command("import")
@click.argument("lock_file", type=click.File("r"))
def import_command(lock_file) -> None:
    """Install the nodes of a lock file (FILE, or - for stdin) that are missing here."""
    try:
        data = json.load(lock_file)
    except ValueError as err:
        raise NodeError(f"{lock_file.name} is not JSON: {err}") from None
    outcomes = nodes.import_lock(_settings(), data)
    for outcome in outcomes:
        click.echo(f"{outcome.name}: {outcome.action}{' - ' + outcome.message if outcome.message else ''}")
    failed = [o.name for o in outcomes if o.action == "failed"]
    if any(o.action == "installed" for o in outcomes):
        click.echo(RESTART_HINT)
    if failed:
        raise NodeError(f"{len(failed)} node(s) could not be installed: {', '.join(failed)}")


@nodes_group.command("sync")
def sync_command() -> None:
    """Run the start-up steps now: link image nodes, then install changed requirements."""
    import logging

    from services.logs import setup_logging

    settings = _settings()
    if not logging.getLogger().handlers:
        setup_logging(settings.log_level, stream=sys.stderr)
    pyenv.prepare_environment(settings)
    results = pyenv.sync_requirements(settings)
    bad = [r.name for r in results if r.status in ("refused", "failed")]
    if bad:
        raise NodeError(f"requirements not installed for: {', '.join(bad)}")


@nodes_group.command("constraints")
def constraints_command() -> None:
    """Print the constraints for this image's own builds (for the image build: APP_DIR/constraints.txt)."""
    from services import constraints

    probe = pyenv.probe_python(_settings())
    click.echo(constraints.render_constraints(probe.installed, None), nl=False)
