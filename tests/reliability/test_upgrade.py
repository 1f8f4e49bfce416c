"""Issue 11, upgrades: a workspace left by an earlier image (tests/fixtures/workspace-v0: models in
ComfyUI's folder names with the legacy ``unet/`` and ``clip/`` folders, a presets.yaml in the
old seed format with the user's edits and own preset, old logs under other program names, an old
extra_model_paths.yaml with the user's own block, outputs, inputs, workflows, a custom node)
starts under the current layout with nothing lost:

- every file is still there, byte for byte (a log ComfyPod appends to keeps its old content as
  its start; the old extra_model_paths.yaml is kept as extra_model_paths.user.yaml and ComfyUI
  reads it too);
- presets.yaml is merged with the current default: the user's edits and preset stay, the
  default's presets are added, the comments stay;
- ComfyUI sees the old models, the legacy folders included.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import psutil
import pytest
import requests

from presets.catalog import DEFAULT_PATH, CatalogStore, load_catalog
from presets.merge import merge_text
from services.comfyui_client import ComfyUIClient

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "workspace-v0"
APPENDED = ("logs/comfyui.log",)  # programs of the same name write on after the old lines
MERGED = ("config/presets.yaml",)
MOVED = {"config/extra_model_paths.yaml": "config/extra_model_paths.user.yaml"}


def _digests(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_earlier_workspace_starts_with_nothing_lost(mesh_factory, workspace, figures) -> None:
    shutil.copytree(FIXTURE, workspace, dirs_exist_ok=True)
    before = _digests(workspace)
    old_catalog = (workspace / "config" / "presets.yaml").read_text()
    mesh = mesh_factory(ENABLE_CODE_SERVER="false")
    settings = mesh.settings

    # every file still there, byte for byte
    verified = 0
    for rel, (size, digest) in before.items():
        path = workspace / MOVED.get(rel, rel)
        assert path.is_file(), f"{rel} is gone"
        data = path.read_bytes()
        if rel in MERGED:
            continue
        if rel in APPENDED:
            assert data[:size] == (FIXTURE / rel).read_bytes(), f"{rel} lost its old lines"
        else:
            assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), f"{rel} changed"
        verified += 1

    # the old presets.yaml is merged: the user's edits and preset kept, the default's added
    text = settings.presets_file.read_text()
    catalog = load_catalog(settings.presets_file)
    default = load_catalog(DEFAULT_PATH)
    assert "My LTX setup - edited by me, keep this line" in catalog.get("LTX_VIDEO_T2V").description
    assert "my-own-tag" in catalog.get("SD1_5_LORA_BASIC").tags
    assert [f.path for f in catalog.get("MY_ANIME_LORA_PACK").files] == [
        "loras/anime-style-v2.safetensors", "loras/lineart-v1.safetensors"]
    assert "# my own preset, added by hand in the old image" in text
    # every preset of the default is in, except those reported as clashing with the user's own
    # (same file path, another URL or size: the old seed's URLs for shared files)
    merge = merge_text(old_catalog, DEFAULT_PATH.read_text())
    assert set(default.presets) - set(catalog.presets) == set(merge.conflicts)
    assert len(merge.added) >= len(default.presets) // 2, merge.summary()
    assert text.startswith(old_catalog.split("presets:\n")[0].rstrip("\n").split("\n")[0])
    assert CatalogStore(settings).error is None

    # ComfyUI (the fake speaks its protocol) sees the old models, legacy folders included, and
    # reads the user's own extra_model_paths.yaml beside ComfyPod's
    client = ComfyUIClient(mesh.internal_url("comfyui"))
    assert "v1-5-pruned-emaonly-fp16.safetensors" in client.models("checkpoints")
    assert "flux1-dev-fp8.safetensors" in client.models("diffusion_models")  # models/unet
    assert "t5xxl_fp8_e4m3fn.safetensors" in client.models("text_encoders")  # models/clip
    assert "subfolder/lineart-v1.safetensors" in client.models("loras")
    cmdline = " ".join(psutil.Process(mesh.supervisor.state("comfyui").pid).cmdline())
    assert "extra_model_paths.user.yaml" in cmdline, cmdline

    # the admin lists them and the old outputs
    bearer = {"Authorization": f"Bearer {mesh.api_token}"}
    models = requests.get(f"{mesh.url('admin')}/api/models", headers=bearer, timeout=20)
    assert models.status_code == 200 and "flux1-dev-fp8.safetensors" in models.text
    gallery = requests.get(f"{mesh.url('admin')}/api/gallery", headers=bearer, timeout=20)
    assert gallery.status_code == 200 and "ComfyUI_00002_.png" in gallery.text

    # a second start changes nothing more (the user's file is not moved twice)
    mesh.stop()
    again = mesh_factory(ENABLE_CODE_SERVER="false", wait=False)
    again.wait_running(60)
    after = _digests(workspace)
    for rel in before:
        if rel not in APPENDED and rel not in MERGED:
            assert after[MOVED.get(rel, rel)] == before[rel], rel
    assert not (workspace / "config" / "extra_model_paths.user.1.yaml").exists()
    figures("upgrade", files_in_fixture=len(before), files_verified=verified, presets_kept=4,
            presets_added=len(merge.added), presets_left_out_as_clashing=len(merge.conflicts), failures=0)


def test_issue_11_a_user_extra_model_paths_yaml_is_kept_not_overwritten(settings) -> None:
    """Regression (issue 11): write_configs overwrote config/extra_model_paths.yaml at every start,
    losing a file an earlier image (or the user) had written there."""
    from services.launcher import comfyui_argv
    from services.render import extra_model_paths_file, write_configs

    mine = "my_disk:\n    base_path: /mnt/models/\n    loras: loras/\n"
    extra_model_paths_file(settings).parent.mkdir(parents=True, exist_ok=True)
    extra_model_paths_file(settings).write_text(mine)
    write_configs(settings)
    write_configs(settings)
    kept = settings.config_dir / "extra_model_paths.user.yaml"
    assert kept.read_text() == mine
    assert extra_model_paths_file(settings).read_text().startswith("# Written by `comfypod up`")
    assert not (settings.config_dir / "extra_model_paths.user.1.yaml").exists()
    argv = comfyui_argv(settings)
    assert argv.count("--extra-model-paths-config") == 2 and str(kept) in argv


def test_issue_11_merging_into_an_old_catalog_skips_only_the_clashing_presets() -> None:
    """Regression (issue 11): one clash between a kept old preset and a new default preset (the
    same path with another URL) made the whole merge fail, so an old catalog never got any of
    the new presets."""
    old = (FIXTURE / "config" / "presets.yaml").read_text()
    result = merge_text(old, DEFAULT_PATH.read_text())
    assert result.added and result.conflicts
    assert not set(result.added) & set(result.conflicts)
    merged = load_catalog_text(result.text)
    assert "MY_ANIME_LORA_PACK" in merged.presets and set(result.added) <= set(merged.presets)
    assert "left out" in result.summary()


def load_catalog_text(text: str):
    from presets.catalog import load_text

    return load_text(text, "merged")
