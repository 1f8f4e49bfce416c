"""What ComfyUI's frontend builds for a node type from /object_info: widgets, input sockets, outputs.

A node's ``widgets_values`` only make sense against this list: it holds frontend-only widgets
(the control_after_generate combo after a seed, the upload button after an upload combo) whose
values are stored but never sent, and extensions add a few inputs of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Input types the frontend draws as widgets (core widgets plus the ones core extensions add).
WIDGET_TYPES = frozenset(
    {
        "INT",
        "FLOAT",
        "BOOLEAN",
        "STRING",
        "COMBO",
        "MARKDOWN",
        "IMAGEUPLOAD",
        "AUDIOUPLOAD",
        "FILEUPLOAD",
        "COLOR",
        "IMAGECOMPARE",
        "TREESELECT",
        "MULTISELECT",
        "CHART",
        "GALLERIA",
        "SELECTBUTTON",
        "TEXTAREA",
        "WEBCAM",
        "LOAD_3D",
        "LOAD_3D_ANIMATION",
        "PREVIEW_3D",
        "PREVIEW_3D_ANIMATION",
    }
)
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
# Inputs core frontend extensions add to a node type's required inputs: (name, type).
EXTENSION_INPUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "Preview3D": (("image", "PREVIEW_3D"),),
    "SaveGLB": (("image", "PREVIEW_3D"),),
    "Preview3DAnimation": (("image", "PREVIEW_3D_ANIMATION"),),
}
# Widgets extensions add when a node is created (after all others): (name, value, stored).
EXTENSION_WIDGETS: dict[str, tuple[tuple[str, Any, bool], ...]] = {
    "PreviewAny": (("preview", "", False),),
}
# English display names the frontend has for nodes whose server gives none (frontend 1.27 locale).
DISPLAY_NAMES = {
    "ImageBlend": "Image Blend",
    "ImageBlur": "Image Blur",
    "ImageQuantize": "Image Quantize",
    "ImageSharpen": "Image Sharpen",
    "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
}
UNSET: Any = object()  # a widget without a value (an empty combo): nothing is sent


@dataclass(frozen=True)
class Widget:
    name: str
    kind: str
    default: Any
    send: bool = True  # sent in the prompt
    stored: bool = True  # has a place in widgets_values
    dynamic_prompts: bool = False
    multiline: bool = False  # a textarea: its value is text with "\n" line ends
    upload_folder: str | None = None  # a combo with an upload button: files outside input/ are annotated
    allow_batch: bool = False


@dataclass(frozen=True)
class Socket:
    name: str
    type: str
    widget: str | None = None


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str  # "COMBO" for combos
    options: Mapping[str, Any]
    choices: tuple[Any, ...] | None = None

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES and not self.options.get("forceInput")


@dataclass(frozen=True)
class NodeType:
    name: str
    display_name: str
    inputs: tuple[InputSpec, ...]  # required then optional, as object_info lists them
    widgets: tuple[Widget, ...]
    sockets: tuple[Socket, ...]
    outputs: tuple[str, ...]
    legacy_force_input: tuple[bool, ...]  # see migrate_values
    legacy_count: int

    def spec(self, name: str) -> InputSpec | None:
        for item in self.inputs:
            if item.name == name:
                return item
        return None

    def migrate_values(self, values: list[Any]) -> list[Any]:
        """Old files stored a value for forceInput inputs too: drop those when the count says so."""
        if len(values) != self.legacy_count or not any(self.legacy_force_input):
            return values
        flags = self.legacy_force_input
        return [value for index, value in enumerate(values) if not (index < len(flags) and flags[index])]


def input_spec(name: str, spec: Any) -> InputSpec:
    kind = spec[0] if isinstance(spec, list | tuple) and spec else None
    options = spec[1] if isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(kind, list):
        return InputSpec(name, "COMBO", options, tuple(kind))
    if kind == "COMBO":
        choices = options.get("options")
        return InputSpec(name, "COMBO", options, tuple(choices) if isinstance(choices, list) else ())
    return InputSpec(name, kind if isinstance(kind, str) else "*", options)


def _sections(info: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Mapping[str, Any]]:
    section = info.get("input")
    section = section if isinstance(section, Mapping) else {}
    required = section.get("required")
    optional = section.get("optional")
    order = info.get("input_order")
    return (
        dict(required) if isinstance(required, Mapping) else {},
        dict(optional) if isinstance(optional, Mapping) else {},
        order if isinstance(order, Mapping) else {},
    )


def _ordered(
    required: dict[str, InputSpec], optional: dict[str, InputSpec], order: Mapping[str, Any]
) -> list[InputSpec]:
    """The frontend's input order: input_order's required, its optional, then the rest as listed."""
    if not order:
        return [*required.values(), *optional.values()]
    result: list[InputSpec] = []
    for group, specs in (("required", required), ("optional", optional)):
        names = order.get(group)
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str) and name in specs and specs[name] not in result:
                result.append(specs[name])
    result += [spec for spec in [*required.values(), *optional.values()] if spec not in result]
    return result


def _default(spec: InputSpec) -> Any:
    options = spec.options
    if spec.type == "COMBO":
        if options.get("default"):
            return options["default"]
        if spec.choices:
            return spec.choices[0]
        return "Loading..." if options.get("remote") else UNSET
    default = options.get("default")
    if default is not None:
        return default
    if spec.type in ("INT", "FLOAT"):
        return 0
    if spec.type == "BOOLEAN":
        return False
    return ""


def _upload_folder(spec: InputSpec) -> str:
    folder = spec.options.get("image_folder")
    return folder if isinstance(folder, str) else "input"


def _widgets(spec: InputSpec, upload_target: bool = False) -> list[Widget]:
    """The widgets one input becomes, in order (``upload_target``: the combo an upload button fills)."""
    options = spec.options
    if spec.type in ("IMAGEUPLOAD", "AUDIOUPLOAD"):
        return [Widget(spec.name, spec.type, "image", send=False)]
    if spec.type == "COMBO" and options.get("multi_select"):
        return [Widget(spec.name, "MULTISELECT", [])]
    main = Widget(
        spec.name,
        spec.type,
        _default(spec),
        dynamic_prompts=spec.type == "STRING" and options.get("dynamicPrompts") is True,
        multiline=spec.type == "STRING" and bool(options.get("multiline")),
        upload_folder=_upload_folder(spec) if upload_target else None,
        allow_batch=bool(options.get("allow_batch")),
    )
    widgets = [main]
    if spec.type == "COMBO":
        remote = options.get("remote")
        if isinstance(remote, Mapping):
            widgets.append(Widget("Auto-refresh after generation", "BOOLEAN", False, send=False))
            if remote.get("refresh_button"):
                widgets.append(Widget("refresh", "BUTTON", "refresh"))
        if options.get("control_after_generate"):
            widgets.append(Widget("control_after_generate", "CONTROL", "randomize", send=False))
            widgets.append(Widget("control_filter_list", "STRING", "", send=False))
    elif spec.type == "INT":
        control = options.get("control_after_generate")
        if control is None:
            control = spec.name in ("seed", "noise_seed")
        if control:
            widgets.append(Widget("control_after_generate", "CONTROL", "randomize", send=False))
    return widgets


def build_node_type(name: str, info: Mapping[str, Any]) -> NodeType:
    required_raw, optional_raw, order = _sections(info)
    required = {key: input_spec(key, spec) for key, spec in required_raw.items()}
    optional = {key: input_spec(key, spec) for key, spec in optional_raw.items()}
    # extensions add inputs to the required ones before the node type is registered
    upload = next(
        (s for s in required.values() if s.type == "COMBO" and any(s.options.get(f) is True for f in UPLOAD_FLAGS)),
        None,
    )
    if upload is not None:
        required["upload"] = InputSpec("upload", "IMAGEUPLOAD", {**upload.options, "imageInputName": upload.name})
    audio = required.get("audio")
    if audio is not None and audio.options.get("audio_upload") is True:
        required["upload"] = InputSpec("upload", "AUDIOUPLOAD", {})
    for extra, kind in EXTENSION_INPUTS.get(name, ()):
        required[extra] = InputSpec(extra, kind, {})
    ordered = _ordered(required, optional, order)

    target = upload.name if upload is not None else None
    widgets = [widget for spec in ordered if spec.is_widget for widget in _widgets(spec, spec.name == target)]
    for extra, value, stored in EXTENSION_WIDGETS.get(name, ()):
        widgets.append(Widget(extra, "STRING", value, stored=stored))
    sockets = [Socket(spec.name, spec.type) for spec in ordered if not spec.is_widget]
    sockets += [Socket(spec.name, spec.type, spec.name) for spec in ordered if spec.is_widget]

    names = {widget.name for widget in widgets}
    legacy = [
        spec
        for spec in [*required.values(), *optional.values()]
        if spec.name in names or spec.options.get("forceInput")
    ]
    count = sum(
        2 if spec.options.get("control_after_generate") or spec.name in ("seed", "noise_seed") else 1 for spec in legacy
    )
    outputs_raw = info.get("output")
    outputs = tuple(
        "COMBO" if isinstance(kind, list) else str(kind)
        for kind in (outputs_raw if isinstance(outputs_raw, list) else [])
    )
    display = info.get("display_name")
    return NodeType(
        name=name,
        display_name=display if isinstance(display, str) and display else DISPLAY_NAMES.get(name, name),
        inputs=tuple([*required.values(), *optional.values()]),
        widgets=tuple(widgets),
        sockets=tuple(sockets),
        outputs=outputs,
        legacy_force_input=tuple(bool(spec.options.get("forceInput")) for spec in legacy),
        legacy_count=count,
    )


class NodeTypes:
    """Node types of one /object_info, built on first use."""

    def __init__(self, object_info: Mapping[str, Any]) -> None:
        self.info = object_info
        self._built: dict[str, NodeType] = {}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and isinstance(self.info.get(name), Mapping)

    def get(self, name: str) -> NodeType | None:
        if name not in self:
            return None
        if name not in self._built:
            self._built[name] = build_node_type(name, self.info[name])
        return self._built[name]
