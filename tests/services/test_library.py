"""services.library: the user's workflows, bundled examples, outputs as a source, upload rules."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from services import library
from services.errors import PathError, WorkflowError
from services.paths import ensure_workspace

API = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
       "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
       "_meta": {"title": "Tiny API flow"}}


@pytest.fixture
def ws(settings):
    ensure_workspace(settings.workspace)
    return settings


def test_examples_are_listed_and_load(ws):
    entries = library.list_workflows(ws)
    examples = {e.name: e for e in entries if e.source == "example"}
    assert set(examples) >= {"colour-card.json", "animated-webp.json", "sd15-txt2img.json"}
    assert examples["sd15-txt2img.json"].title == "Stable Diffusion 1.5 text to image"
    assert all(e.format == "ui" for e in examples.values())
    loaded = library.load(ws, "example", "colour-card.json")
    assert loaded.format == "ui" and loaded.ui is loaded.data


def test_user_workflows_first_newest_first_with_subfolders(ws):
    (ws.workflows_dir / "team").mkdir()
    (ws.workflows_dir / "old.json").write_text(json.dumps(API))
    (ws.workflows_dir / "team" / "new.json").write_text(json.dumps(API))
    (ws.workflows_dir / "broken.json").write_text("{nope")
    (ws.workflows_dir / "notes.txt").write_text("x")
    os.utime(ws.workflows_dir / "old.json", (1_600_000_000, 1_600_000_000))
    entries = library.list_workflows(ws)
    assert [(e.source, e.name) for e in entries[:2]] == [("library", "team/new.json"), ("library", "old.json")]
    assert entries[0].title == "Tiny API flow" and entries[0].format == "api"
    assert "broken.json" not in [e.name for e in entries]


def test_save_checks_names_and_renames(ws):
    raw = json.dumps(API).encode()
    assert library.save(ws, "../../etc/My Flow!.json", raw).name == "My Flow_.json"
    assert library.save(ws, "My Flow!.json", raw).name == "My Flow_ (1).json"
    assert library.save(ws, "My Flow!.json", raw, overwrite=True).name == "My Flow_.json"
    assert library.save(ws, "plain", raw).name == "plain.json"
    with pytest.raises(WorkflowError, match="not a ComfyUI workflow"):
        library.save(ws, "x.json", b'{"a": 1}')
    with pytest.raises(WorkflowError, match="not JSON"):
        library.save(ws, "x.json", b"\xff\xfe")


@pytest.mark.parametrize("name", ["../config/presets.yaml", "/etc/passwd", "missing.json"])
def test_load_refuses_escapes_and_missing(ws, name):
    with pytest.raises((PathError, WorkflowError)):
        library.load(ws, "library", name)


def test_unknown_source(ws):
    with pytest.raises(WorkflowError, match="unknown workflow source"):
        library.load(ws, "web", "x.json")


def test_output_png_is_a_source(ws):
    info = PngInfo()
    info.add_text("prompt", json.dumps({k: v for k, v in API.items() if k != "_meta"}))
    Image.new("RGB", (4, 4)).save(ws.output_dir / "a.png", pnginfo=info)
    loaded = library.load(ws, "output", "a.png")
    assert loaded.format == "api" and loaded.data["2"]["class_type"] == "SaveImage"
    Image.new("RGB", (4, 4)).save(ws.output_dir / "plain.png")
    with pytest.raises(WorkflowError, match="holds no workflow"):
        library.load(ws, "output", "plain.png")


def test_delete(ws):
    library.save(ws, "gone.json", json.dumps(API).encode())
    library.delete(ws, "gone.json")
    assert not (ws.workflows_dir / "gone.json").exists()
    with pytest.raises(PathError):
        library.delete(ws, "gone.json")
