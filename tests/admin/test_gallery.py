"""admin/gallery.py: grid with paging, item page with embedded prompt/workflow, thumbnails,
download, delete, many files as one streamed ZIP, run again, and path traversal refused."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

PROMPT = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
          "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
          "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "again"}}}


@pytest.fixture
def outputs_dir(settings):
    root = settings.output_dir
    root.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    Image.new("RGB", (300, 200), "teal").save(root / "ComfyUI_00001_.png", pnginfo=info)
    (root / "video").mkdir()
    (root / "video" / "clip_00001_.mp4").write_bytes(b"\0\0\0\x18ftypmp42" + b"\0" * 64)
    for i in range(60):
        Image.new("RGB", (16, 16), (i, 0, 0)).save(root / f"batch_{i:05}_.png")
        os.utime(root / f"batch_{i:05}_.png", (1_600_000_000 + i, 1_600_000_000 + i))
    return root


def test_grid_pages_and_filters(admin_client, outputs_dir):
    page = admin_client.get("/gallery").get_data(as_text=True)
    assert "62 files in workspace/output" in page
    assert page.count('class="tile"') == 48 and "page 1 of 2" in page
    assert 'src="/gallery/thumb/ComfyUI_00001_.png"' in page
    second = admin_client.get("/gallery?page=2").get_data(as_text=True)
    assert second.count('class="tile"') == 14
    video = admin_client.get("/gallery?kind=video").get_data(as_text=True)
    assert video.count('class="tile"') == 1 and "video/clip_00001_.mp4" in video
    listing = admin_client.get("/api/gallery?per_page=5&kind=image").get_json()
    assert listing["total"] == 61 and len(listing["items"]) == 5 and listing["pages"] == 13


def test_item_page_shows_prompt_and_run_again(admin_client, outputs_dir):
    page = admin_client.get("/gallery/item/ComfyUI_00001_.png").get_data(as_text=True)
    assert "a lighthouse at dusk" in page and "Prompt (API format, 3 nodes)" in page
    assert "/workflows/open?source=output&amp;name=ComfyUI_00001_.png" in page
    item = admin_client.get("/api/gallery/items/ComfyUI_00001_.png").get_json()
    assert item["prompt"] == PROMPT and item["workflow"] is None and item["can_run_again"] is True
    video = admin_client.get("/gallery/item/video/clip_00001_.mp4").get_data(as_text=True)
    assert "<video controls" in video and "Run again" not in video


def test_thumbnail_file_and_download(admin_client, outputs_dir):
    thumb = admin_client.get("/gallery/thumb/ComfyUI_00001_.png")
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp"
    with Image.open(io.BytesIO(thumb.data)) as image:
        assert max(image.size) <= 320
    icon = admin_client.get("/gallery/thumb/video/clip_00001_.mp4")
    assert icon.mimetype == "image/svg+xml"
    raw = admin_client.get("/gallery/file/ComfyUI_00001_.png")
    assert raw.data == (outputs_dir / "ComfyUI_00001_.png").read_bytes()
    raw.close()
    download = admin_client.get("/gallery/file/ComfyUI_00001_.png?download=1")
    assert "attachment" in download.headers["Content-Disposition"]
    download.close()
    thumb.close()


@pytest.mark.parametrize("rel", ["../config/presets.yaml", "..%2Fconfig%2Fpresets.yaml", "nope.png"])
def test_paths_outside_output_are_refused(admin_client, outputs_dir, rel):
    assert admin_client.get(f"/gallery/file/{rel}").status_code in (400, 404)
    assert admin_client.get(f"/api/gallery/items/{rel}").status_code in (400, 404)


def test_zip_of_selected_files_streams(admin_client, outputs_dir):
    response = admin_client.post("/gallery/zip", data={"path": ["ComfyUI_00001_.png", "video/clip_00001_.mp4"],
                                                       "csrf_token": admin_client.csrf_token})
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert response.is_streamed
    assert 'filename="comfypod-outputs.zip"' in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.namelist() == ["ComfyUI_00001_.png", "video/clip_00001_.mp4"]
    refused = admin_client.post("/gallery/zip", data={"path": ["../config/presets.yaml"],
                                                      "csrf_token": admin_client.csrf_token})
    assert refused.status_code == 400
    nothing = admin_client.post("/gallery/zip", data={"csrf_token": admin_client.csrf_token})
    assert nothing.status_code == 400


def test_delete_selected_and_api_delete(admin_client, outputs_dir):
    response = admin_client.post("/gallery/delete", headers=admin_client.csrf_headers,
                                 data={"path": ["batch_00000_.png", "batch_00001_.png"]})
    assert "Deleted 2 files." in response.get_data(as_text=True)
    assert not (outputs_dir / "batch_00000_.png").exists()
    deleted = admin_client.delete("/api/gallery/items/video/clip_00001_.mp4", headers=admin_client.csrf_headers)
    assert deleted.get_json() == {"deleted": ["video/clip_00001_.mp4"]}


def test_run_again_opens_the_embedded_prompt(outputs_dir, fake_comfyui):
    from tests.plugins.admin import login_client, make_admin_app

    settings = fake_comfyui.settings
    client = login_client(make_admin_app(settings), settings.access_password.reveal())
    page = client.get("/workflows/open?source=output&name=ComfyUI_00001_.png").get_data(as_text=True)
    assert "again: ComfyUI_00001_.png" in page and 'name="p:6.text"' in page
    response = client.post("/workflows/run", headers=client.csrf_headers,
                           data={"source": "output", "name": "ComfyUI_00001_.png", "p:1.width": "16"})
    assert response.status_code == 200 and "data-run-events" in response.get_data(as_text=True)
    assert fake_comfyui.prompts[-1]["prompt"]["1"]["inputs"]["width"] == 16


def test_requires_login(anon_client, outputs_dir):
    assert anon_client.get("/gallery").status_code in (302, 401)
    assert anon_client.get("/gallery/file/ComfyUI_00001_.png").status_code in (302, 401)
