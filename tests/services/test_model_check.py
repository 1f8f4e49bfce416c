"""services.model_check: after an install, ComfyUI's own GET /models/<folder> must list each file."""

from __future__ import annotations

from services import model_check
from services.comfyui_client import ComfyUIClient


def test_comfy_name_maps_legacy_folders():
    assert model_check.comfy_name("checkpoints/sd15/x.safetensors") == ("checkpoints", "sd15/x.safetensors")
    assert model_check.comfy_name("unet/flux.safetensors") == ("diffusion_models", "flux.safetensors")
    assert model_check.comfy_name("clip/t5.safetensors") == ("text_encoders", "t5.safetensors")
    assert model_check.comfy_name("loose.safetensors") == ("", "loose.safetensors")


def test_files_seen_misplaced_or_wrong_type(fake_comfyui):
    models = fake_comfyui.settings.models_dir
    (models / "checkpoints" / "good.safetensors").write_bytes(b"x")
    (models / "unet" / "flux.safetensors").write_bytes(b"x")
    (models / "loras" / "model.gguf").write_bytes(b"x")
    results = model_check.check_files(ComfyUIClient(fake_comfyui.url), [
        "checkpoints/good.safetensors", "unet/flux.safetensors", "checkpoints/not-there.safetensors",
        "loras/model.gguf", "somewhere/else.safetensors", "loose.safetensors"])
    assert [r.seen for r in results] == [True, True, False, False, False, False]
    assert results[1].folder == "diffusion_models" and results[1].reason == "ComfyUI lists it in diffusion_models"
    assert "wrong folder or file type" in results[3].reason
    assert "no model folder 'somewhere'" in results[4].reason
    assert results[5].reason == "not inside a model folder"
    assert [r.path for r in model_check.unseen(results)] == [
        "checkpoints/not-there.safetensors", "loras/model.gguf", "somewhere/else.safetensors", "loose.safetensors"]
