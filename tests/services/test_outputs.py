"""services.outputs: the gallery index, thumbnails, embedded prompt/workflow, delete, streamed ZIP."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from services import outputs
from services.errors import PathError
from services.paths import ensure_workspace

PROMPT = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
          "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}}}
WORKFLOW = {"nodes": [{"id": 9, "type": "SaveImage"}], "links": []}


@pytest.fixture
def out(settings):
    ensure_workspace(settings.workspace)
    root = settings.output_dir
    info = PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    info.add_text("workflow", json.dumps(WORKFLOW))
    Image.new("RGB", (640, 480), "navy").save(root / "ComfyUI_00001_.png", pnginfo=info)
    (root / "video").mkdir()
    (root / "video" / "clip_00001_.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 100)
    (root / "audio").mkdir()
    (root / "audio" / "song_00001_.flac").write_bytes(b"fLaC" + b"\0" * 50)
    Image.new("RGBA", (32, 32), (255, 0, 0, 128)).save(root / "plain.webp")
    (root / "notes.txt").write_text("not an output")
    (root / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(root / ".hidden" / "skip.png")
    for i, name in enumerate(["ComfyUI_00001_.png", "video/clip_00001_.mp4", "audio/song_00001_.flac", "plain.webp"]):
        os.utime(root / name, (1_700_000_000 + i, 1_700_000_000 + i))
    return settings


def test_scan_lists_media_newest_first(out):
    items = outputs.scan(out.output_dir)
    assert [(i.rel, i.kind) for i in items] == [
        ("plain.webp", "image"), ("audio/song_00001_.flac", "audio"), ("video/clip_00001_.mp4", "video"),
        ("ComfyUI_00001_.png", "image")]
    assert items[1].subfolder == "audio" and items[1].name == "song_00001_.flac"


def test_paging_and_kind_filter(out):
    first = outputs.page(out, 1, per_page=3)
    assert (first.total, first.pages, len(first.items)) == (4, 2, 3)
    second = outputs.page(out, 2, per_page=3)
    assert [i.rel for i in second.items] == ["ComfyUI_00001_.png"]
    assert outputs.page(out, 99, per_page=3).page == 2  # clamped
    assert [i.rel for i in outputs.page(out, kind="video").items] == ["video/clip_00001_.mp4"]
    assert outputs.page(out).to_dict()["items"][0]["path"] == "plain.webp"


def test_thumbnail_is_cached_and_small(out):
    thumb = outputs.thumbnail(out, "ComfyUI_00001_.png")
    assert thumb.parent == out.workspace / ".cache" / "thumbnails"
    with Image.open(thumb) as image:
        assert image.format == "WEBP" and max(image.size) == outputs.THUMB_SIZE
    mtime = thumb.stat().st_mtime_ns
    assert outputs.thumbnail(out, "ComfyUI_00001_.png") == thumb and thumb.stat().st_mtime_ns == mtime
    assert outputs.thumbnail(out, "plain.webp").is_file()  # RGBA works too
    assert outputs.thumbnail(out, "video/clip_00001_.mp4") is None


def test_changed_file_gets_a_new_thumbnail(out):
    first = outputs.thumbnail(out, "ComfyUI_00001_.png")
    Image.new("RGB", (100, 50), "red").save(out.output_dir / "ComfyUI_00001_.png")
    os.utime(out.output_dir / "ComfyUI_00001_.png", (1_800_000_000, 1_800_000_000))
    assert outputs.thumbnail(out, "ComfyUI_00001_.png") != first


def test_embedded_prompt_and_workflow(out):
    found = outputs.embedded(out, "ComfyUI_00001_.png")
    assert found == {"prompt": PROMPT, "workflow": WORKFLOW}
    assert outputs.prompt_text(found["prompt"]) == ["a lighthouse at dusk"]
    assert outputs.embedded(out, "plain.webp") == {"prompt": None, "workflow": None}
    assert outputs.embedded(out, "video/clip_00001_.mp4") == {"prompt": None, "workflow": None}


@pytest.mark.parametrize("rel", ["../config/presets.yaml", "/etc/passwd", "nope.png", "video"])
def test_paths_outside_output_or_missing_are_refused(out, rel):
    with pytest.raises(PathError):
        outputs.resolve(out, rel)


def test_item_refuses_non_media(out):
    with pytest.raises(PathError, match="not an image"):
        outputs.item(out, "notes.txt")


def test_delete(out):
    assert outputs.delete(out, ["plain.webp", "video/clip_00001_.mp4"]) == ["plain.webp", "video/clip_00001_.mp4"]
    assert [i.rel for i in outputs.scan(out.output_dir)] == ["audio/song_00001_.flac", "ComfyUI_00001_.png"]


def test_zip_stream_is_a_valid_archive_made_in_chunks(out):
    big = os.urandom(3 * 1024 * 1024)
    (out.output_dir / "video" / "big_00001_.mp4").write_bytes(big)
    rels = ["ComfyUI_00001_.png", "video/big_00001_.mp4", "audio/song_00001_.flac"]
    chunks = list(outputs.zip_stream(out, rels, chunk_size=256 * 1024))
    assert len(chunks) > 5  # sent as it is made, not built in memory first
    assert max(len(c) for c in chunks) < 1024 * 1024
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == rels
        assert archive.read("video/big_00001_.mp4") == big
    assert not list(out.workspace.rglob("*.zip"))  # no temporary file


def test_zip_refuses_a_bad_path_before_the_first_byte(out):
    stream = outputs.zip_stream(out, ["ComfyUI_00001_.png", "../config/presets.yaml"])
    with pytest.raises(PathError):
        next(stream)
