"""The UI ("litegraph") workflow format read into plain records: nodes, slots, links, subgraphs.

Only shape is checked here; anything that is not the expected JSON shape raises WorkflowError
naming where it is. Ids become the strings the API format uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.errors import WorkflowError

SUBGRAPH_INPUT_ID = "-10"
SUBGRAPH_OUTPUT_ID = "-20"
# Renames the frontend applies to node types when it loads a workflow.
TYPE_RENAMES = {
    "T2IAdapterLoader": "ControlNetLoader",
    "ConditioningAverage ": "ConditioningAverage",
    "SDV_img2vid_Conditioning": "SVD_img2vid_Conditioning",
}


@dataclass
class Slot:
    """An input slot: its name, type, the id of the link into it, and the widget it stands for."""

    name: str
    type: str
    link: str | None = None
    widget: str | None = None


@dataclass
class Output:
    name: str
    type: str
    links: list[str]


@dataclass
class Node:
    id: str
    type: str
    mode: int
    title: str | None
    inputs: list[Slot]
    outputs: list[Output]
    widgets_values: list[Any] | dict[str, Any] | None
    properties: dict[str, Any]
    # filled when the workflow is prepared for conversion
    values: list[Any] = field(default_factory=list)


@dataclass
class Link:
    id: str
    origin: str
    origin_slot: int
    target: str
    target_slot: int
    type: str


@dataclass
class Graph:
    nodes: list[Node]
    by_id: dict[str, Node]
    links: dict[str, Link]


@dataclass
class SubgraphSlot:
    name: str
    type: str
    link_ids: list[str]


@dataclass
class Subgraph:
    id: str
    name: str
    graph: Graph
    inputs: list[SubgraphSlot]
    outputs: list[SubgraphSlot]


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def node_id(value: Any, what: str) -> str:
    """A node or link id as the API writes it: ints (and whole floats) become strings."""
    if isinstance(value, bool):
        raise WorkflowError(f"{what} is not an id: {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value:
        return value
    raise WorkflowError(f"{what} is not an id: {short(value)}")


def slot_index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise WorkflowError(f"{what} is not a slot number: {short(value)}")
    return int(value)


def type_name(value: Any) -> str:
    """A slot type; empty, 0 and missing mean "*" (anything), as in litegraph."""
    if value in (None, "", 0) or isinstance(value, bool):
        return "*"
    return value if isinstance(value, str) else str(value)


def _link(raw: Any, where: str) -> Link | None:
    if raw is None:
        return None
    if isinstance(raw, list | tuple):
        if len(raw) < 5:
            raise WorkflowError(f"{where}: a link has {len(raw)} fields, expected 6")
        lid, origin, oslot, target, tslot = raw[:5]
        ltype = raw[5] if len(raw) > 5 else None
    elif isinstance(raw, dict):
        lid, origin, oslot = raw.get("id"), raw.get("origin_id"), raw.get("origin_slot")
        target, tslot, ltype = raw.get("target_id"), raw.get("target_slot"), raw.get("type")
    else:
        raise WorkflowError(f"{where}: a link is {short(raw)}, expected a list or an object")
    link_id = node_id(lid, f"{where}: link id")
    return Link(
        id=link_id,
        origin=node_id(origin, f"{where}: link {link_id} origin"),
        origin_slot=slot_index(oslot, f"{where}: link {link_id} origin slot"),
        target=node_id(target, f"{where}: link {link_id} target"),
        target_slot=slot_index(tslot, f"{where}: link {link_id} target slot"),
        type=type_name(ltype),
    )


def _list(raw: Any, where: str, what: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise WorkflowError(f"{where}: {what} must be a list")
    return raw


def _inputs(raw: Any, where: str) -> list[Slot]:
    slots = []
    for item in _list(raw, where, "inputs"):
        if not isinstance(item, dict):
            raise WorkflowError(f"{where}: an input slot is {short(item)}, expected an object")
        name, link, widget = item.get("name"), item.get("link"), item.get("widget")
        widget_name = widget.get("name") if isinstance(widget, dict) else None
        slots.append(
            Slot(
                name=name if isinstance(name, str) else "",
                type=type_name(item.get("type")),
                link=None if link is None else node_id(link, f"{where}: input link"),
                widget=widget_name if isinstance(widget_name, str) else None,
            )
        )
    return slots


def _outputs(raw: Any, where: str) -> list[Output]:
    outputs = []
    for item in _list(raw, where, "outputs"):
        if not isinstance(item, dict):
            raise WorkflowError(f"{where}: an output slot is {short(item)}, expected an object")
        name = item.get("name")
        links = _list(item.get("links"), where, "output links")
        outputs.append(
            Output(
                name=name if isinstance(name, str) else "",
                type=type_name(item.get("type")),
                links=[node_id(link, f"{where}: output link") for link in links if link is not None],
            )
        )
    return outputs


def _node(raw: Any, where: str) -> Node:
    if not isinstance(raw, dict):
        raise WorkflowError(f"{where}: a node is {short(raw)}, expected an object")
    nid = node_id(raw.get("id"), f"{where}: node id")
    here = f"{where}: node {nid}"
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise WorkflowError(f"{here} has no type")
    mode = raw.get("mode")
    if mode is None:
        mode = 0
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise WorkflowError(f"{here}: mode is {short(mode)}, expected a number")
    title, values, properties = raw.get("title"), raw.get("widgets_values"), raw.get("properties")
    return Node(
        id=nid,
        type=TYPE_RENAMES.get(kind, kind),
        mode=mode,
        title=title if isinstance(title, str) and title else None,
        inputs=_inputs(raw.get("inputs"), here),
        outputs=_outputs(raw.get("outputs"), here),
        widgets_values=values if isinstance(values, list | dict) else None,
        properties=properties if isinstance(properties, dict) else {},
    )


def parse_graph(raw: Mapping[str, Any], where: str) -> Graph:
    nodes = [_node(item, where) for item in _list(raw.get("nodes"), where, "nodes")]
    by_id: dict[str, Node] = {}
    for node in nodes:
        if node.id in by_id:
            raise WorkflowError(f"{where}: two nodes have the id {node.id}")
        by_id[node.id] = node
    links_raw = raw.get("links")
    if isinstance(links_raw, dict):
        links_raw = list(links_raw.values())
    links: dict[str, Link] = {}
    for item in _list(links_raw, where, "links"):
        link = _link(item, where)
        if link is not None:
            links[link.id] = link
    return Graph(nodes, by_id, links)


def _io(raw: Any, where: str, what: str) -> list[SubgraphSlot]:
    slots = []
    for item in _list(raw, where, what):
        if not isinstance(item, dict):
            raise WorkflowError(f"{where}: a subgraph {what[:-1]} is {short(item)}, expected an object")
        name = item.get("name")
        link_ids = _list(item.get("linkIds"), where, f"{what} linkIds")
        slots.append(
            SubgraphSlot(
                name=name if isinstance(name, str) else "",
                type=type_name(item.get("type")),
                link_ids=[node_id(link, f"{where}: {what} link") for link in link_ids if link is not None],
            )
        )
    return slots


def parse_subgraphs(data: Mapping[str, Any]) -> dict[str, Subgraph]:
    """Every subgraph definition (``definitions.subgraphs``), including nested definitions."""
    result: dict[str, Subgraph] = {}
    pending: list[Any] = [data]
    while pending:
        holder = pending.pop(0)
        definitions = holder.get("definitions")
        if definitions is None:
            continue
        if not isinstance(definitions, dict):
            raise WorkflowError("definitions must be an object")
        for raw in _list(definitions.get("subgraphs"), "definitions", "subgraphs"):
            if not isinstance(raw, dict):
                raise WorkflowError(f"a subgraph definition is {short(raw)}, expected an object")
            sub_id, name = raw.get("id"), raw.get("name")
            if not isinstance(sub_id, str) or not sub_id:
                raise WorkflowError("a subgraph definition has no id")
            where = f"subgraph {name if isinstance(name, str) and name else sub_id}"
            if sub_id not in result:
                result[sub_id] = Subgraph(
                    id=sub_id,
                    name=name if isinstance(name, str) else "",
                    graph=parse_graph(raw, where),
                    inputs=_io(raw.get("inputs"), where, "inputs"),
                    outputs=_io(raw.get("outputs"), where, "outputs"),
                )
                pending.append(raw)
    return result
