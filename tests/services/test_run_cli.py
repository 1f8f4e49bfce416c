"""`comfypod run`: UI and API formats, --set, --wait with progress bars, errors in one line."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner
from PIL import Image

from services import run_cli
from services.cli import cli
from services.comfyui_client import PromptRejected
from services.errors import WorkflowError
from services.library import EXAMPLES_DIR

PROMPT = {
    "3": {"class_type": "KSampler", "_meta": {"title": "Sampler"}, "inputs": {"seed": 1}},
    "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "Positive"}, "inputs": {"text": "a"}},
    "7": {"class_type": "CLIPTextEncode", "_meta": {"title": "Negative"}, "inputs": {"text": "b"}},
}


def invoke(settings, *args: str):
    return CliRunner().invoke(cli, ["run", *args], obj={"settings": settings})


def test_find_node_by_id_title_or_unique_class():
    assert run_cli.find_node(PROMPT, "3") == "3"
    assert run_cli.find_node(PROMPT, "Positive") == "6"
    assert run_cli.find_node(PROMPT, "KSampler") == "3"
    with pytest.raises(WorkflowError, match="several nodes"):
        run_cli.find_node(PROMPT, "CLIPTextEncode")
    with pytest.raises(WorkflowError, match="no node 'Nope'"):
        run_cli.find_node(PROMPT, "Nope")


def test_parse_sets():
    assert run_cli.parse_sets(PROMPT, ["Sampler.seed=42", "Positive.text=a fox = red", "steps=30"]) == {
        "3.seed": "42", "6.text": "a fox = red", "steps": "30"}
    for bad in ("3.seed", "=4", ".seed=1", "3.=1"):
        with pytest.raises(WorkflowError):
            run_cli.parse_sets(PROMPT, [bad])


def test_ui_workflow_runs_with_progress_and_embeds_the_workflow(fake_comfyui):
    settings = fake_comfyui.settings
    result = invoke(settings, str(EXAMPLES_DIR / "colour-card.json"), "--wait", "--set", "Canvas.width=96")
    assert result.exit_code == 0, result.output
    found = re.search(r"finished prompt [0-9a-f-]+: 1 file\(s\)\n  (\S+)\n", result.output)
    assert found, result.output
    saved = found.group(1)
    assert saved.startswith(str(settings.output_dir / "examples" / "gradient_"))
    with Image.open(saved) as image:
        assert image.size == (96, 512)
        workflow = json.loads(image.text["workflow"])
        prompt = json.loads(image.text["prompt"])
    assert workflow == json.loads((EXAMPLES_DIR / "colour-card.json").read_text())
    assert prompt["1"]["inputs"]["width"] == 96
    assert "queued colour-card.json as prompt" in result.output
    assert "done" in result.output and "100%" in result.output


def test_api_workflow_with_meta_and_sampler_steps(fake_comfyui, reference, tmp_path):
    settings = fake_comfyui.settings
    (settings.models_dir / "checkpoints" / "v1-5-pruned-emaonly.ckpt").write_bytes(b"\0" * 32)
    path = tmp_path / "txt2img.json"
    shutil.copy(reference / "workflows" / "example_txt2img.json", path)
    result = invoke(settings, str(path), "--wait", "--set", "3.seed=42", "--set", "steps=5")
    assert result.exit_code == 0, result.output
    assert "steps #3" in result.output and "5/5" in result.output
    sent = fake_comfyui.prompts[-1]["prompt"]
    assert "_meta" not in sent and sent["3"]["inputs"]["seed"] == 42 and sent["3"]["inputs"]["steps"] == 5


def test_missing_model_is_one_line_and_exit_code(fake_comfyui):
    result = invoke(fake_comfyui.settings, str(EXAMPLES_DIR / "sd15-txt2img.json"), "--wait")
    assert isinstance(result.exception, PromptRejected) and result.exit_code != 0
    message = str(result.exception)
    assert message == ("ComfyUI refused the workflow: node 4 \"Load Checkpoint\" (CheckpointLoaderSimple): "
                       "ckpt_name 'v1-5-pruned-emaonly-fp16.safetensors' is not installed "
                       "(ComfyUI lists no files for it)")


def test_no_wait_only_queues(fake_comfyui):
    result = invoke(fake_comfyui.settings, str(EXAMPLES_DIR / "animated-webp.json"))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("queued animated-webp.json as prompt ")
    assert fake_comfyui.prompts[-1]["prompt"]["3"]["class_type"] == "SaveAnimatedWEBP"


def test_unreadable_files(fake_comfyui, tmp_path):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    assert "is not JSON" in str(invoke(fake_comfyui.settings, str(tmp_path / "bad.json")).exception)
    assert "not a ComfyUI workflow" in str(invoke(fake_comfyui.settings, str(tmp_path / "other.json")).exception)
    assert "no such workflow file" in str(invoke(fake_comfyui.settings, str(tmp_path / "none.json")).exception)
