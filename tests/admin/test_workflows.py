"""admin/workflows.py against the fake ComfyUI: library, upload, parameters, run with live SSE
progress, queue with cancel, missing models offered as presets, install and the ComfyUI check."""

from __future__ import annotations

import io
import json
import time

import pytest

from tests.plugins.admin import login_client, make_admin_app

CATALOG = """\
metadata:
  version: 0.0.1
presets:
  SD15_TINY:
    name: SD 1.5 (tiny test copy)
    type: image
    description: The SD 1.5 checkpoint.
    files:
      - path: checkpoints/v1-5-pruned-emaonly-fp16.safetensors
        url: https://example.com/v1-5-pruned-emaonly-fp16.safetensors
        size: 64
  SD15_BUNDLE:
    name: SD 1.5 with extras
    type: image
    description: The checkpoint plus a LoRA.
    files:
      - path: checkpoints/v1-5-pruned-emaonly-fp16.safetensors
        url: https://example.com/v1-5-pruned-emaonly-fp16.safetensors
        size: 64
      - path: loras/extra.safetensors
        url: https://example.com/extra.safetensors
        size: 64
"""


@pytest.fixture
def comfy(fake_comfyui_factory):
    return fake_comfyui_factory(FAKE_COMFYUI_STEP_DELAY="0.05")


@pytest.fixture
def client(comfy):
    settings = comfy.settings
    settings.presets_file.parent.mkdir(parents=True, exist_ok=True)
    settings.presets_file.write_text(CATALOG)
    app = make_admin_app(settings)
    return login_client(app, settings.access_password.reveal())


def sse_events(response) -> list[tuple[str, dict]]:
    events = []
    for block in response.get_data(as_text=True).split("\n\n"):
        kind, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            events.append((kind, data))
    return events


def test_index_lists_examples_and_health(client):
    page = client.get("/workflows").get_data(as_text=True)
    assert "colour-card.json" in page and "sd15-txt2img.json" in page
    assert "answering" in page and "restarted by the health probe 0×" in page


def test_upload_then_open_shows_parameters(client, comfy):
    workflow = (comfy.settings.workspace.parent / "wf.json")
    data = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "up"}}}
    workflow.write_text(json.dumps(data))
    response = client.post("/workflows/upload", headers=client.csrf_headers,
                           data={"file": (io.BytesIO(workflow.read_bytes()), "my flow!.json")})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "my flow_.json" in response.get_data(as_text=True)
    assert (comfy.settings.workflows_dir / "my flow_.json").is_file()
    again = client.post("/workflows/upload", headers=client.csrf_headers,
                        data={"file": (io.BytesIO(workflow.read_bytes()), "my flow!.json")})
    assert "my flow_ (1).json" in again.get_data(as_text=True)
    page = client.get("/workflows/open?source=library&name=my flow_.json").get_data(as_text=True)
    assert 'name="p:1.width"' in page and 'name="p:2.filename_prefix"' in page
    assert "Every model file this workflow loads is installed" in page


def test_upload_refuses_non_workflows(client):
    response = client.post("/workflows/upload", headers=client.csrf_headers,
                           data={"file": (io.BytesIO(b'{"a": 1}'), "x.json")})
    assert response.status_code == 400
    assert "not a ComfyUI workflow" in response.get_data(as_text=True)


def test_run_streams_progress_to_100_and_the_image(client, comfy):
    response = client.post("/workflows/run", headers=client.csrf_headers,
                           data={"source": "example", "name": "colour-card.json", "p:1.width": "128",
                                 "p:4.filename_prefix": "admin/run"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    prompt_id = page.split('data-prompt-id="')[1].split('"')[0]
    events = sse_events(client.get(f"/workflows/runs/{prompt_id}/events"))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and events[-1][1]["status"] == "success" and events[-1][1]["percent"] == 100
    final = events[-1][1]
    assert [n["state"] for n in final["nodes"]] == ["done"] * 4
    image = final["outputs"]["4"]["images"][0]
    assert image["subfolder"] == "admin" and image["url"] == f"/gallery/item/admin/{image['filename']}"
    sent = comfy.prompts[-1]
    assert sent["prompt"]["1"]["inputs"]["width"] == 128
    assert sent["extra_data"]["client_id"] == f"comfypod-run-{prompt_id}"
    assert sent["extra_data"]["extra_pnginfo"]["workflow"]["nodes"]  # the UI workflow goes into the PNG
    assert (comfy.settings.output_dir / "admin" / image["filename"]).is_file()
    state = client.get(f"/api/workflows/runs/{prompt_id}").get_json()
    assert state["status"] == "success" and state["percent"] == 100


def test_missing_checkpoint_offers_the_smallest_preset_and_installs_it(client, comfy, monkeypatch):
    page = client.get("/workflows/open?source=example&name=sd15-txt2img.json").get_data(as_text=True)
    assert "checkpoints/v1-5-pruned-emaonly-fp16.safetensors" in page
    assert 'value="SD15_TINY" checked' in page  # the smallest preset that provides it is chosen
    assert 'value="SD15_BUNDLE" >' in page  # the other one is offered, not chosen
    queued = []
    monkeypatch.setattr("presets.install.enqueue_presets", lambda settings, ids: queued.extend(ids) or [7])
    response = client.post("/workflows/install", headers=client.csrf_headers,
                           data={"preset": "SD15_TINY", "source": "example", "name": "sd15-txt2img.json"})
    assert response.status_code == 200 and queued == ["SD15_TINY"]
    assert "Queued SD15_TINY (1 download job)" in response.get_data(as_text=True)
    check = client.post("/workflows/check-models", headers=client.csrf_headers, data={"preset": "SD15_TINY"})
    assert "not seen" in check.get_data(as_text=True)
    target = comfy.settings.models_dir / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors"
    target.write_bytes(b"\0" * 64)  # what the download would have written
    check = client.post("/workflows/check-models", headers=client.csrf_headers, data={"preset": "SD15_TINY"})
    assert "ComfyUI lists it in checkpoints" in check.get_data(as_text=True)
    again = client.get("/workflows/_missing?source=example&name=sd15-txt2img.json").get_data(as_text=True)
    assert "Every model file this workflow loads is installed" in again


def test_wrong_folder_is_caught_by_the_comfyui_check(client, comfy):
    (comfy.settings.models_dir / "loras" / "v1-5-pruned-emaonly-fp16.safetensors").write_bytes(b"\0")
    result = client.post("/api/workflows/check-models", headers=client.csrf_headers,
                         json={"paths": ["loras/v1-5-pruned-emaonly-fp16.safetensors",
                                         "checkpoints/v1-5-pruned-emaonly-fp16.safetensors",
                                         "weird/thing.safetensors"]}).get_json()
    assert [f["seen"] for f in result["files"]] == [True, False, False]
    assert "no model folder 'weird'" in result["files"][2]["reason"]


def test_rejected_run_lists_problems_and_presets(client):
    response = client.post("/workflows/run", headers=client.csrf_headers,
                           data={"source": "example", "name": "sd15-txt2img.json"})
    page = response.get_data(as_text=True)
    assert "ComfyUI refused the workflow" in page
    assert "ckpt_name &#39;v1-5-pruned-emaonly-fp16.safetensors&#39; is not installed" in page
    assert "SD15_TINY" in page


def test_queue_cancel_and_interrupt(client, comfy):
    (comfy.settings.models_dir / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors").write_bytes(b"\0" * 64)
    first = client.post("/api/workflows/run", headers=client.csrf_headers,
                        json={"source": "example", "name": "sd15-txt2img.json",
                              "parameters": {"3.steps": 200}}).get_json()
    second = client.post("/api/workflows/run", headers=client.csrf_headers,
                         json={"source": "example", "name": "colour-card.json"}).get_json()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        queue = client.get("/api/workflows/queue").get_json()
        if queue["running"] and queue["running"][0]["prompt_id"] == first["prompt_id"]:
            break
        time.sleep(0.1)
    assert [p["prompt_id"] for p in queue["pending"]] == [second["prompt_id"]]
    assert queue["running"][0]["title"] == "Stable Diffusion 1.5 text to image"
    fragment = client.get("/workflows/_queue").get_data(as_text=True)
    assert second["prompt_id"] in fragment and "Blurred colour card" in fragment
    assert "Removed from the queue" in client.post(f"/workflows/runs/{second['prompt_id']}/cancel",
                                                   headers=client.csrf_headers).get_data(as_text=True)
    assert client.post(f"/api/workflows/runs/{first['prompt_id']}/cancel",
                       headers=client.csrf_headers).get_json() == {"result": "interrupted"}
    events = sse_events(client.get(f"/api/workflows/runs/{first['prompt_id']}/events"))
    final = events[-1][1]
    assert final["status"] == "interrupted"
    sampler = next(n for n in final["nodes"] if n["node_id"] == "3")
    assert sampler["state"] == "interrupted"
    recent = client.get("/api/workflows/queue").get_json()["recent"]
    assert recent[0]["prompt_id"] == first["prompt_id"] and recent[0]["status"] == "interrupted"


def test_a_run_that_ended_between_the_queue_and_history_reads_is_shown_once(client, comfy, monkeypatch):
    from services.comfyui_client import ComfyUIClient, QueueItem, QueueState

    inline = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 5}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "once"}}}
    done = ComfyUIClient(comfy.url).run(inline, timeout=30)
    stale = QueueState(running=[QueueItem(1, done.prompt_id, inline, {}, ["2"])], pending=[])
    monkeypatch.setattr(ComfyUIClient, "queue", lambda self: stale)  # /queue read just before it ended
    queue = client.get("/api/workflows/queue").get_json()
    assert queue["running"] == [] and queue["recent"][0]["prompt_id"] == done.prompt_id


def test_api_inspect_run_inline_and_openapi(client, comfy, api_token_headers):
    info = client.get("/api/workflows/inspect?source=example&name=sd15-txt2img.json").get_json()
    assert info["format"] == "ui" and info["preset_ids"] == ["SD15_TINY"]
    assert {p["key"] for p in info["parameters"]} >= {"6.text", "3.seed", "3.steps", "5.width"}
    inline = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 3}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    run = client.post("/api/workflows/run", json={"workflow": inline}, headers=api_token_headers(client))
    assert run.status_code == 200 and run.get_json()["events"].endswith("/events")
    bad = client.post("/api/workflows/run", json={"source": "example", "name": "sd15-txt2img.json"},
                      headers=api_token_headers(client))
    assert bad.status_code == 400 and bad.get_json()["problems"][0].startswith('node 4 "Load Checkpoint"')
    spec = client.get("/api/openapi.json").get_json()
    assert "/api/workflows/run" in spec["paths"] and "/api/workflows/runs/{prompt_id}/events" in spec["paths"]


@pytest.fixture
def api_token_headers(comfy):
    from services import credentials

    def headers(_client):
        return {"Authorization": f"Bearer {credentials.api_token(comfy.settings).reveal()}"}

    return headers


def test_comfyui_down_is_explained(client, comfy):
    comfy.stop()
    page = client.get("/workflows/open?source=example&name=colour-card.json")
    assert page.status_code == 200
    assert "ComfyUI is not answering" in page.get_data(as_text=True)
    assert "not answering" in client.get("/workflows").get_data(as_text=True)
