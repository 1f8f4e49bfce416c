"""services.run_watch: a viewer that connects late still follows a run to its end."""

from __future__ import annotations

import time

from services.comfyui_client import ComfyUIClient, RunOutcome
from services.run_watch import run_client_id, snapshot, watch


def sampler_prompt(steps: int) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["6", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "watch"}},
        "99": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    }


def queue(fake, steps: int) -> str:
    (fake.settings.models_dir / "checkpoints" / "tiny.safetensors").write_bytes(b"\0" * 8)
    client = ComfyUIClient(fake.url)
    ticket = client.queue_prompt(sampler_prompt(steps), prompt_id=None)
    return ticket.prompt_id


def test_late_viewer_catches_up_and_sees_100(fake_comfyui_factory):
    fake = fake_comfyui_factory(FAKE_COMFYUI_STEP_DELAY="0.05")
    (fake.settings.models_dir / "checkpoints" / "tiny.safetensors").write_bytes(b"\0" * 8)
    client = ComfyUIClient(fake.url)
    import uuid

    prompt_id = str(uuid.uuid4())
    client.queue_prompt(sampler_prompt(30), prompt_id=prompt_id, client_id=run_client_id(prompt_id))
    time.sleep(0.6)  # the viewer arrives while the sampler runs
    states = [s for s in watch(fake.url, prompt_id) if s is not None]
    assert states[0]["status"] == "running"
    assert [n["node_id"] for n in states[0]["nodes"]] == ["4", "5", "6", "3", "8", "9"]  # node 99 never runs
    percents = [s["percent"] for s in states]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(0 < p < 100 for p in percents)
    final = states[-1]
    assert final["status"] == "success" and final["outputs"]["9"]["images"][0]["filename"].startswith("watch_")
    assert all(n["state"] == "done" for n in final["nodes"])


def test_finished_and_unknown_prompts(fake_comfyui):
    client = ComfyUIClient(fake_comfyui.url)
    outcome = client.run({"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                                       "color": 2}},
                          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "w"}}},
                         timeout=30)
    states = [s for s in watch(fake_comfyui.url, outcome.prompt_id) if s is not None]
    assert len(states) == 1 and states[0]["status"] == "success" and states[0]["percent"] == 100
    unknown = [s for s in watch(fake_comfyui.url, "no-such-prompt") if s is not None]
    assert unknown[0]["status"] == "unknown" and "knows no such prompt" in unknown[0]["error"]
    assert snapshot(client, "no-such-prompt") is None


class _FinishesBetweenReads(ComfyUIClient):
    """The prompt ends right after the first /history read: it is then in neither list we read."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.history_reads = 0

    def history_entry(self, prompt_id: str):
        self.history_reads += 1
        return {} if self.history_reads == 1 else super().history_entry(prompt_id)


def test_a_prompt_that_finishes_between_the_two_reads_is_not_unknown(fake_comfyui):
    done = ComfyUIClient(fake_comfyui.url).run(
        {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 4}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "race"}}}, timeout=30)
    racing = _FinishesBetweenReads(fake_comfyui.url)
    progress = snapshot(racing, done.prompt_id)
    assert progress is not None and progress.status == "success" and racing.history_reads == 2
    # the same race after a reconnect of ComfyUIClient.run(): not "ComfyUI restarted and lost prompt"
    racing = _FinishesBetweenReads(fake_comfyui.url)
    settled = racing._settle_after_reconnect(done.prompt_id, RunOutcome(done.prompt_id, "running"))
    assert settled is not None and settled.status == "success"


def test_queued_prompt_reports_its_position(fake_comfyui_factory):
    fake = fake_comfyui_factory(FAKE_COMFYUI_STEP_DELAY="0.05")
    first = queue(fake, 40)
    second = queue(fake, 2)
    client = ComfyUIClient(fake.url)
    deadline = time.monotonic() + 10  # until the first one runs (it waits for a CPU under load)
    while snapshot(client, first).status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert snapshot(client, second).status == "queued" and snapshot(client, second).queue_position == 1
    client.interrupt(first)
    states = [s for s in watch(fake.url, second) if s is not None]
    assert states[-1]["status"] == "success"


def test_viewer_made_deaf_by_an_older_socket_closing_keeps_following(fake_comfyui_factory):
    """ComfyUI (and the fake) forget a clientId when its older socket closes after a newer one opened."""
    import uuid

    import websocket

    fake = fake_comfyui_factory(FAKE_COMFYUI_STEP_DELAY="0.05")
    (fake.settings.models_dir / "checkpoints" / "tiny.safetensors").write_bytes(b"\0" * 8)
    prompt_id = str(uuid.uuid4())
    older = websocket.create_connection(f"{fake.ws_url}?clientId={run_client_id(prompt_id)}", timeout=5)
    try:
        ComfyUIClient(fake.url).queue_prompt(sampler_prompt(60), prompt_id=prompt_id,
                                             client_id=run_client_id(prompt_id))
        viewer = watch(fake.url, prompt_id, idle_poll=0.3)
        first = next(s for s in viewer if s is not None)  # the viewer's socket now holds the clientId
        assert first["status"] == "running"
    finally:
        older.close()  # and now ComfyUI forgets it
    states = [s for s in viewer if s is not None]
    live = [s["percent"] for s in states if s["status"] == "running"]
    assert len(live) >= 3 and live[-1] > first["percent"]  # progress kept coming, not only the final poll
    assert states[-1]["status"] == "success" and states[-1]["percent"] == 100
