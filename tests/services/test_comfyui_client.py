"""Contract tests of services.comfyui_client against the fake ComfyUI, and against a real ComfyUI
when COMFYUI_URL is set (model-free prompts only; fake-only checks are skipped there).

The expected shapes and message order come from the recording in shared/reference/comfyui-api/.
"""

from __future__ import annotations

import io
import json
import os
import random
import time
import uuid
from pathlib import Path

import pytest
import requests
import websocket
from PIL import Image

from services.comfyui_client import ComfyUIClient, Event, PromptRejected, decode_binary, describe_node_errors
from services.errors import ComfyUIError
from services.settings import load_settings
from tests.conftest import base_environ
from tests.plugins.comfyui import FakeComfyUI, start_fake_comfyui
from tests.support.ports import free_port

REAL_URL = os.environ.get("COMFYUI_URL", "").rstrip("/")


@pytest.fixture(scope="module")
def module_fake(tmp_path_factory, reference) -> FakeComfyUI:
    import tempfile

    workspace = tmp_path_factory.mktemp("ws")
    run_dir = Path(tempfile.mkdtemp(prefix="cp-"))
    settings = load_settings(base_environ(workspace, run_dir, COMFYUI_INTERNAL_PORT=str(free_port())))
    fake = start_fake_comfyui(settings, {"FAKE_COMFYUI_STEP_DELAY": "0.05"})
    yield fake
    fake.stop()


# The same contract runs against a real ComfyUI too when COMFYUI_URL is set (by hand: ComfyUI is
# not on PyPI, so CI has none); without it those cases are not collected at all.
@pytest.fixture(params=["fake", "real"] if REAL_URL else ["fake"])
def target(request, module_fake) -> tuple[str, FakeComfyUI | None]:
    """(base URL, the fake or None for a real ComfyUI)."""
    if request.param == "real":
        return REAL_URL, None
    return module_fake.url, module_fake


def transcript(reference: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (reference / "comfyui-api" / name).read_text().splitlines() if line.strip()]


def recorded_post(lines: list[dict]) -> dict:
    posts = [m for m in lines if m.get("_marker") == "client_http" and m["request"] == "POST /prompt"]
    return posts[0]["request_body"]


def shape(messages: list) -> list[tuple]:
    """Message types (plus node ids where they matter) of a transcript or of received events."""
    out = []
    for m in messages:
        if isinstance(m, Event):
            kind, data = m.type, m.data
            if kind == "preview":
                out.append(("binary",))
                continue
        elif "type" in m:
            kind, data = m["type"], m["data"]
        elif m.get("_marker") == "binary_frame":
            out.append(("binary",))
            continue
        else:
            continue
        if kind == "progress_state":
            out.append((kind, tuple(sorted((k, v["state"]) for k, v in data["nodes"].items()))))
        elif kind in ("executing", "executed", "progress"):
            out.append((kind, data.get("node")))
        elif kind == "status":
            out.append((kind, data["status"]["exec_info"]["queue_remaining"]))
        else:
            out.append((kind,))
    return out


def fresh(prompt: dict) -> dict:
    """The recorded prompt with a new colour, so neither server has it cached."""
    prompt = json.loads(json.dumps(prompt))
    prompt["1"]["inputs"]["color"] = random.randrange(0, 0xFFFFFF)
    return prompt


def test_run_follows_recorded_message_order(target, reference):
    base_url, _fake = target
    lines = transcript(reference, "ws-transcript.jsonl")
    client = ComfyUIClient(base_url)
    seen: list[Event] = []
    outcome = client.run(fresh(recorded_post(lines)["prompt"]), on_event=seen.append, timeout=60)
    assert outcome.status == "success"
    assert shape(seen) == shape(lines)
    assert {f["type"] for f in outcome.files()} == {"output", "temp"}
    final = seen[-1]
    assert final.type == "executing" and final.data == {"node": None, "prompt_id": outcome.prompt_id}
    starts = [e for e in seen if e.type in ("execution_start", "execution_cached", "execution_success")]
    assert all(isinstance(e.data["timestamp"], int) for e in starts)
    entry = client.history_entry(outcome.prompt_id)
    assert len(entry["prompt"]) == 5 and entry["prompt"][1] == outcome.prompt_id
    assert entry["prompt"][3] == {"client_id": client.client_id}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert set(entry["meta"]) == set(entry["outputs"]) == {"3", "5"}


def test_cached_resubmission_resends_old_outputs(target, reference):
    base_url, _fake = target
    prompt = fresh(recorded_post(transcript(reference, "ws-transcript.jsonl"))["prompt"])
    client = ComfyUIClient(base_url)
    first = client.run(prompt, timeout=60)
    seen: list[Event] = []
    second = client.run(prompt, on_event=seen.append, timeout=60)
    cached = next(e for e in seen if e.type == "execution_cached")
    assert sorted(cached.data["nodes"]) == ["1", "2", "3", "5"]
    executing = [e.data["node"] for e in seen if e.type == "executing"]
    assert executing == ["4", None]  # only the websocket saver runs again
    assert second.outputs == first.outputs  # the old file names come back
    assert shape(seen) == shape(transcript(reference, "ws-transcript-cached.jsonl"))


def test_modern_client_gets_type_4_previews(target, reference):
    base_url, _fake = target
    lines = transcript(reference, "ws-transcript-feature-flags.jsonl")
    client_id = str(uuid.uuid4())
    sock = websocket.create_connection(f"{base_url.replace('http', 'ws', 1)}/ws?clientId={client_id}", timeout=10)
    try:
        sock.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        client = ComfyUIClient(base_url, client_id=client_id)
        ticket = client.queue_prompt(fresh(recorded_post(lines)["prompt"]))
        received: list = []
        while True:
            opcode, payload = sock.recv_data()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                received.append(decode_binary(payload))
                continue
            message = json.loads(payload)
            received.append(Event(message["type"], message["data"]))
            if message["type"] == "executing" and message["data"]["node"] is None:
                break
    finally:
        sock.close()
    assert shape(received) == shape(lines)
    preview = next(e for e in received if e.type == "preview")
    assert preview.data["meta"]["prompt_id"] == ticket.prompt_id
    assert preview.data["meta"]["node_id"] == "4" and preview.data["meta"]["image_type"] == "image/png"
    assert preview.data["image"][:8] == b"\x89PNG\r\n\x1a\n"
    flags = next(e for e in received if e.type == "feature_flags")
    assert flags.data == {"supports_preview_metadata": True, "max_upload_size": 104857600}


def _comparable(body: dict) -> dict:
    """A 400 body without tracebacks, order of errors, and the model lists (they depend on disk)."""
    body = json.loads(json.dumps(body))
    for entry in body.get("node_errors", {}).values():
        for err in entry["errors"]:
            extra = err.get("extra_info", {})
            extra.pop("traceback", None)
            if err["type"] == "value_not_in_list":
                err["details"] = err["details"].split(" not in ")[0]
                extra.pop("input_config", None)
        entry["errors"].sort(key=lambda e: e["details"])
    return body


@pytest.mark.parametrize("case", [
    "invalid_missing_checkpoint_txt2img", "invalid_missing_checkpoint_minimal", "invalid_unknown_node_type",
    "invalid_no_output_node", "invalid_missing_required_input", "invalid_value_out_of_range",
    "invalid_value_wrong_type", "invalid_link_to_missing_node", "invalid_link_bad_output_index",
    "invalid_loadimage_missing_file", "invalid_missing_class_type",
    "reference_workflow_as_is:example_txt2img.json", "reference_workflow_meta_stripped:flux_schnell_basic.json",
    "reference_workflow_meta_stripped:wan_t2v_basic.json",
])
def test_prompt_rejections_match_recording(target, reference, case):
    base_url, _fake = target
    recorded = json.loads((reference / "comfyui-api" / "prompt-responses.json").read_text())[case]
    client = ComfyUIClient(base_url)
    with pytest.raises(PromptRejected) as caught:
        client.queue_prompt(recorded["request_body"]["prompt"])
    got = _comparable({"error": caught.value.error, "node_errors": caught.value.node_errors})
    assert got == _comparable(recorded["body"])
    assert str(caught.value).startswith("ComfyUI refused the workflow: ")
    assert "\n" not in str(caught.value)


def test_rejection_names_each_node_and_input_in_words(target, reference):
    base_url, _fake = target
    recorded = json.loads((reference / "comfyui-api" / "prompt-responses.json").read_text())
    body = recorded["invalid_missing_checkpoint_txt2img"]["request_body"]["prompt"]
    with pytest.raises(PromptRejected) as caught:
        ComfyUIClient(base_url).queue_prompt(body)
    problems = caught.value.problems
    assert any(p.startswith('node 4 "Load Checkpoint" (CheckpointLoaderSimple): ckpt_name') for p in problems)
    assert any("'v1-5-pruned-emaonly.ckpt' is not" in p for p in problems)
    assert any(p.startswith("node 3 (KSampler): seed = -1 is below the minimum (0)") for p in problems)
    assert caught.value.missing_values() == [{"node_id": "4", "class_type": "CheckpointLoaderSimple",
                                              "input": "ckpt_name", "value": "v1-5-pruned-emaonly.ckpt"}]


def test_describe_node_errors_without_node_errors():
    lines = describe_node_errors({"type": "invalid_prompt", "message": "Cannot execute because node X does not exist.",
                                  "details": "Node ID '#2'"}, {})
    assert lines == ["Cannot execute because node X does not exist. (Node ID '#2')"]


def test_rejection_sends_no_websocket_traffic(target):
    base_url, _fake = target
    client = ComfyUIClient(base_url)
    events = client.events(ticks=True)
    assert next(events).type == "status"
    with pytest.raises(PromptRejected):
        client.queue_prompt({"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1,
                                                                           "color": 0}},
                             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}})
    extra = [e for e in (next(events) for _ in range(2)) if e.type != "tick"]
    events.close()
    assert extra == []


def test_queue_front_delete_and_interrupt(target):
    base_url, fake = target
    # Slow nodes: the fake's FAKE_COMFYUI_NODE_DELAY, or on a real ComfyUI (CPU) a big blur (about 1 s).
    client = ComfyUIClient(FakeComfyUIFactory.slow(fake).url if fake else base_url)
    side, radius, sigma, colour = (64, 3, 1.0, 1) if fake else (1024, 31, 10.0, random.randrange(1 << 24))
    small = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 5}},
             "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "q"}}}
    chain = {"1": {"class_type": "EmptyImage", "inputs": {"width": side, "height": side, "batch_size": 1,
                                                          "color": colour}}}
    for i in range(10, 14):
        chain[str(i)] = {"class_type": "ImageBlur", "inputs": {"image": [str(i - 1) if i > 10 else "1", 0],
                                                               "blur_radius": radius, "sigma": sigma}}
    chain["99"] = {"class_type": "SaveImage", "inputs": {"images": ["13", 0], "filename_prefix": "chain"}}
    events = client.events(ticks=True)
    next(events)
    running = client.queue_prompt(chain)
    later = client.queue_prompt(small)
    first = client.queue_prompt(small | {"1": {**small["1"], "inputs": {**small["1"]["inputs"], "color": 6}}},
                                front=True)
    assert first.number < 0 < later.number
    deadline = time.monotonic() + 10
    while not client.queue().running and time.monotonic() < deadline:
        time.sleep(0.05)
    state = client.queue()
    assert [i.prompt_id for i in state.running] == [running.prompt_id]
    assert {i.prompt_id for i in state.pending} == {later.prompt_id, first.prompt_id}
    assert state.position(first.prompt_id) == 1 and state.position(later.prompt_id) == 2
    assert state.running[0].outputs == ["99"] and state.running[0].extra_data == {"client_id": client.client_id}
    client.delete_queued([later.prompt_id])
    assert client.cancel(later.prompt_id) == "absent"
    order: list[Event] = []
    for event in events:
        if event.type == "tick":
            continue
        order.append(event)
        if event.type == "executing" and event.data.get("node") == "11":
            assert client.cancel(running.prompt_id) == "interrupted"
        if event.type == "executing" and event.data.get("node") is None and event.prompt_id == first.prompt_id:
            break
    events.close()
    interrupted = next(e for e in order if e.type == "execution_interrupted")
    assert interrupted.data["node_id"] == "12"  # node 11 finished, then the check before 12 stopped it
    assert sorted(interrupted.data["executed"]) == ["1", "10", "11"]
    assert any(e.type == "execution_success" and e.prompt_id == first.prompt_id for e in order)
    assert client.history_entry(later.prompt_id) is None
    entry = client.history_entry(running.prompt_id)
    assert entry["status"] == {**entry["status"], "status_str": "error", "completed": False}


class FakeComfyUIFactory:
    """A second fake on the same workspace with a node delay (for queue and interrupt timing)."""

    _slow: dict[str, FakeComfyUI] = {}

    @classmethod
    def slow(cls, fake: FakeComfyUI) -> FakeComfyUI:
        if fake.url not in cls._slow or cls._slow[fake.url].process.poll() is not None:
            settings = fake.settings.with_changes(comfyui_internal_port=free_port())
            cls._slow[fake.url] = start_fake_comfyui(settings, {"FAKE_COMFYUI_NODE_DELAY": "0.3"})
        return cls._slow[fake.url]


@pytest.fixture(scope="module", autouse=True)
def _stop_slow_fakes():
    yield
    for fake in FakeComfyUIFactory._slow.values():
        fake.stop()
    FakeComfyUIFactory._slow.clear()


def test_sampler_interrupt_stops_between_steps(module_fake):
    (module_fake.settings.models_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (module_fake.settings.models_dir / "checkpoints" / "tiny.safetensors").write_bytes(b"\0" * 64)
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 200, "cfg": 7.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["6", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "interrupted"}},
    }
    client = ComfyUIClient(module_fake.url)
    steps: list[int] = []

    def on_event(event: Event) -> None:
        if event.type == "progress":
            steps.append(event.data["value"])
            if event.data["value"] == 3:
                client.interrupt()

    outcome = client.run(prompt, on_event=on_event, timeout=60)
    assert outcome.status == "interrupted"
    assert outcome.error["node_id"] == "3" and outcome.error["node_type"] == "KSampler"
    assert steps[:3] == [1, 2, 3] and max(steps) < 200
    progress = next(e for e in outcome.events if e.type == "progress")
    assert progress.data == {"value": 1, "max": 200, "prompt_id": outcome.prompt_id, "node": "3"}


def test_history_view_and_png_metadata(target):
    base_url, fake = target
    client = ComfyUIClient(base_url)
    workflow = {"nodes": [], "links": [], "extra": {"note": "embedded by the client"}}
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 2,
                                                           "color": random.randrange(1 << 24)}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "contract/meta"}}}
    outcome = client.run(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}}, timeout=60)
    files = outcome.files()
    assert len(files) == 2 and all(f["subfolder"] == "contract" and f["type"] == "output" for f in files)
    assert files[0]["filename"].startswith("meta_") and files[0]["filename"].endswith("_.png")
    data = client.view(files[0]["filename"], files[0]["subfolder"])
    image = Image.open(io.BytesIO(data))
    assert image.size == (16, 8)
    assert json.loads(image.text["prompt"]) == prompt
    assert json.loads(image.text["workflow"]) == workflow
    response = requests.get(client.view_url(files[0]["filename"], "contract"), timeout=10)
    assert response.headers["Content-Disposition"] == f'filename="{files[0]["filename"]}"'
    assert response.headers["Content-Type"] == "image/png" and "Etag" in response.headers
    with pytest.raises(ComfyUIError, match="no output file"):
        client.view("no_such_file.png")
    assert requests.get(base_url + "/view", params={"filename": "../secret.png"}, timeout=5).status_code == 400
    assert requests.get(base_url + "/api/view", params={"filename": files[0]["filename"], "subfolder": "contract"},
                        timeout=5).content == data
    assert client.history("does-not-exist") == {}
    assert outcome.prompt_id in client.history(max_items=1)


def test_upload_renames_different_content(target):
    base_url, _fake = target
    client = ComfyUIClient(base_url)
    name = f"contract-{uuid.uuid4().hex[:8]}.png"

    def png(color: str) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), color).save(buffer, "PNG")
        return buffer.getvalue()

    assert client.upload_image(png("red"), name) == {"name": name, "subfolder": "", "type": "input"}
    assert client.upload_image(png("red"), name)["name"] == name  # same bytes: same name
    renamed = client.upload_image(png("blue"), name)["name"]
    assert renamed == name.replace(".png", " (1).png")
    assert client.upload_image(png("green"), name, overwrite=True)["name"] == name
    assert client.upload_image(png("red"), "sub.png", subfolder="contract")["subfolder"] == "contract"
    choices = client.object_info("LoadImage")["LoadImage"]["input"]["required"]["image"][0]
    assert name in choices and renamed in choices
    assert requests.post(base_url + "/upload/image", timeout=5).status_code == 400


def test_object_info_models_and_stats(target):
    base_url, fake = target
    client = ComfyUIClient(base_url)
    assert client.object_info("NoSuchNode") == {}
    assert "KSampler" in client.object_info()
    assert "checkpoints" in client.model_folders()
    with pytest.raises(ComfyUIError, match="no model folder"):
        client.models("no_such_folder")
    stats = client.system_stats()
    assert {"os", "comfyui_version", "argv"} <= set(stats["system"]) and isinstance(stats["devices"], list)
    if fake is None:
        return
    models = fake.settings.models_dir
    (models / "checkpoints" / "sd15").mkdir(parents=True, exist_ok=True)
    (models / "checkpoints" / "sd15" / "nested.ckpt").write_bytes(b"x")
    (models / "checkpoints" / "dummy.safetensors").write_bytes(b"x")
    (models / "checkpoints" / "notes.txt").write_text("not a model")
    (models / "unet").mkdir(exist_ok=True)
    (models / "unet" / "flux.safetensors").write_bytes(b"x")
    listed = client.models("checkpoints")
    assert "dummy.safetensors" in listed and "sd15/nested.ckpt" in listed and "notes.txt" not in listed
    assert listed == sorted(listed)
    assert "flux.safetensors" in client.models("diffusion_models")
    info = client.object_info("CheckpointLoaderSimple")["CheckpointLoaderSimple"]
    assert info["input"]["required"]["ckpt_name"][0] == listed
    assert client.object_info("VAELoader")["VAELoader"]["input"]["required"]["vae_name"][0][-1] == "pixel_space"


def test_events_reconnect_after_restart(fake_comfyui):
    client = ComfyUIClient(fake_comfyui.url)
    events = client.events(ticks=True, reconnect_for=30)
    assert next(events).type == "status"
    fake_comfyui.stop()
    port = int(fake_comfyui.url.rsplit(":", 1)[1])
    restarted = start_fake_comfyui(fake_comfyui.settings, port=port)
    try:
        kinds = []
        for event in events:
            kinds.append(event.type)
            if event.type == "status":
                break
        assert "reconnected" in kinds
        assert client.run({"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                                          "color": 9}},
                           "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}},
                          timeout=30).status == "success"
    finally:
        events.close()
        restarted.stop()


def test_unreachable_comfyui_is_one_line():
    client = ComfyUIClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ComfyUIError, match="not answering") as caught:
        client.queue()
    assert "\n" not in str(caught.value)
    assert client.is_up() is False
