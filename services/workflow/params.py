"""The obvious inputs of a prompt (prompt texts, seed, steps, size, …) and setting them safely.

``parameters`` lists them with their type and range from /object_info; ``apply_parameters``
returns a changed copy, converting values typed on a command line and refusing bad ones.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.errors import WorkflowError
from services.workflow.convert import check_object_info, js_number, js_string, strip_meta
from services.workflow.graph import short
from services.workflow.nodetypes import InputSpec, input_spec

KINDS: tuple[str, ...] = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "cfg",
    "guidance",
    "denoise",
    "width",
    "height",
    "length",
    "batch_size",
    "filename_prefix",
)
# input name -> kind
NAME_KINDS = {
    "seed": "seed",
    "noise_seed": "seed",
    "steps": "steps",
    "cfg": "cfg",
    "guidance": "guidance",
    "denoise": "denoise",
    "width": "width",
    "height": "height",
    "length": "length",
    "batch_size": "batch_size",
    "filename_prefix": "filename_prefix",
    "negative_prompt": "negative_prompt",
}
# names of text inputs that hold a prompt
PROMPT_NAMES = frozenset({"text", "prompt", "text_g", "text_l", "clip_l", "t5xxl", "value"})
PRIMITIVE_TYPES = frozenset(
    {"PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean"}
)
# (sampler input, role): where positive and negative conditioning enter samplers and guiders
CONDITIONING_INPUTS = (
    ("positive", "prompt"),
    ("conditioning", "prompt"),
    ("cond1", "prompt"),
    ("negative", "negative_prompt"),
    ("cond2", "negative_prompt"),
)


@dataclass(frozen=True)
class Param:
    """One input a user may change: ``key`` is ``"<node id>.<input name>"``."""

    key: str
    node_id: str
    input_name: str
    kind: str
    type: str
    value: Any
    class_type: str
    title: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    multiline: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["choices"] = list(self.choices) if self.choices is not None else None
        return data


def nodes_of(api: Any) -> dict[str, dict[str, Any]]:
    """The node entries of an API prompt (entries without class_type and inputs are skipped)."""
    if not isinstance(api, Mapping):
        raise WorkflowError("an API-format workflow must be a JSON object of nodes")
    return {
        str(key): node
        for key, node in api.items()
        if isinstance(node, dict) and isinstance(node.get("class_type"), str) and isinstance(node.get("inputs"), dict)
    }


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def spec_of(object_info: Mapping[str, Any], class_type: str, name: str) -> InputSpec | None:
    info = object_info.get(class_type)
    section = info.get("input") if isinstance(info, Mapping) else None
    if not isinstance(section, Mapping):
        return None
    for group in ("required", "optional"):
        entries = section.get(group)
        if isinstance(entries, Mapping) and name in entries:
            return input_spec(name, entries[name])
    return None


def _has_prompt_text(node: Mapping[str, Any]) -> bool:
    return any(isinstance(value, str) and name in PROMPT_NAMES for name, value in node["inputs"].items())


def prompt_roles(nodes: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """node id -> "prompt" or "negative_prompt" for the text nodes feeding samplers and guiders.

    Walks up from each sampler's positive/negative input to the first nodes holding text.
    A node reached from both sides counts as the positive prompt.
    """
    roles: dict[str, str] = {}
    for input_name, role in CONDITIONING_INPUTS:
        for node in nodes.values():
            start = node["inputs"].get(input_name)
            if not is_link(start):
                continue
            if input_name == "conditioning" and "Guider" not in node["class_type"]:
                continue
            pending, seen = [str(start[0])], set()
            while pending:
                node_id = pending.pop()
                if node_id in seen or node_id not in nodes:
                    continue
                seen.add(node_id)
                if _has_prompt_text(nodes[node_id]):
                    roles.setdefault(node_id, role)
                    continue
                pending.extend(str(value[0]) for value in nodes[node_id]["inputs"].values() if is_link(value))
    return roles


def _title(node: Mapping[str, Any]) -> str:
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) else str(node["class_type"])


def _prompt_kind(node_id: str, node: Mapping[str, Any], roles: Mapping[str, str], source: str | None) -> str:
    role = roles.get(node_id) or (roles.get(source) if source else None)
    if role:
        return role
    return "negative_prompt" if "negative" in _title(node).lower() else "prompt"


def parameters(api: Mapping[str, Any], object_info: Mapping[str, Any]) -> list[Param]:
    """The obvious inputs of a prompt: prompt texts, seed, steps, cfg, size, batch, denoise, prefix.

    An input fed by a backend primitive node (PrimitiveInt, PrimitiveStringMultiline, …) is
    reported as that node's ``value``. Sorted by kind (see KINDS), then by node order.
    """
    info = check_object_info(object_info)
    nodes = nodes_of(api)
    roles = prompt_roles(nodes)
    order = {node_id: index for index, node_id in enumerate(nodes)}
    found: dict[str, Param] = {}
    for node_id, node in nodes.items():
        class_type = node["class_type"]
        if class_type in PRIMITIVE_TYPES:
            continue
        for name, value in node["inputs"].items():
            spec = spec_of(info, class_type, name)
            source_id = str(value[0]) if is_link(value) else None
            kind = NAME_KINDS.get(name)
            if kind is None and name in PROMPT_NAMES and name != "value":
                is_text = spec.type == "STRING" if spec else isinstance(value, str)
                if is_text and ((spec and spec.options.get("multiline")) or node_id in roles or source_id in roles):
                    kind = _prompt_kind(node_id, node, roles, source_id)
            if kind is None:
                continue
            target_id, target_name, target = node_id, name, node
            if source_id is not None:
                source = nodes.get(source_id)
                if source is None or source["class_type"] not in PRIMITIVE_TYPES or "value" not in source["inputs"]:
                    continue
                target_id, target_name, target = source_id, "value", source
                value = source["inputs"]["value"]
                spec = spec_of(info, source["class_type"], "value") or spec
                if is_link(value):
                    continue
            key = f"{target_id}.{target_name}"
            if key not in found:
                found[key] = _param(key, target_id, target_name, kind, value, target, spec)
    return sorted(found.values(), key=lambda p: (KINDS.index(p.kind), order.get(p.node_id, 0), p.key))


def _param(
    key: str, node_id: str, name: str, kind: str, value: Any, node: Mapping[str, Any], spec: InputSpec | None
) -> Param:
    options = spec.options if spec else {}

    def number(option: str) -> float | None:
        found = options.get(option)
        return found if isinstance(found, int | float) and not isinstance(found, bool) else None

    return Param(
        key=key,
        node_id=node_id,
        input_name=name,
        kind=kind,
        type=spec.type if spec else _value_type(value),
        value=value,
        class_type=str(node["class_type"]),
        title=_title(node),
        minimum=number("min"),
        maximum=number("max"),
        step=number("step"),
        choices=spec.choices if spec else None,
        multiline=bool(options.get("multiline")),
    )


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "INT"
    if isinstance(value, float):
        return "FLOAT"
    return "STRING"


def apply_parameters(
    api: Mapping[str, Any],
    values: Mapping[str, Any],
    object_info: Mapping[str, Any] | None = None,
    *,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """A copy of ``api`` with each ``{"<node>.<input>": value}`` set, checked and converted.

    With ``object_info``, values are checked against the input's type and range; a key without
    a dot names a kind ("seed", "steps", "prompt", …) and sets every input of that kind.
    Strings typed on a command line are converted ("20" -> 20, "true" -> True); "random" picks
    a seed. Raises WorkflowError naming the key for anything it cannot set.
    """
    result = strip_meta(api)
    nodes = nodes_of(result)
    info = check_object_info(object_info) if object_info is not None else {}
    if not isinstance(values, Mapping):
        raise WorkflowError("parameters must map '<node>.<input>' to a value")
    for key, value in values.items():
        if not isinstance(key, str) or not key.strip():
            raise WorkflowError(f"a parameter name must be text like '3.seed', not {short(key)}")
        if "." not in key:
            for param in _by_kind(key, result, info, object_info is not None):
                nodes[param.node_id]["inputs"][param.input_name] = _checked(param.key, value, nodes, info, rng)
            continue
        node_id, _, name = key.partition(".")
        if node_id not in nodes:
            raise WorkflowError(f"{key}: there is no node {node_id} in this workflow")
        nodes[node_id]["inputs"][name] = _checked(key, value, nodes, info, rng)
    return result


def _by_kind(kind: str, api: Mapping[str, Any], info: Mapping[str, Any], have_info: bool) -> list[Param]:
    if not have_info:
        raise WorkflowError(f"{kind}: name the input as '<node id>.<input>'")
    found = parameters(api, info)
    matching = [param for param in found if param.kind == kind]
    if not matching:
        kinds = sorted({param.kind for param in found}, key=KINDS.index)
        raise WorkflowError(f"{kind}: no such input in this workflow (it has: {', '.join(kinds) or 'none'})")
    return matching


def _checked(
    key: str, value: Any, nodes: Mapping[str, dict[str, Any]], info: Mapping[str, Any], rng: random.Random | None
) -> Any:
    node_id, _, name = key.partition(".")
    node = nodes[node_id]
    current = node["inputs"].get(name, None)
    spec = spec_of(info, node["class_type"], name) if info else None
    if spec is None and name not in node["inputs"]:
        known = ", ".join(sorted(node["inputs"])) or "none"
        raise WorkflowError(f"{key}: {node['class_type']} has no input {name!r} (it has: {known})")
    if is_link(current):
        raise WorkflowError(f"{key}: this input comes from node {current[0]}; change that node instead")
    kind = spec.type if spec else _value_type(current)
    options = spec.options if spec else {}
    if isinstance(value, list | dict) or value is None:
        raise WorkflowError(f"{key}: expected a single value, got {short(value)}")
    if kind == "INT":
        return _in_range(key, _to_int(key, value, options, rng), options)
    if kind == "FLOAT":
        return _in_range(key, _to_float(key, value), options)
    if kind == "BOOLEAN":
        return _to_bool(key, value)
    if kind == "COMBO":
        choices = spec.choices if spec else None
        if choices and value not in choices:
            shown = ", ".join(repr(choice) for choice in choices[:8]) + (", …" if len(choices) > 8 else "")
            raise WorkflowError(f"{key}: {value!r} is not one of {shown}")
        return value
    if kind == "STRING":
        return value if isinstance(value, str) else js_string(value)
    return value


def _to_int(key: str, value: Any, options: Mapping[str, Any], rng: random.Random | None) -> int:
    if isinstance(value, str) and value.strip().lower() in ("random", "randomize"):
        low, high = options.get("min", 0), options.get("max", 2**53 - 1)
        if isinstance(low, bool) or not isinstance(low, int) or isinstance(high, bool) or not isinstance(high, int):
            raise WorkflowError(f"{key}: cannot pick a random value for this input")
        high = min(high, 2**53 - 1)
        if high < low:
            raise WorkflowError(f"{key}: cannot pick a random value for this input")
        return (rng or random.Random()).randint(low, high)
    if isinstance(value, bool):
        raise WorkflowError(f"{key}: expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise WorkflowError(f"{key}: expected a whole number, got {short(value)}")


def _to_float(key: str, value: Any) -> int | float:
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise WorkflowError(f"{key}: expected a number, got {short(value)}")
    return js_number(number)


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int | float) else ""
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise WorkflowError(f"{key}: expected true or false, got {short(value)}")


def _in_range(key: str, number: int | float, options: Mapping[str, Any]) -> int | float:
    low, high = options.get("min"), options.get("max")
    if isinstance(low, int | float) and not isinstance(low, bool) and number < low:
        raise WorkflowError(f"{key}: {js_string(number)} is below the minimum of {js_string(low)}")
    if isinstance(high, int | float) and not isinstance(high, bool) and number > high:
        raise WorkflowError(f"{key}: {js_string(number)} is above the maximum of {js_string(high)}")
    return number
