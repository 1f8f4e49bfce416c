"""Model folders of the fake ComfyUI: read extra_model_paths.yaml, list files, fill object_info.

The recorded object_info.json came from a ComfyUI with empty model folders, so every model
dropdown in it is empty. The fake fills those dropdowns from the workspace folders named in the
extra model paths config, the way ComfyUI's folder_paths does.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent

# ComfyUI renamed two folders; a config that uses the old name still lands in the new one.
LEGACY = {"unet": "diffusion_models", "clip": "text_encoders"}

# GET /models as recorded (ComfyUI 0.3.64): folder names in registration order.
RECORDED_FOLDERS = [
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
    "custom_nodes", "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders",
]

MODEL_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
FOLDER_EXTENSIONS = {"configs": {".yaml"}}

# (node class, input name) -> model folder whose files the dropdown lists.
MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "config_name"): "configs",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("CreateHookModelAsLora", "ckpt_name"): "checkpoints",
    ("CreateHookModelAsLoraModelOnly", "ckpt_name"): "checkpoints",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("CreateHookLora", "lora_name"): "loras",
    ("CreateHookLoraModelOnly", "lora_name"): "loras",
    ("VAELoader", "vae_name"): "vae",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name1"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name2"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name4"): "text_encoders",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("ModelPatchLoader", "name"): "model_patches",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
}

# Nodes that check their file themselves instead of the dropdown (ComfyUI's VALIDATE_INPUTS).
INPUT_FILE_NODES = {("LoadImage", "image"), ("LoadImageMask", "image")}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class ModelFolders:
    """folder name -> list of directories, from ComfyUI's defaults plus the extra config."""

    def __init__(self, base: Path, configs: list[Path], stock: dict[str, list[str]] | None = None) -> None:
        self.paths: dict[str, list[Path]] = {name: [] for name in RECORDED_FOLDERS}
        self.stock = stock or {}  # files ComfyUI ships in its own models/<folder> (configs/*.yaml)
        for name in RECORDED_FOLDERS:
            self.paths[name].append(base / "models" / name)
        self.paths["text_encoders"].append(base / "models" / "clip")
        self.paths["diffusion_models"].insert(0, base / "models" / "unet")
        for config in configs:
            self._read(config)

    def _read(self, config: Path) -> None:
        data = yaml.safe_load(config.read_text()) or {}
        for _section, entries in data.items():
            if not isinstance(entries, dict):
                continue
            base = Path(os.path.expanduser(str(entries.get("base_path", ""))))
            if not base.is_absolute():
                base = config.parent / base
            default = bool(entries.get("is_default"))
            for key, value in entries.items():
                if key in ("base_path", "is_default"):
                    continue
                folder = LEGACY.get(key, key)
                for line in str(value).splitlines():
                    line = line.strip()
                    if not line:
                        continue
                    path = (base / line).resolve()
                    paths = self.paths.setdefault(folder, [])
                    if default:
                        paths.insert(0, path)
                    else:
                        paths.append(path)

    def names(self) -> list[str]:
        return list(self.paths)

    def files(self, folder: str) -> list[str]:
        """Relative file names (posix, sorted) in every directory of ``folder``."""
        extensions = FOLDER_EXTENSIONS.get(folder, MODEL_EXTENSIONS)
        found: set[str] = set(self.stock.get(folder, []))
        for root in self.paths.get(folder, []):
            if not root.is_dir():
                continue
            if folder == "diffusers":
                found.update(p.name for p in root.iterdir() if p.is_dir())
                continue
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for filename in filenames:
                    if Path(filename).suffix.lower() in extensions:
                        rel = Path(dirpath, filename).relative_to(root)
                        found.add(rel.as_posix())
        return sorted(found)

    def find(self, folder: str, name: str) -> Path | None:
        for root in self.paths.get(folder, []):
            path = root / name
            if path.exists():
                return path
        return None


def load_object_info() -> dict:
    return json.loads((HERE / "object_info.json").read_text())


def stock_files(recorded: dict) -> dict[str, list[str]]:
    """Files a stock ComfyUI has in its own model folders: the recorded configs/*.yaml."""
    return {"configs": list(recorded["CheckpointLoader"]["input"]["required"]["config_name"][0])}


def combo_options(config: list) -> list | None:
    """The option list of a dropdown input, or None when the input is not a dropdown."""
    if config and isinstance(config[0], list):
        return config[0]
    if config and config[0] == "COMBO" and len(config) > 1 and isinstance(config[1], dict):
        return config[1].get("options")
    return None


def _set_options(config: list, options: list) -> None:
    if isinstance(config[0], list):
        config[0] = options
    else:
        config[1]["options"] = options


def input_images(input_dir: Path) -> list[str]:
    if not input_dir.is_dir():
        return []
    return sorted(p.name for p in input_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def filled_object_info(recorded: dict, folders: ModelFolders, input_dir: Path, only: str | None = None) -> dict:
    """A copy of the recorded object_info with model and input-file dropdowns filled in."""
    classes = [only] if only else list(recorded)
    result = {}
    listing: dict[str, list[str]] = {}
    for name in classes:
        if name not in recorded:
            continue
        info = copy.deepcopy(recorded[name])
        for section in ("required", "optional"):
            for input_name, config in info["input"].get(section, {}).items():
                folder = MODEL_INPUTS.get((name, input_name))
                if folder:
                    if folder not in listing:
                        listing[folder] = folders.files(folder)
                    options = list(listing[folder])
                    if name == "VAELoader":
                        options.append("pixel_space")
                    _set_options(config, options)
                elif (name, input_name) in INPUT_FILE_NODES:
                    _set_options(config, input_images(input_dir))
        result[name] = info
    return result
