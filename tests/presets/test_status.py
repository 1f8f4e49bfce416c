"""presets.status: installed / partial / missing / damaged from one stat per distinct file;
shared files counted once; removal keeps what other installed presets need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from presets import status as status_module
from presets.catalog import load_text
from presets.status import disk_usage, files_to_remove, installed_ids, preset_status
from tests.plugins.downloads import put

CATALOG = """\
presets:
  ONE:
    name: One
    type: image
    files:
      - path: checkpoints/one.safetensors
        url: https://example.org/one.safetensors
        size: 100
      - path: vae/shared.safetensors
        url: https://example.org/shared.safetensors
        size: 50
      - path: loras/extra.safetensors
        url: https://example.org/extra.safetensors
        size: 7
        optional: true
  TWO:
    name: Two
    type: image
    files:
      - path: checkpoints/two.safetensors
        url: https://example.org/two.safetensors
        size: ~1KB
      - path: vae/shared.safetensors
        url: https://example.org/shared.safetensors
        size: 50
  THREE:
    name: Three
    type: video
    files:
      - path: diffusion_models/three.safetensors
        url: https://example.org/three.safetensors
        size: 300
"""


@pytest.fixture
def catalog():
    return load_text(CATALOG)


def test_states(catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    statuses = preset_status(catalog, models)
    assert {pid: s.state for pid, s in statuses.items()} == {"ONE": "missing", "TWO": "missing", "THREE": "missing"}
    assert statuses["ONE"].bytes_missing == 150  # optional files are not owed
    assert statuses["TWO"].bytes_missing == 1024 + 50 and not statuses["TWO"].exact

    put(models, "vae/shared.safetensors", 50)
    put(models, "checkpoints/one.safetensors", 100)
    put(models, "diffusion_models/three.safetensors", 299)  # wrong size
    put(models, "checkpoints/two.safetensors.part", 300)  # a download in progress
    statuses = preset_status(catalog, models)
    assert statuses["ONE"].state == "installed"  # the optional file may be missing
    assert statuses["ONE"].bytes_present == 150 and statuses["ONE"].files_present == 2
    assert statuses["TWO"].state == "partial"
    two = {f.path: f for f in statuses["TWO"].files}
    assert two["checkpoints/two.safetensors"].state == "downloading"
    assert two["checkpoints/two.safetensors"].bytes_missing == 1024 - 300
    assert two["vae/shared.safetensors"].shared_with == ("ONE",)
    assert statuses["THREE"].state == "damaged"
    assert statuses["THREE"].files[0].size_on_disk == 299
    assert installed_ids(statuses) == ["ONE", "TWO", "THREE"]  # TWO: a download in progress
    (models / "checkpoints/two.safetensors.part").unlink()
    assert installed_ids(preset_status(catalog, models)) == ["ONE", "THREE"]  # TWO only shares the VAE

    put(models, "checkpoints/two.safetensors", 5000)  # estimates never make a file damaged
    assert preset_status(catalog, models, ["two"])["TWO"].state == "installed"
    assert disk_usage(catalog, models) == 100 + 50 + 5000 + 299  # shared file counted once


def test_a_folder_in_place_of_a_file_is_damaged(catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "diffusion_models" / "three.safetensors").mkdir(parents=True)
    assert preset_status(catalog, models)["THREE"].state == "damaged"


def test_a_folder_linked_outside_models_is_unsafe(catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    outside = tmp_path / "elsewhere"
    put(outside, "three.safetensors", 300)
    os.symlink(outside, models / "diffusion_models")
    three = preset_status(catalog, models)["THREE"]
    assert three.state == "damaged" and three.files[0].state == "unsafe"
    assert files_to_remove(catalog, models, "THREE", []) == []


def test_a_linked_file_counts(catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    real = put(tmp_path / "disk2", "three.safetensors", 300)
    (models / "diffusion_models").mkdir(parents=True)
    os.symlink(real, models / "diffusion_models" / "three.safetensors")
    assert preset_status(catalog, models)["THREE"].state == "installed"


def test_one_stat_per_distinct_file(catalog, tmp_path: Path, monkeypatch) -> None:
    models = tmp_path / "models"
    for rel, size in (("checkpoints/one.safetensors", 100), ("vae/shared.safetensors", 50),
                      ("checkpoints/two.safetensors", 10), ("diffusion_models/three.safetensors", 300),
                      ("loras/extra.safetensors", 7)):
        put(models, rel, size)
    calls: list[str] = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):
        calls.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(status_module.os, "stat", counting_stat)
    preset_status(catalog, models)
    files = [c for c in calls if c.endswith((".safetensors", ".part"))]
    assert len(files) == 5 and len(set(files)) == 5  # the shared VAE once
    folders = [c for c in calls if c not in files]
    assert len(folders) <= 4 * 5  # within() resolves each distinct folder once


def test_files_to_remove_keeps_shared_files(catalog, tmp_path: Path) -> None:
    models = tmp_path / "models"
    one = put(models, "checkpoints/one.safetensors", 100)
    shared = put(models, "vae/shared.safetensors", 50)
    extra = put(models, "loras/extra.safetensors", 7)
    part = put(models, "checkpoints/two.safetensors.part", 3)
    # TWO is installed (partly): the shared VAE stays
    assert sorted(files_to_remove(catalog, models, "one", ["ONE", "TWO"])) == sorted([one, extra])
    # nobody else needs it: it goes too
    assert sorted(files_to_remove(catalog, models, "ONE", ["ONE"])) == sorted([one, shared, extra])
    # a .part of the removed preset goes with it
    assert files_to_remove(catalog, models, "TWO", ["ONE"]) == [part]
    # unknown other ids are ignored
    assert sorted(files_to_remove(catalog, models, "ONE", ["GONE"])) == sorted([one, shared, extra])
