"""services.model_presets: missing model files of a prompt and the presets that provide them."""

from __future__ import annotations

import json
from dataclasses import dataclass

from services import model_presets
from tests.plugins.comfyui import FAKE_MAIN


@dataclass
class File:
    path: str
    optional: bool = False


@dataclass
class Preset:
    id: str
    name: str
    files: tuple
    disk_gb: float | None = None
    tags: tuple = ()


PRESETS = [
    Preset("SD15_IMG2IMG", "SD 1.5 Image to Image", (File("checkpoints/sd15.safetensors"),), 2.0, ("image-to-image",)),
    Preset("SD15_TXT2IMG", "SD 1.5 Text to Image", (File("checkpoints/sd15.safetensors"),
                                                     File("vae/sd15-vae.safetensors")), 2.2, ("text-to-image",)),
    Preset("SD15_ALL", "SD 1.5 everything", (File("checkpoints/sd15.safetensors"), File("vae/sd15-vae.safetensors"),
                                             File("loras/detail.safetensors")), 3.0),
    Preset("FLUX", "Flux", (File("unet/flux1-dev.safetensors"), File("clip/t5xxl.safetensors")), 30.0),
    Preset("OTHER", "Other", (File("checkpoints/sub/sd15.safetensors"),), 1.0),
]


def test_exact_path_wins_and_legacy_folders_match():
    found = model_presets.presets_providing(PRESETS, "checkpoints", "sd15.safetensors")
    assert [p["id"] for p in found] == ["SD15_IMG2IMG", "SD15_TXT2IMG", "SD15_ALL"]  # fewest files first
    assert [p["id"] for p in model_presets.presets_providing(PRESETS, "diffusion_models", "flux1-dev.safetensors")] \
        == ["FLUX"]
    assert [p["id"] for p in model_presets.presets_providing(PRESETS, "checkpoints", "elsewhere/sd15.safetensors")] \
        == ["OTHER", "SD15_IMG2IMG", "SD15_TXT2IMG", "SD15_ALL"]  # same file name in the folder
    assert model_presets.presets_providing(PRESETS, "vae", "nope.safetensors") == []


def test_workflow_title_ranks_presets_for_the_same_file():
    found = model_presets.presets_providing(PRESETS, "checkpoints", "sd15.safetensors",
                                            hint="SD 1.5 text to image sd15-txt2img.json")
    assert found[0]["id"] == "SD15_TXT2IMG"


def test_missing_report_prefers_presets_covering_more_missing_files():
    object_info = json.loads((FAKE_MAIN.parent / "object_info.json").read_text())
    api = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
           "5": {"class_type": "VAELoader", "inputs": {"vae_name": "sd15-vae.safetensors"}},
           "6": {"class_type": "LoraLoader", "inputs": {"lora_name": "mine.safetensors", "model": ["4", 0],
                                                       "clip": ["4", 1], "strength_model": 1, "strength_clip": 1}}}
    listing = {"checkpoints": [], "vae": [], "loras": ["mine.safetensors"]}
    report = model_presets.missing_report(api, object_info, listing, PRESETS)
    assert [(m.folder, m.name) for m in report] == [("checkpoints", "sd15.safetensors"),
                                                    ("vae", "sd15-vae.safetensors")]
    assert report[0].nodes == ["node 4 (CheckpointLoaderSimple).ckpt_name"]
    assert report[0].presets[0]["id"] == "SD15_TXT2IMG"  # it provides both missing files
    assert model_presets.preset_ids(report) == ["SD15_TXT2IMG"]
    assert model_presets.missing_report(api, object_info, {"checkpoints": ["sd15.safetensors"],
                                                           "vae": ["sd15-vae.safetensors"],
                                                           "loras": ["mine.safetensors"]}, PRESETS) == []
