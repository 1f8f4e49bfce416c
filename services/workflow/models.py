"""The model files a prompt loads, and which of them a models folder lacks.

A model input is found by node type and input name (core loaders and common custom packs), by
input names such as ``ckpt_name`` or ``lora_name`` on any node, and on node types outside the
tables by names and file extensions. Folders are ComfyUI's names under models/.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.workflow.convert import check_object_info, is_ui_format
from services.workflow.params import nodes_of, spec_of


@dataclass(frozen=True)
class ModelRef:
    """One model file a prompt loads: its folder (models/<folder>), file name, and where."""

    folder: str
    name: str
    node_id: str
    input_name: str
    class_type: str

    @property
    def input(self) -> str:
        return self.input_name

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model a UI workflow names with its download URL (templates do, in node properties)."""

    name: str
    url: str
    directory: str
    node_id: str | None


MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".gguf", ".onnx", ".engine")
# (class_type, input name) -> folder ("" for inputs that are not model files in models/).
BY_CLASS: dict[tuple[str, str], str] = {
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("ModelPatchLoader", "name"): "model_patches",
    ("DiffusersLoader", "model_path"): "diffusers",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
    ("LatentUpscaleModelLoader", "model_name"): "latent_upscale_models",
    ("CheckpointLoader", "config_name"): "",
    ("WanVideoModelLoader", "model"): "diffusion_models",
    ("WanVideoVAELoader", "model_name"): "vae",
    ("WanVideoLoraSelect", "lora"): "loras",
    ("LoadWanVideoT5TextEncoder", "model_name"): "text_encoders",
    ("LoadWanVideoClipTextEncoder", "model_name"): "clip_vision",
    ("IPAdapterModelLoader", "ipadapter_file"): "ipadapter",
    ("UltralyticsDetectorProvider", "model_name"): "ultralytics",
    ("SAMLoader", "model_name"): "sams",
    ("RIFE VFI", "ckpt_name"): "",
    ("FILM VFI", "ckpt_name"): "",
}
# input name -> folder, on any node type.
BY_NAME: dict[str, str] = {
    "ckpt_name": "checkpoints",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "vae_name": "vae",
    "lora_name": "loras",
    "control_net_name": "controlnet",
    "style_model_name": "style_models",
    "clip_vision_name": "clip_vision",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "photomaker_model_name": "photomaker",
    "audio_encoder_name": "audio_encoders",
    "upscale_model_name": "upscale_models",
}
# Loader choices that are built in, not files.
BUILTIN = frozenset({"pixel_space", "taesd", "taesdxl", "taesd3", "taef1", "None", "none", ""})
# Folders ComfyUI reads from more than one directory under models/.
DIRECTORIES: dict[str, tuple[str, ...]] = {
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "controlnet": ("controlnet", "t2i_adapter"),
}
# (words in "class_type input_name", folder), first match wins: for node types outside the tables.
GUESSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("clip_vision", "clipvision"), "clip_vision"),
    (("vae",), "vae"),
    (("lora",), "loras"),
    (("controlnet", "control_net"), "controlnet"),
    (("upscale",), "upscale_models"),
    (("clip", "t5", "text_encoder", "textencoder", "umt5", "llm"), "text_encoders"),
    (("ckpt", "checkpoint"), "checkpoints"),
    (("unet", "diffusion", "dit", "wan", "model"), "diffusion_models"),
)
EMBEDDING = re.compile(r"embedding:([^\s,()\[\]{}:|]+)", re.IGNORECASE)


def model_folder(object_info: Mapping[str, Any], class_type: str, name: str, value: Any) -> str | None:
    """The models/ folder an input's value names a file in, or None when it is not a model file."""
    if not isinstance(value, str) or value.strip() in BUILTIN:
        return None
    if (class_type, name) in BY_CLASS:
        return BY_CLASS[(class_type, name)] or None
    if name in BY_NAME:
        vision = "clipvision" in class_type.lower().replace("_", "")
        return "clip_vision" if vision and name.startswith("clip_name") else BY_NAME[name]
    if not value.lower().endswith(MODEL_EXTENSIONS):
        return None
    spec = spec_of(object_info, class_type, name)
    if spec is not None and spec.type != "COMBO":
        return None  # a text field that happens to hold a file name
    text = f"{class_type} {name}".lower()
    return next((folder for words, folder in GUESSES if any(word in text for word in words)), None)


def required_models(api: Mapping[str, Any], object_info: Mapping[str, Any]) -> list[ModelRef]:
    """Every model file a prompt loads, in prompt order, one entry per node input.

    ``embedding:name`` in a text counts as a file in embeddings; rgthree's Power Lora Loader
    rows (``{"on": true, "lora": …}``) count when switched on.
    """
    info = check_object_info(object_info)
    refs: list[ModelRef] = []
    for node_id, node in nodes_of(api).items():
        class_type = node["class_type"]
        for name, value in node["inputs"].items():
            if isinstance(value, str):
                refs += [
                    ModelRef("embeddings", m.group(1), node_id, name, class_type) for m in EMBEDDING.finditer(value)
                ]
            folder = model_folder(info, class_type, name, value)
            if folder:
                refs.append(ModelRef(folder, value.replace("\\", "/"), node_id, name, class_type))
            elif isinstance(value, dict) and value.get("on") is not False and isinstance(value.get("lora"), str):
                if value["lora"] not in BUILTIN:
                    refs.append(ModelRef("loras", value["lora"].replace("\\", "/"), node_id, name, class_type))
    return refs


def missing_models(refs: Iterable[ModelRef], listing: Mapping[str, Iterable[str]]) -> list[ModelRef]:
    """The refs whose file ``listing`` lacks, each (folder, name) once.

    ``listing`` maps a folder to the relative paths in it (``GET /models/<folder>``, or a walk of
    models/): keys may be ComfyUI folders or directories ("unet" counts for diffusion_models,
    "clip" for text_encoders). Embeddings match with or without their extension.
    """
    present: dict[str, set[str]] = {}
    for folder, names in listing.items():
        present.setdefault(folder, set()).update(str(name).replace("\\", "/") for name in names)
    result: list[ModelRef] = []
    seen: set[tuple[str, str]] = set()
    for ref in refs:
        if (ref.folder, ref.name) in seen:
            continue
        seen.add((ref.folder, ref.name))
        names: set[str] = set()
        for directory in DIRECTORIES.get(ref.folder, (ref.folder,)):
            names |= present.get(directory, set())
        found = ref.name in names
        if not found and ref.folder == "embeddings":
            found = any(candidate.rsplit(".", 1)[0] == ref.name for candidate in names)
        if not found:
            result.append(ref)
    return result


def embedded_models(workflow: Any) -> list[EmbeddedModel]:
    """Models a UI workflow lists with download URLs: each node's ``properties.models`` and the
    top-level ``models`` (ComfyUI templates carry them). Malformed entries are skipped."""
    if not is_ui_format(workflow):
        return []
    found: list[EmbeddedModel] = []
    nodes = list(workflow["nodes"])
    definitions = workflow.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    for subgraph in subgraphs if isinstance(subgraphs, list) else []:
        if isinstance(subgraph, dict) and isinstance(subgraph.get("nodes"), list):
            nodes += subgraph["nodes"]
    sources: list[tuple[Any, str | None]] = [(workflow.get("models"), None)]
    for node in nodes:
        properties = node.get("properties") if isinstance(node, dict) else None
        if isinstance(properties, dict):
            sources.append((properties.get("models"), str(node.get("id"))))
    seen: set[tuple[str, str]] = set()
    for entries, node_id in sources:
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            name, url, directory = entry.get("name"), entry.get("url"), entry.get("directory")
            if (
                isinstance(name, str)
                and isinstance(url, str)
                and isinstance(directory, str)
                and (directory, name) not in seen
            ):
                seen.add((directory, name))
                found.append(EmbeddedModel(name, url, directory, node_id))
    return found
