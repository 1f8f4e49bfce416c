"""UI format to API format, the way ComfyUI's frontend (1.27) builds the prompt it POSTs.

The frontend loads the graph (node inputs and widgets come from /object_info), lets frontend-only
PrimitiveNodes write their values into the widgets they feed, then emits every node that is not
muted, bypassed or frontend-only: its widget values first, then each input's link followed
through reroutes, bypassed nodes and subgraph boundaries to the node that really produces it.
docs/workflows.md lists the rules.
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.errors import WorkflowError
from services.node_packs import NodePack, likely_pack
from services.workflow.graph import (
    SUBGRAPH_INPUT_ID,
    SUBGRAPH_OUTPUT_ID,
    Graph,
    Link,
    Node,
    Slot,
    Subgraph,
    parse_graph,
    parse_subgraphs,
)
from services.workflow.nodetypes import UNSET, NodeType, NodeTypes, Widget

MUTED = 2  # litegraph mode NEVER
BYPASSED = 4  # litegraph mode BYPASS
# Frontend-only node types (never sent). Any of them passes input N through to output N.
FRONTEND_ONLY_TYPES = frozenset(
    {
        "Reroute",
        "PrimitiveNode",
        "Note",
        "MarkdownNote",
        # frontend-only nodes of common custom packs
        "SetNode",
        "GetNode",
        "Reroute (rgthree)",
        "Label (rgthree)",
        "Bookmark (rgthree)",
        "Fast Groups Muter (rgthree)",
        "Fast Groups Bypasser (rgthree)",
        "Fast Muter (rgthree)",
        "Fast Bypasser (rgthree)",
    }
)
# Node types whose filename_prefix gets %date:…% and %Node.widget% replaced before sending.
SAVE_TYPES = frozenset(
    {
        "SaveImage",
        "SaveAnimatedWEBP",
        "SaveWEBM",
        "SaveAudio",
        "SaveGLB",
        "SaveAnimatedPNG",
        "CLIPSave",
        "VAESave",
        "ModelSave",
        "LoraSave",
        "SaveLatent",
    }
)


def is_ui_format(data: Any) -> bool:
    """True for a UI ("litegraph") workflow: an object with a ``nodes`` list."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def is_api_format(data: Any) -> bool:
    """True for an API-format prompt: node ids mapping to objects with a ``class_type``.

    Top-level keys starting with ``_`` (such as ``_meta``) are metadata and do not count.
    """
    if not isinstance(data, dict) or is_ui_format(data):
        return False
    nodes = [value for key, value in data.items() if not str(key).startswith("_")]
    return bool(nodes) and all(isinstance(node, dict) and isinstance(node.get("class_type"), str) for node in nodes)


# ---------------------------------------------------------------------------------------------
# Unknown node types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingNodeType:
    """A node type ComfyUI does not have, the nodes using it, and the pack that likely has it."""

    class_type: str
    node_ids: tuple[str, ...]
    pack: NodePack | None

    def describe(self) -> str:
        where = ("node " if len(self.node_ids) == 1 else "nodes ") + ", ".join(self.node_ids)
        hint = f"install {self.pack.name} ({self.pack.url})" if self.pack else "no known custom node pack"
        return f"{self.class_type} ({where}): {hint}"


class MissingNodesError(WorkflowError):
    """The workflow uses node types ComfyUI does not have; ``missing`` lists them."""

    def __init__(self, missing: list[MissingNodeType]) -> None:
        self.missing = missing
        super().__init__("unknown node types: " + "; ".join(item.describe() for item in missing))


def _group_missing(found: Iterable[tuple[str, str]]) -> list[MissingNodeType]:
    by_type: dict[str, list[str]] = {}
    for node_id, class_type in found:
        by_type.setdefault(class_type, []).append(node_id)
    return [MissingNodeType(name, tuple(ids), likely_pack(name)) for name, ids in by_type.items()]


def check_object_info(object_info: Any) -> Mapping[str, Any]:
    if not isinstance(object_info, Mapping):
        raise WorkflowError("object_info must be the JSON object of ComfyUI's /object_info")
    return object_info


def missing_node_types(data: Any, object_info: Mapping[str, Any]) -> list[MissingNodeType]:
    """Node types a workflow (UI or API format) uses that ``object_info`` lacks.

    Muted and bypassed nodes are not counted: they are never sent.
    """
    info = check_object_info(object_info)
    if is_ui_format(data):
        return _group_missing(_Workflow(data, NodeTypes(info)).unknown_types())
    if not isinstance(data, dict):
        raise WorkflowError("not a ComfyUI workflow: expected a JSON object")
    found = [
        (str(key), node["class_type"])
        for key, node in data.items()
        if isinstance(node, dict) and isinstance(node.get("class_type"), str) and node["class_type"] not in info
    ]
    return _group_missing(found)


# ---------------------------------------------------------------------------------------------
# JavaScript value rules
# ---------------------------------------------------------------------------------------------


def js_key_order(keys: Iterable[str]) -> list[str]:
    """JavaScript's own-key order: array-index keys ascending, then the others as inserted."""
    keys = list(keys)
    indexes = [key for key in keys if re.fullmatch(r"0|[1-9][0-9]{0,9}", key) and int(key) < 2**32 - 1]
    chosen = set(indexes)
    return sorted(indexes, key=int) + [key for key in keys if key not in chosen]


def js_number(value: Any) -> Any:
    """A number as JavaScript writes it: 8.0 is 8; NaN and infinities are null."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) < 1e21:
            return int(value)
    return value


def js_string(value: Any) -> str:
    """``value + ""`` in JavaScript, for JSON values."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    value = js_number(value)
    return "null" if value is None else str(value)


def _sendable(value: Any) -> Any:
    """A widget value as the frontend sends it: arrays are wrapped so they are not read as links."""
    if isinstance(value, list):
        return {"__value__": value}
    return js_number(value)


def _textarea(value: Any) -> str:
    """What a textarea gives back for a value set on it: text, with CRLF and CR line ends as LF."""
    text = "" if value is None else value if isinstance(value, str) else js_string(value)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _annotated(value: Any, folder: str) -> str:
    """A file name as an upload combo reports it: " [output]" added for files outside input/."""
    if isinstance(value, dict):
        name, subfolder = value.get("filename"), value.get("subfolder")
        kind = value.get("type")
        path = f"{subfolder}/{name or ''}" if subfolder else js_string(name or "")
        return path + (_annotation(js_string(kind), folder) if kind else "")
    text = value if isinstance(value, str) else js_string(value)
    return text + _annotation(text, folder)


def _annotation(path: str, folder: str) -> str:
    if folder == "input" or re.search(r"\[(input|output|temp)\]", path, re.IGNORECASE):
        return ""
    return f" [{folder}]"


def _upload_value(value: Any, widget: Widget) -> Any:
    """The value of a combo that has an upload button (it is read through the upload widget)."""
    folder = widget.upload_folder or "input"
    if value in (None, "", 0, False) or value is UNSET:
        default = widget.default
        return "undefined" if default is UNSET else js_string(default)
    if isinstance(value, list):
        if widget.allow_batch:
            return [_annotated(item, folder) for item in value]
        return _annotated(value[0], folder) if value else _upload_value(None, widget)
    return _annotated(value, folder)


def format_date(pattern: str, now: datetime) -> str:
    """The frontend's %date:FORMAT% tokens: yyyy, yy, M/MM, d/dd, h/hh, m/mm, s/ss."""

    def part(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "yy":
            return str(now.year)[2:]
        if token == "yyyy":
            return str(now.year)
        number = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}.get(token[0])
        return token if number is None else str(number).zfill(len(token))

    return re.sub(r"dd?|MM?|hh?|mm?|ss?|yyy?y?", part, pattern)


_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//.*")


def dynamic_prompt(text: str, rng: random.Random | None = None) -> str:
    """The frontend's dynamic prompts: comments removed, each ``{a|b|c}`` replaced by one option.

    ``\\{``, ``\\|`` and ``\\}`` stand for the characters themselves; other escapes stay as written.
    """
    chooser = rng or random.Random()
    text = _COMMENTS.sub("", text)
    out: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        position += 1
        if char == "\\":
            out.append(text[position - 1 : position + 1])
            position += 1
        elif char == "{":
            options: list[str] = []
            current: list[str] = []
            depth = 0
            while position < len(text):
                char = text[position]
                position += 1
                if char == "\\":
                    current.append(text[position - 1 : position + 1])
                    position += 1
                    continue
                if char == "{":
                    depth += 1
                elif char == "}":
                    if not depth:
                        break
                    depth -= 1
                elif char == "|" and not depth:
                    options.append("".join(current))
                    current = []
                    continue
                current.append(char)
            options.append("".join(current))
            out.append(dynamic_prompt(options[chooser.randrange(len(options))], chooser))
        else:
            out.append(char)
    return re.sub(r"\\([{}|])", r"\1", "".join(out))


# ---------------------------------------------------------------------------------------------
# The conversion
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """Where a node sits: its graph and the chain of subgraph instances above it."""

    graph: Graph
    path: tuple[str, ...] = ()
    instance: Node | None = None
    parent: _Context | None = None
    subgraph_ids: tuple[str, ...] = ()

    def exec_id(self, node: Node) -> str:
        return ":".join((*self.path, node.id))

    def enter(self, instance: Node, subgraph: Subgraph) -> _Context:
        if subgraph.id in self.subgraph_ids:
            raise WorkflowError(f"subgraph {subgraph.name or subgraph.id} contains an instance of itself")
        return _Context(subgraph.graph, (*self.path, instance.id), instance, self, (*self.subgraph_ids, subgraph.id))


@dataclass(frozen=True)
class _Origin:
    node: str
    slot: int


@dataclass(frozen=True)
class _Value:
    value: Any


def _compatible(a: str, b: str) -> bool:
    """litegraph's isValidConnection: "*" matches anything; comma lists match on any member."""
    if a == "*" or b == "*" or a == b:
        return True
    left, right = a.lower(), b.lower()
    if "," not in left and "," not in right:
        return left == right
    return any(_compatible(x or "*", y or "*") for x in left.split(",") for y in right.split(","))


class _Workflow:
    """One UI workflow loaded the way the frontend loads it."""

    def __init__(self, data: Mapping[str, Any], types: NodeTypes) -> None:
        self.types = types
        self.root = parse_graph(data, "workflow")
        self.subgraphs = parse_subgraphs(data)
        self._inputs: dict[int, list[Slot]] = {}
        graphs = [self.root, *(sub.graph for sub in self.subgraphs.values())]
        for graph in graphs:
            for node in graph.nodes:
                self._load_values(node, graph is self.root)
        for graph in graphs:
            self._apply_primitives(graph)

    # -- node kinds ---------------------------------------------------------------------------

    def node_type(self, node: Node) -> NodeType | None:
        return self.types.get(node.type)

    def is_instance(self, node: Node) -> bool:
        return node.type in self.subgraphs and node.type not in self.types

    def is_frontend_only(self, node: Node) -> bool:
        return node.type in FRONTEND_ONLY_TYPES and node.type not in self.types

    def widgets(self, node: Node) -> tuple[Widget, ...]:
        kind = self.node_type(node)
        return kind.widgets if kind else ()

    def unknown_types(self) -> list[tuple[str, str]]:
        """(execution id, type) of each node that would be sent but whose type ComfyUI lacks."""
        found: list[tuple[str, str]] = []

        def visit(ctx: _Context) -> None:
            for node in ctx.graph.nodes:
                if self.is_instance(node):
                    visit(ctx.enter(node, self.subgraphs[node.type]))
                elif node.type not in self.types and not self.is_frontend_only(node):
                    if node.mode not in (MUTED, BYPASSED):
                        found.append((ctx.exec_id(node), node.type))

        visit(_Context(self.root))
        return found

    # -- what loading a node does -------------------------------------------------------------

    def inputs(self, node: Node) -> list[Slot]:
        """The node's input slots after loading, in the frontend's order.

        A known node type gets its sockets from /object_info (inputs, then widget inputs), with
        the links of the saved slots of the same name, then any saved slot it does not define.
        A subgraph instance gets one slot per subgraph input, matched to saved slots by name.
        """
        key = id(node)
        if key in self._inputs:
            return self._inputs[key]
        kind = self.node_type(node)
        if kind is not None:
            saved = {slot.name: slot for slot in node.inputs}
            slots = [
                Slot(
                    socket.name,
                    socket.type,
                    saved[socket.name].link if socket.name in saved else None,
                    socket.widget
                    if socket.widget is not None or socket.name not in saved
                    else saved[socket.name].widget,
                )
                for socket in kind.sockets
            ]
            defined = {socket.name for socket in kind.sockets}
            slots += [slot for slot in node.inputs if slot.name not in defined]
        elif self.is_instance(node):
            saved = {slot.name: slot for slot in node.inputs}
            items = self.subgraphs[node.type].inputs
            slots = [
                Slot(item.name, item.type, saved[item.name].link if item.name in saved else None) for item in items
            ]
            defined = {item.name for item in items}
            slots += [slot for slot in node.inputs if slot.name not in defined]
        else:
            slots = node.inputs
        self._inputs[key] = slots
        return slots

    def output_type(self, node: Node, slot: int) -> str | None:
        kind = self.node_type(node)
        if kind is not None and 0 <= slot < len(kind.outputs):
            return kind.outputs[slot]
        if 0 <= slot < len(node.outputs):
            return node.outputs[slot].type
        if self.is_instance(node) and 0 <= slot < len(self.subgraphs[node.type].outputs):
            return self.subgraphs[node.type].outputs[slot].type
        return None

    def _load_values(self, node: Node, top_level: bool) -> None:
        """Widget values: the defaults, overwritten in order by the saved ``widgets_values``."""
        kind = self.node_type(node)
        if kind is None:
            return
        values = [widget.default for widget in kind.widgets]
        stored = [index for index, widget in enumerate(kind.widgets) if widget.stored]
        saved = node.widgets_values
        if isinstance(saved, list):
            for position, value in enumerate(kind.migrate_values(saved)):
                if position < len(stored):
                    values[stored[position]] = value
        elif isinstance(saved, dict):
            for index in stored:
                if kind.widgets[index].name in saved:
                    values[index] = saved[kind.widgets[index].name]
        node.values = values
        if top_level and node.type in ("KSampler", "KSamplerAdvanced"):
            for index, widget in enumerate(kind.widgets):
                value = values[index]
                if widget.name == "sampler_name" and isinstance(value, str) and value.startswith("sample_"):
                    values[index] = value[len("sample_") :]

    def widget_value(self, node: Node, name: str) -> Any:
        for widget, value in zip(self.widgets(node), node.values, strict=False):
            if widget.name == name:
                return value
        return UNSET

    def _set_widget(self, node: Node, name: str, value: Any) -> None:
        for index, widget in enumerate(self.widgets(node)):
            if widget.name == name and index < len(node.values):
                node.values[index] = value
                return

    def _apply_primitives(self, graph: Graph) -> None:
        """A frontend PrimitiveNode writes its value into each widget its output is linked to."""
        for node in graph.nodes:
            if node.type != "PrimitiveNode" or not node.outputs or not node.outputs[0].links:
                continue
            if not isinstance(node.widgets_values, list) or not node.widgets_values:
                continue
            value = node.widgets_values[0]
            if value and isinstance(value, str) and node.properties.get("Run widget replace on values"):
                value = self.replace_text(value, datetime.now())
            for link_id in node.outputs[0].links:
                link = graph.links.get(link_id)
                target = graph.by_id.get(link.target) if link else None
                if link is None or target is None:
                    continue
                slots = self.inputs(target)
                slot = next((s for s in slots if s.link == link.id), None)
                if slot is None and 0 <= link.target_slot < len(slots):
                    slot = slots[link.target_slot]
                if slot is not None and slot.widget:
                    self._set_widget(target, slot.widget, value)

    # -- following links ----------------------------------------------------------------------

    def resolve_input(self, ctx: _Context, node: Node, slot: int, wanted: str | None, seen: set) -> Any:
        """Where input ``slot`` of ``node`` really comes from: an _Origin, a _Value or None."""
        key = (ctx.path, node.id, "in", slot)
        if key in seen:
            raise WorkflowError(f"links form a loop through node {ctx.exec_id(node)}")
        seen.add(key)
        inputs = self.inputs(node)
        if not 0 <= slot < len(inputs) or inputs[slot].link is None:
            return None
        link = ctx.graph.links.get(inputs[slot].link or "")
        if link is None:
            return None
        if link.origin == SUBGRAPH_INPUT_ID:
            return self._from_subgraph_input(ctx, link.origin_slot, seen)
        origin = ctx.graph.by_id.get(link.origin)
        if origin is None:
            return None
        return self.resolve_output(ctx, origin, link.origin_slot, wanted or inputs[slot].type, seen)

    def _from_subgraph_input(self, ctx: _Context, index: int, seen: set) -> Any:
        instance, parent = ctx.instance, ctx.parent
        if instance is None or parent is None:
            return None
        slots = self.inputs(instance)
        if not 0 <= index < len(slots):
            return None
        if slots[index].link is None:
            value = self.promoted_value(instance, index)
            return None if value is UNSET else _Value(value)
        return self.resolve_input(parent, instance, index, None, seen)

    def promoted_value(self, instance: Node, index: int) -> Any:
        """The value of the widget a subgraph instance shows for its input ``index``.

        It copies the first inner widget that subgraph input feeds; the instance's own saved
        ``widgets_values`` (one per such widget, in input order) overwrite it.
        """
        subgraph = self.subgraphs[instance.type]
        promoted = [self._promoted_widget(subgraph, slot.name) for slot in self.inputs(instance)]
        if not 0 <= index < len(promoted) or promoted[index] is UNSET:
            return UNSET
        position = sum(1 for value in promoted[:index] if value is not UNSET)
        saved = instance.widgets_values
        if isinstance(saved, list) and position < len(saved):
            return saved[position]
        return promoted[index]

    def _promoted_widget(self, subgraph: Subgraph, name: str, depth: int = 0) -> Any:
        item = next((entry for entry in subgraph.inputs if entry.name == name), None)
        if item is None or depth > 32:
            return UNSET
        position = subgraph.inputs.index(item)
        link_ids = item.link_ids or [
            link.id
            for link in subgraph.graph.links.values()
            if link.origin == SUBGRAPH_INPUT_ID and link.origin_slot == position
        ]
        for link_id in link_ids:
            link = subgraph.graph.links.get(link_id)
            target = subgraph.graph.by_id.get(link.target) if link else None
            if link is None or target is None:
                continue
            slots = self.inputs(target)
            slot = next((s for s in slots if s.link == link.id), None)
            if slot is None and 0 <= link.target_slot < len(slots):
                slot = slots[link.target_slot]
            if slot is None:
                continue
            if self.is_instance(target):
                value = self._promoted_widget(self.subgraphs[target.type], slot.name, depth + 1)
            elif slot.widget:
                value = self.widget_value(target, slot.widget)
            else:
                continue
            if value is not UNSET:
                return value
        return UNSET

    def resolve_output(self, ctx: _Context, node: Node, slot: int, wanted: str, seen: set) -> Any:
        key = (ctx.path, node.id, "out", slot)
        if key in seen:
            raise WorkflowError(f"links form a loop through node {ctx.exec_id(node)}")
        seen.add(key)
        if node.mode == BYPASSED:
            index = self._bypass_input(node, slot, wanted)
            return None if index is None else self.resolve_input(ctx, node, index, None, seen)
        if self.is_instance(node):
            return self._from_subgraph_output(ctx, node, slot, wanted, seen)
        if self.is_frontend_only(node):
            if slot < len(self.inputs(node)):
                return self.resolve_input(ctx, node, slot, wanted, seen)
            if node.type == "GetNode":  # KJNodes: reads the SetNode with the same name
                setter = self._setter_for(ctx.graph, node)
                return None if setter is None else self.resolve_input(ctx, setter, 0, wanted, seen)
            return None
        return _Origin(ctx.exec_id(node), slot)

    def _from_subgraph_output(self, ctx: _Context, node: Node, slot: int, wanted: str, seen: set) -> Any:
        subgraph = self.subgraphs[node.type]
        if not 0 <= slot < len(subgraph.outputs):
            return None
        link = self._output_link(subgraph, slot)
        if link is None:
            return None
        if link.origin == SUBGRAPH_INPUT_ID:  # an input passed straight through
            return self.resolve_input(ctx, node, link.origin_slot, None, seen)
        inner = subgraph.graph.by_id.get(link.origin)
        if inner is None:
            return None
        return self.resolve_output(ctx.enter(node, subgraph), inner, link.origin_slot, wanted, seen)

    @staticmethod
    def _output_link(subgraph: Subgraph, slot: int) -> Link | None:
        for link_id in subgraph.outputs[slot].link_ids:
            link = subgraph.graph.links.get(link_id)
            if link is not None:
                return link
        for link in subgraph.graph.links.values():
            if link.target == SUBGRAPH_OUTPUT_ID and link.target_slot == slot:
                return link
        return None

    def _bypass_input(self, node: Node, slot: int, wanted: str) -> int | None:
        """The input a bypassed node hands to a consumer of its output ``slot``.

        The same index if its type fits both the output and the consumer; else the first input of
        exactly the consumer's type; else the first input that fits both. "*" takes the same index.
        """
        inputs = self.inputs(node)
        if wanted == "*":
            index = slot if len(inputs) > slot else 0
            return index if index < len(inputs) else None
        output = self.output_type(node, slot) or "*"
        if (
            0 <= slot < len(inputs)
            and _compatible(inputs[slot].type, output)
            and _compatible(inputs[slot].type, wanted)
        ):
            return slot
        for index, item in enumerate(inputs):
            if item.type == wanted:
                return index
        for index, item in enumerate(inputs):
            if _compatible(item.type, output) and _compatible(item.type, wanted):
                return index
        return None

    @staticmethod
    def _setter_for(graph: Graph, getter: Node) -> Node | None:
        values = getter.widgets_values
        name = values[0] if isinstance(values, list) and values else None
        for node in graph.nodes:
            if node.type == "SetNode" and isinstance(node.widgets_values, list) and node.widgets_values[:1] == [name]:
                return node
        return None

    # -- order --------------------------------------------------------------------------------

    def execution_order(self) -> list[Node]:
        """litegraph's computeExecutionOrder of the top-level graph (Kahn's algorithm)."""
        graph = self.root
        pending: dict[str, Node] = {}
        remaining: dict[str, int] = {}
        ready: list[Node] = []
        for node in graph.nodes:
            pending[node.id] = node
            count = sum(1 for slot in self.inputs(node) if slot.link is not None)
            if count == 0:
                ready.append(node)
            else:
                remaining[node.id] = count
        order: list[Node] = []
        visited: set[str] = set()
        while ready:
            node = ready.pop(0)
            order.append(node)
            pending.pop(node.id, None)
            for output in node.outputs:
                for link_id in output.links:
                    link = graph.links.get(link_id)
                    if link is None or link.id in visited:
                        continue
                    visited.add(link.id)
                    target = graph.by_id.get(link.target)
                    if target is None or target.id not in remaining:
                        continue
                    remaining[target.id] -= 1
                    if remaining[target.id] == 0:
                        ready.append(target)
        return order + [pending[key] for key in js_key_order(pending)]

    def executable(self) -> list[tuple[_Context, Node]]:
        """Every node with its context in the order the frontend walks them (instances expanded)."""
        result: list[tuple[_Context, Node]] = []

        def add(ctx: _Context, node: Node) -> None:
            result.append((ctx, node))
            if self.is_instance(node):
                inner = ctx.enter(node, self.subgraphs[node.type])
                for child in inner.graph.nodes:
                    add(inner, child)

        root = _Context(self.root)
        for node in self.execution_order():
            add(root, node)
        return result

    # -- text replacement ---------------------------------------------------------------------

    def _all_nodes(self, graph: Graph, depth: int = 0) -> list[Node]:
        nodes: list[Node] = []
        for node in graph.nodes:
            if self.is_instance(node) and depth < 32:
                nodes += self._all_nodes(self.subgraphs[node.type].graph, depth + 1)
            nodes.append(node)
        return nodes

    def replace_text(self, text: str, now: datetime) -> str:
        """%date:FORMAT% and %Node.widget% (node found by "Node name for S&R", then by title)."""

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            parts = token.split(".")
            if len(parts) != 2:
                return format_date(parts[0][5:], now) if parts[0].startswith("date:") else match.group(0)
            nodes = self._all_nodes(self.root)
            named = [n for n in nodes if n.properties.get("Node name for S&R") == parts[0]]
            named = named or [n for n in nodes if (n.title or self._default_title(n)) == parts[0]]
            value = self.widget_value(named[0], parts[1]) if named else UNSET
            if value is UNSET:
                return match.group(0)
            text = "" if value is None else js_string(value)
            return re.sub(r'[/?<>\\:*|"\x00-\x1f\x7f]', "_", text)

        return re.sub(r"%([^%]+)%", replace, text)

    def _default_title(self, node: Node) -> str:
        kind = self.node_type(node)
        if kind is not None:
            return kind.display_name
        if self.is_instance(node):
            return self.subgraphs[node.type].name
        return node.type

    # -- the prompt ---------------------------------------------------------------------------

    def convert(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        missing = self.unknown_types()
        for node_id, class_type in missing:
            if class_type.startswith(("workflow>", "workflow/")):
                raise WorkflowError(
                    f"node {node_id} is a legacy group node ({class_type}): open the workflow in ComfyUI, "
                    "convert the group node to a subgraph and save it again"
                )
        if missing:
            raise MissingNodesError(_group_missing(missing))
        output: dict[str, dict[str, Any]] = {}
        for ctx, node in self.executable():
            if node.mode in (MUTED, BYPASSED) or node.type not in self.types:
                continue
            inputs: dict[str, Any] = {}
            for widget, value in zip(self.widgets(node), node.values, strict=False):
                if widget.upload_folder is not None:
                    value = _upload_value(value, widget)
                if not widget.send or value is UNSET:
                    continue
                if widget.multiline:
                    value = _textarea(value)
                if widget.dynamic_prompts and isinstance(value, str):
                    value = dynamic_prompt(value, rng)
                if widget.name == "filename_prefix" and node.type in SAVE_TYPES and isinstance(value, str):
                    value = self.replace_text(value, now)
                inputs[widget.name] = _sendable(value)
            for index, slot in enumerate(self.inputs(node)):
                source = self.resolve_input(ctx, node, index, None, set())
                if isinstance(source, _Origin):
                    inputs[slot.name] = [source.node, source.slot]
                elif isinstance(source, _Value) and source.value is not UNSET:
                    inputs[slot.name] = _sendable(source.value)
            title = node.title if node.title is not None else self._default_title(node)
            output[ctx.exec_id(node)] = {"inputs": inputs, "class_type": node.type, "_meta": {"title": title}}
        for entry in output.values():
            for name, value in list(entry["inputs"].items()):
                if isinstance(value, list) and len(value) == 2 and value[0] not in output:
                    del entry["inputs"][name]
        return {key: output[key] for key in js_key_order(output)}


def to_api(
    workflow: Mapping[str, Any],
    object_info: Mapping[str, Any],
    *,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Convert a UI-format workflow to the API-format prompt ComfyUI's frontend would POST.

    Raises WorkflowError for a broken workflow, and MissingNodesError (a WorkflowError) naming
    the node types ComfyUI lacks with the custom node packs that likely provide them. ``rng``
    picks dynamic-prompt options; ``now`` fills %date:…% in file name prefixes.
    """
    if is_api_format(workflow):
        raise WorkflowError("this workflow is already in API format")
    if not is_ui_format(workflow):
        raise WorkflowError("not a UI-format workflow: it has no list of nodes")
    types = NodeTypes(check_object_info(object_info))
    try:
        return _Workflow(workflow, types).convert(rng or random.Random(), now or datetime.now())
    except RecursionError:
        raise WorkflowError("the workflow nests links or subgraphs too deeply to convert") from None


def strip_meta(api: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an API prompt without the top-level metadata keys ComfyUI rejects.

    ComfyUI answers 400 "a node is missing the class_type property" (``Node ID '#_meta'``) for a
    top-level ``_meta``; it ignores each node's own ``_meta`` (the title), which stays.
    """
    if not isinstance(api, Mapping):
        raise WorkflowError("an API-format workflow must be a JSON object of nodes")
    return {
        str(key): copy.deepcopy(value)
        for key, value in api.items()
        if not (str(key).startswith("_") and not (isinstance(value, dict) and "class_type" in value))
    }


def as_api(data: Any, object_info: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """Any workflow file as a prompt ready to POST: UI format converted, API format cleaned.

    Also accepts ``{"prompt": …}`` (a /prompt body) and ``{"workflow": …}`` wrappers.
    """
    if is_ui_format(data):
        return to_api(data, object_info, **options)
    if is_api_format(data):
        return strip_meta(data)
    if isinstance(data, dict):
        for key in ("prompt", "workflow"):
            if is_ui_format(data.get(key)) or is_api_format(data.get(key)):
                return as_api(data[key], object_info, **options)
    raise WorkflowError("not a ComfyUI workflow: expected the UI format (nodes and links) or the API format")
