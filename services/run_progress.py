"""Progress of one ComfyUI prompt, folded from its websocket events (pure, no I/O).

Shared by ``comfypod run`` (terminal bars) and the admin's live run page (SSE): per node a state
(waiting, cached, running, done, error, interrupted) and step value/max, plus one overall percent.
ComfyUI's ``progress_state`` carries the whole map of nodes touched so far, so a watcher that
connects late catches up at the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.comfyui_client import Event


def nodes_to_run(prompt: dict, outputs: list[str]) -> list[str]:
    """The nodes ComfyUI runs for ``outputs``: each output and everything it links from."""
    wanted: set[str] = set()
    stack = [str(o) for o in outputs]
    while stack:
        node_id = stack.pop()
        if node_id in wanted or node_id not in prompt:
            continue
        wanted.add(node_id)
        for value in (prompt[node_id].get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                stack.append(str(value[0]))
    return [node_id for node_id in prompt if node_id in wanted]


@dataclass
class NodeProgress:
    node_id: str
    class_type: str
    title: str
    state: str = "waiting"  # waiting | cached | running | done | error | interrupted
    value: float = 0
    max: float = 1

    @property
    def fraction(self) -> float:
        if self.state in ("done", "cached"):
            return 1.0
        if self.state == "running" and self.max:
            return max(0.0, min(1.0, float(self.value) / float(self.max)))
        return 0.0

    def to_dict(self) -> dict:
        return {"node_id": self.node_id, "class_type": self.class_type, "title": self.title, "state": self.state,
                "value": self.value, "max": self.max, "percent": round(self.fraction * 100, 1)}


@dataclass
class RunProgress:
    prompt_id: str
    nodes: dict[str, NodeProgress] = field(default_factory=dict)
    status: str = "queued"  # queued | running | success | error | interrupted | cancelled
    current: str | None = None
    queue_position: int | None = None
    error: str | None = None
    outputs: dict = field(default_factory=dict)

    @classmethod
    def for_prompt(cls, prompt_id: str, prompt: dict, run_nodes: list[str] | None = None) -> RunProgress:
        """``run_nodes``: the node ids ComfyUI will run (default: every node of the prompt)."""
        progress = cls(prompt_id)
        for node_id, node in prompt.items():
            if run_nodes is not None and node_id not in run_nodes:
                continue
            if not isinstance(node, dict):
                continue
            class_type = str(node.get("class_type", "?"))
            title = str((node.get("_meta") or {}).get("title") or class_type)
            progress.nodes[str(node_id)] = NodeProgress(str(node_id), class_type, title)
        return progress

    @classmethod
    def from_history(cls, prompt_id: str, entry: dict) -> RunProgress:
        """The final state of a prompt from its /history entry."""
        item = entry.get("prompt") or []
        prompt = item[2] if len(item) > 2 and isinstance(item[2], dict) else {}
        outputs = list(item[4]) if len(item) > 4 else list(prompt)
        progress = cls.for_prompt(prompt_id, prompt, nodes_to_run(prompt, outputs))
        status = entry.get("status") or {}
        events = [Event(name, data) for name, data in status.get("messages", []) if isinstance(data, dict)]
        progress.status = "running"
        for event in events:
            progress.apply(event)
        if progress.status == "running":
            progress.status = "success" if status.get("status_str") == "success" else "error"
        if progress.status == "success":
            for node in progress.nodes.values():
                if node.state != "cached":
                    node.state = "done"
        progress.outputs = entry.get("outputs") or {}
        progress.current = None
        return progress

    @property
    def finished(self) -> bool:
        return self.status in ("success", "error", "interrupted", "cancelled")

    @property
    def percent(self) -> float:
        if self.status == "success":
            return 100.0
        if not self.nodes:
            return 0.0
        return round(100.0 * sum(n.fraction for n in self.nodes.values()) / len(self.nodes), 1)

    def _node(self, node_id: str) -> NodeProgress:
        if node_id not in self.nodes:
            self.nodes[node_id] = NodeProgress(node_id, "?", node_id)
        return self.nodes[node_id]

    def _finish_current(self) -> None:
        if self.current and self.current in self.nodes and self.nodes[self.current].state == "running":
            self.nodes[self.current].state = "done"

    def _mark_executed(self, node_ids) -> None:
        for node_id in node_ids or []:
            node = self._node(str(node_id))
            if node.state not in ("cached", "error", "interrupted"):
                node.state = "done"

    def apply(self, event: Event) -> bool:
        """Fold one event in; returns True when it changed something worth showing."""
        data = event.data
        if data.get("prompt_id") not in (None, self.prompt_id):
            return False
        kind = event.type
        if kind == "execution_start":
            self.status, self.queue_position = "running", 0
        elif kind == "execution_cached":
            for node_id in data.get("nodes", []):
                self._node(str(node_id)).state = "cached"
        elif kind == "executing":
            node_id = data.get("node")
            if data.get("prompt_id") is None and node_id is None:
                return False
            self._finish_current()
            if node_id is None:
                if self.status in ("queued", "running"):
                    self.status = "success"
                self.current = None
            else:
                self.status = "running" if self.status == "queued" else self.status
                self.current = str(node_id)
                node = self._node(self.current)
                node.state, node.value, node.max = "running", 0, 1
        elif kind == "progress":
            node = self._node(str(data.get("node")))
            node.state, node.value, node.max = "running", data.get("value", 0), data.get("max", 1) or 1
            self.current = node.node_id
        elif kind == "progress_state":
            for node_id, entry in (data.get("nodes") or {}).items():
                node = self._node(str(node_id))
                if node.state == "cached":
                    continue
                node.value, node.max = entry.get("value", 0), entry.get("max", 1) or 1
                node.state = "done" if entry.get("state") == "finished" else "running"
                if node.state == "running":
                    self.current = node.node_id
            if self.status == "queued":
                self.status = "running"
        elif kind == "executed":
            node = self._node(str(data.get("node")))
            if node.state != "cached":
                node.state = "done"
            self.outputs[node.node_id] = data.get("output") or {}
        elif kind == "execution_success":
            self._finish_current()
            self.status = "success"
        elif kind == "execution_error":
            self.status = "error"
            self._mark_executed(data.get("executed"))
            node = self._node(str(data.get("node_id")))
            node.state = "error"
            self.error = f"{data.get('node_type', '?')} (node {data.get('node_id')}): " + \
                f"{data.get('exception_type', 'Error')}: {str(data.get('exception_message', '')).strip()}"
        elif kind == "execution_interrupted":
            self.status = "interrupted"
            self._mark_executed(data.get("executed"))
            self._node(str(data.get("node_id"))).state = "interrupted"
            self.error = "interrupted"
        else:
            return False
        return True

    def to_dict(self) -> dict:
        return {
            "prompt_id": self.prompt_id,
            "status": self.status,
            "percent": self.percent,
            "current": self.current,
            "queue_position": self.queue_position,
            "error": self.error,
            "nodes": [n.to_dict() for n in self.nodes.values()],
            "outputs": self.outputs,
        }
