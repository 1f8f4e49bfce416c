"""`comfypod run WORKFLOW.json [--set node.input=value] [--wait]`: run a workflow through ComfyUI.

Accepts ComfyUI's UI format (converted with the running ComfyUI's /object_info) or the API
format (a top-level ``_meta`` is dropped, as ComfyUI refuses it). ``--set`` changes one input
before the run; the node is named by id, title or class name. With ``--wait`` the terminal shows
a bar for the whole workflow and one for the steps of the node that is running, then the files.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from services import workflow
from services.comfyui_client import ComfyUIClient, Event, PromptRejected, QueuedPrompt
from services.errors import ComfyUIError, WorkflowError
from services.run_progress import RunProgress
from services.settings import Settings


def load_workflow(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkflowError(f"no such workflow file: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise WorkflowError(f"cannot read {path}: {err}") from None
    except ValueError as err:
        raise WorkflowError(f"{path} is not JSON: {err}") from None


def to_prompt(data: Any, client: ComfyUIClient) -> tuple[dict, dict | None, dict | None]:
    """(API prompt, UI workflow or None, object_info if fetched) for any accepted format."""
    if workflow.is_ui_format(data):
        object_info = client.object_info()
        return workflow.to_api(data, object_info), data, object_info
    return workflow.as_api(data, {}), None, None


def find_node(prompt: dict, name: str) -> str:
    """A node named by id, else by its unique title, else by its unique class name."""
    if name in prompt:
        return name
    by_title = [nid for nid, node in prompt.items() if (node.get("_meta") or {}).get("title") == name]
    if len(by_title) == 1:
        return by_title[0]
    by_class = [nid for nid, node in prompt.items() if node.get("class_type") == name]
    if len(by_class) == 1:
        return by_class[0]
    if len(by_title) > 1 or len(by_class) > 1:
        ids = ", ".join(by_title or by_class)
        raise WorkflowError(f"{name!r} names several nodes ({ids}): use the node id")
    raise WorkflowError(f"no node {name!r} in the workflow (use an id, a title or a class name)")


def parse_sets(prompt: dict, sets: list[str]) -> dict[str, str]:
    """``node.input=value`` (or ``seed=42`` for every seed) -> {"<id>.<input>" or kind: value}."""
    values: dict[str, str] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise WorkflowError(f"--set {item!r}: expected node.input=value, for example 3.seed=42")
        node_name, dot, input_name = key.rpartition(".")
        if dot:
            if not node_name or not input_name:
                raise WorkflowError(f"--set {item!r}: expected node.input=value, for example 3.seed=42")
            key = f"{find_node(prompt, node_name)}.{input_name}"
        values[key] = value
    return values


class TerminalProgress:
    """Two tqdm bars on stderr: the whole workflow (percent) and the running node's steps."""

    def __init__(self, progress: RunProgress, stream=None) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.progress = progress
        self.stream = stream or sys.stderr
        # a pod's terminal (docker exec, web shells) may report 0 columns: tqdm would then print nothing
        size = shutil.get_terminal_size((100, 24))
        self.ncols, self.nrows = min(size.columns, 120), max(size.lines, 4)
        self.total = tqdm(total=100, desc="workflow", unit="%", file=self.stream, position=0, leave=True,
                          ncols=self.ncols, nrows=self.nrows,
                          bar_format="{desc:<28} {percentage:3.0f}%|{bar}| {elapsed}")
        self.steps = None
        self.steps_node: str | None = None

    def __call__(self, event: Event) -> None:
        if not self.progress.apply(event):
            return
        self.total.n = min(100, int(self.progress.percent))
        node = self.progress.nodes.get(self.progress.current or "")
        if node is not None:
            self.total.set_description_str(f"#{node.node_id} {node.title}"[:28], refresh=False)
        if event.type == "progress" and node is not None:
            if self.steps_node != node.node_id:
                self._close_steps()
                self.steps_node = node.node_id
                self.steps = self._tqdm(total=int(node.max), desc=f"  steps #{node.node_id}", unit="step",
                                        file=self.stream, position=1, leave=False, ncols=self.ncols,
                                        nrows=self.nrows)
            if self.steps is not None:
                self.steps.n = int(node.value)
                self.steps.refresh()
        self.total.refresh()

    def _close_steps(self) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None

    def close(self) -> None:
        self._close_steps()
        if self.progress.status == "success":
            self.total.n = 100
            self.total.set_description_str("done", refresh=False)
        self.total.refresh()
        self.total.close()


def output_path(settings: Settings, item: dict) -> str:
    base = {"output": settings.output_dir, "input": settings.input_dir}.get(item.get("type", "output"))
    rel = "/".join(p for p in (item.get("subfolder", ""), item["filename"]) if p)
    if base is None:
        return f"({item.get('type')}) {rel}"
    return str(base / rel)


def run_workflow(settings: Settings, path: Path, sets: list[str], wait: bool,
                 client: ComfyUIClient | None = None) -> int:
    client = client or ComfyUIClient(settings.comfyui_url)
    data = load_workflow(path)
    prompt, ui_workflow, object_info = to_prompt(data, client)
    if sets:
        prompt = workflow.apply_parameters(prompt, parse_sets(prompt, sets), object_info or client.object_info())
    extra = {"extra_pnginfo": {"workflow": ui_workflow}} if ui_workflow else None
    try:
        if not wait:
            ticket = client.queue_prompt(prompt, extra_data=extra)
            click.echo(f"queued {path.name} as prompt {ticket.prompt_id} (number {ticket.number})")
            click.echo("(not waiting: add --wait to follow it here, or watch it on the admin's Workflows page)",
                       err=True)
            return 0
        progress = RunProgress.for_prompt("", prompt)
        bars: list[TerminalProgress] = []

        def queued(ticket: QueuedPrompt) -> None:
            progress.prompt_id = ticket.prompt_id
            click.echo(f"queued {path.name} as prompt {ticket.prompt_id}", err=True)
            bars.append(TerminalProgress(progress))

        def on_event(event: Event) -> None:
            if bars:
                bars[0](event)

        try:
            outcome = client.run(prompt, extra_data=extra, on_event=on_event, queued=queued)
        finally:
            if bars:
                bars[0].close()
    except PromptRejected as err:
        if len(err.problems) > 1:
            for line in err.problems:
                click.echo(f"  {line}", err=True)
            raise ComfyUIError(f"ComfyUI refused the workflow: {len(err.problems)} problems (listed above)") from None
        raise
    if outcome.status == "interrupted":
        raise ComfyUIError(f"prompt {outcome.prompt_id} was interrupted")
    if outcome.status == "error":
        raise ComfyUIError(f"prompt {outcome.prompt_id} failed: {progress.error or outcome.error}")
    files = outcome.files()
    click.echo(f"finished prompt {outcome.prompt_id}: {len(files)} file(s)")
    for item in files:
        click.echo("  " + output_path(settings, item))
    return 0


@click.command("run")
@click.argument("workflow_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="NODE.INPUT=VALUE",
              help="Change one input before the run (node by id, title or class), e.g. 3.seed=42.")
@click.option("--wait/--no-wait", default=False, help="Follow the run with progress bars until it ends.")
def run_command(workflow_file: Path, sets: tuple[str, ...], wait: bool) -> None:
    """Run a workflow (UI or API format) through ComfyUI."""
    from services.cli import get_settings

    settings = get_settings(click.get_current_context())
    run_workflow(settings, workflow_file, list(sets), wait)
