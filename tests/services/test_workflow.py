"""services.workflow: UI -> API conversion against prompts made by ComfyUI's own frontend, the
inputs a user changes, and the models a workflow loads.

The pairs under tests/fixtures/workflows/ (copied from the shared reference set, with a trimmed
/object_info) keep the core rules tested without shared/; with shared/ every reference pair runs.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.errors import WorkflowError
from services.workflow import (
    MissingNodesError,
    ModelRef,
    apply_parameters,
    as_api,
    dynamic_prompt,
    embedded_models,
    is_api_format,
    is_ui_format,
    missing_models,
    missing_node_types,
    parameters,
    required_models,
    strip_meta,
    to_api,
)
from tests.conftest import REFERENCE

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "workflows"
PAIRS_DIR = REFERENCE / "workflows" / "pairs"
REFERENCE_INPUTS = sorted(PAIRS_DIR.glob("*.ui.json")) + sorted(PAIRS_DIR.glob("*.workflow.json"))
LOCAL_INPUTS = sorted(FIXTURES.glob("*.ui.json"))


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def expected_for(path: Path) -> dict[str, Any]:
    return load(path.with_name(path.name.rsplit(".", 2)[0] + ".api.json"))


def assert_same_prompt(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal as dicts, and equal as JSON text: same key order everywhere, 8 not 8.0."""
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)


@pytest.fixture(scope="session")
def local_info() -> dict[str, Any]:
    return load(FIXTURES / "object_info.json")


@pytest.fixture(scope="session")
def object_info(reference: Path) -> dict[str, Any]:
    return load(reference / "comfyui-api" / "object_info.json")


def convert(workflow: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    return to_api(workflow, info, rng=random.Random(0), now=datetime(2025, 1, 2, 3, 4, 5))


# -------------------------------------------------------------------------------------------
# conversion: the frontend's own output
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LOCAL_INPUTS, ids=lambda p: p.name)
def test_local_pairs_convert_exactly(path: Path, local_info: dict[str, Any]) -> None:
    assert_same_prompt(convert(load(path), local_info), expected_for(path))


@pytest.mark.parametrize("path", REFERENCE_INPUTS or [None], ids=lambda p: p.name if p else "none")
def test_reference_pairs_convert_exactly(path: Path | None, object_info: dict[str, Any]) -> None:
    assert path is not None, f"no reference pairs in {PAIRS_DIR} (set COMFYPOD_SHARED to the shared folder)"
    assert_same_prompt(convert(load(path), object_info), expected_for(path))


def test_reference_set_is_complete(reference: Path) -> None:
    assert len(list(PAIRS_DIR.glob("*.ui.json"))) == 43
    assert len(list(PAIRS_DIR.glob("*.api.json"))) == 43


def test_conversion_does_not_change_its_input(local_info: dict[str, Any]) -> None:
    workflow = load(FIXTURES / "tpl-sdxl_simple_example.ui.json")
    before = copy.deepcopy(workflow)
    convert(workflow, local_info)
    assert workflow == before


# -------------------------------------------------------------------------------------------
# conversion: single rules on small graphs
# -------------------------------------------------------------------------------------------


def graph(*nodes: dict[str, Any], links: list[list[Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"nodes": list(nodes), "links": links or [], **extra}


def node(node_id: int, kind: str, values: Any = None, inputs: Any = None, outputs: Any = None, **extra: Any) -> dict:
    data: dict[str, Any] = {"id": node_id, "type": kind, "mode": 0, "inputs": inputs or [], "outputs": outputs or []}
    if values is not None:
        data["widgets_values"] = values
    data.update(extra)
    return data


def out(name: str, kind: str, links: list[int]) -> dict[str, Any]:
    return {"name": name, "type": kind, "links": links}


def inp(name: str, kind: str, link: int | None, widget: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "type": kind, "link": link}
    if widget:
        data["widget"] = {"name": widget}
    return data


IMAGE_CHAIN = graph(
    node(1, "EmptyImage", [64, 64, 1, 0], outputs=[out("IMAGE", "IMAGE", [1])]),
    node(2, "ImageInvert", inputs=[inp("image", "IMAGE", 1)], outputs=[out("IMAGE", "IMAGE", [2])]),
    node(3, "SaveImage", ["x"], inputs=[inp("images", "IMAGE", 2)]),
    links=[[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
)


def test_basic_chain_and_default_titles(local_info: dict[str, Any]) -> None:
    api = convert(IMAGE_CHAIN, local_info)
    assert api == {
        "1": {
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
            "class_type": "EmptyImage",
            "_meta": {"title": "EmptyImage"},
        },
        "2": {"inputs": {"image": ["1", 0]}, "class_type": "ImageInvert", "_meta": {"title": "Invert Image"}},
        "3": {
            "inputs": {"filename_prefix": "x", "images": ["2", 0]},
            "class_type": "SaveImage",
            "_meta": {"title": "Save Image"},
        },
    }


def test_bypassed_middle_node_is_skipped(local_info: dict[str, Any]) -> None:
    workflow = copy.deepcopy(IMAGE_CHAIN)
    workflow["nodes"][1]["mode"] = 4
    api = convert(workflow, local_info)
    assert list(api) == ["1", "3"]
    assert api["3"]["inputs"]["images"] == ["1", 0]


def test_muted_source_drops_the_link_everywhere(local_info: dict[str, Any]) -> None:
    workflow = copy.deepcopy(IMAGE_CHAIN)
    workflow["nodes"][0]["mode"] = 2
    api = convert(workflow, local_info)
    assert list(api) == ["2", "3"]
    assert api["2"]["inputs"] == {}


def test_short_widgets_values_take_defaults_and_floats_become_ints(local_info: dict[str, Any]) -> None:
    workflow = graph(node(5, "KSampler", [7, "fixed", 20.0, 8.0]))
    inputs = convert(workflow, local_info)["5"]["inputs"]
    assert inputs == {"seed": 7, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "simple", "denoise": 1}
    assert json.dumps(inputs).count(".0") == 0


def test_load_time_fixes(local_info: dict[str, Any]) -> None:
    workflow = graph(
        node(1, "KSampler", [1, True, 20, 8, "sample_euler", "normal", 1]),
        node(2, "T2IAdapterLoader", ["t2i.safetensors"]),
    )
    api = convert(workflow, local_info)
    assert api["1"]["inputs"]["sampler_name"] == "euler"
    assert api["2"]["class_type"] == "ControlNetLoader"


def test_upload_value_after_load_image_is_not_sent(local_info: dict[str, Any]) -> None:
    workflow = graph(node(1, "LoadImage", ["cat.png", "image"]))
    assert convert(workflow, local_info)["1"]["inputs"] == {"image": "cat.png"}


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        ("LoadImage", ["cat.png", "image"], {"image": "cat.png"}),
        ("LoadImage", [""], {"image": "example.png"}),
        ("LoadImageOutput", ["a.png", False, "refresh", "image"], {"image": "a.png [output]", "refresh": "refresh"}),
        ("LoadImageOutput", ["b.png [temp]"], {"image": "b.png [temp]", "refresh": "refresh"}),
        ("CLIPTextEncode", ["one\r\ntwo\rthree"], {"text": "one\ntwo\nthree"}),
        ("CLIPTextEncode", [12], {"text": "12"}),
        ("Preview3D", ["model.glb", ""], {"model_file": "model.glb", "image": ""}),
    ],
)
def test_frontend_widget_quirks(kind: str, values: list[Any], expected: dict, local_info: dict[str, Any]) -> None:
    assert convert(graph(node(1, kind, values)), local_info)["1"]["inputs"] == expected


def test_array_values_are_wrapped(local_info: dict[str, Any]) -> None:
    workflow = graph(node(1, "SaveImage", [["a", "b"]]))
    assert convert(workflow, local_info)["1"]["inputs"]["filename_prefix"] == {"__value__": ["a", "b"]}


def test_filename_prefix_replacements(local_info: dict[str, Any]) -> None:
    workflow = graph(
        node(1, "EmptyImage", [64, 32, 1, 0], title="Canvas"),
        node(2, "SaveImage", ["%date:yyyy-MM-dd%/%Canvas.width%x%EmptyImage.height%_%nope.x%_%width%"]),
    )
    prefix = convert(workflow, local_info)["2"]["inputs"]["filename_prefix"]
    assert prefix == "2025-01-02/64x%EmptyImage.height%_%nope.x%_%width%"
    workflow["nodes"][0]["properties"] = {"Node name for S&R": "EmptyImage"}
    assert convert(workflow, local_info)["2"]["inputs"]["filename_prefix"].startswith("2025-01-02/64x32_")


def test_primitive_node_writes_its_value_into_each_target(local_info: dict[str, Any]) -> None:
    workflow = graph(
        node(1, "PrimitiveNode", [640, "fixed"], outputs=[out("INT", "INT", [1, 2])]),
        node(
            2, "EmptyImage", [1, 1, 1, 0], inputs=[inp("width", "INT", 1, "width"), inp("height", "INT", 2, "height")]
        ),
        links=[[1, 1, 0, 2, 0, "INT"], [2, 1, 0, 2, 1, "INT"]],
    )
    api = convert(workflow, local_info)
    assert list(api) == ["2"]
    assert api["2"]["inputs"] == {"width": 640, "height": 640, "batch_size": 1, "color": 0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("a {red} cat", "a red cat"),
        ("keep // this goes", "keep "),
        ("a /* gone */b", "a b"),
        (r"literal \{x\|y\} and \(w\)", r"literal {x|y} and \(w\)"),
        ("{x|{y}}", None),
    ],
)
def test_dynamic_prompts(text: str, expected: str | None) -> None:
    result = dynamic_prompt(text, random.Random(1))
    if expected is None:
        assert result in ("x", "y")
    else:
        assert result == expected


def test_dynamic_prompts_apply_to_prompt_widgets(local_info: dict[str, Any]) -> None:
    workflow = graph(node(1, "CLIPTextEncode", ["a {red|blue} cat // note"]))
    assert convert(workflow, local_info)["1"]["inputs"]["text"] in ("a red cat ", "a blue cat ")


def test_subgraph_ids_and_order(local_info: dict[str, Any]) -> None:
    path = FIXTURES / "tplnew-image_z_image_turbo_fun_union_controlnet.ui.json"
    api = convert(load(path), local_info)
    keys = list(api)
    assert keys[:4] == sorted(keys[:4], key=int)
    assert all(":" in key for key in keys[4:])


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        ([], "not a UI-format workflow"),
        ({"nodes": "x"}, "not a UI-format workflow"),
        ({"1": {"class_type": "SaveImage", "inputs": {}}}, "already in API format"),
        (graph({"id": 1}), "has no type"),
        (graph({"id": True, "type": "SaveImage"}), "not an id"),
        (graph(node(1, "SaveImage"), node(1, "SaveImage")), "two nodes have the id 1"),
        (graph(node(1, "SaveImage"), links=[[1, 2]]), "a link has 2 fields"),
        (graph(node(1, "SaveImage", inputs="x")), "inputs must be a list"),
        (graph(node(1, "SaveImage", mode="on")), "mode is 'on'"),
    ],
)
def test_broken_workflows_raise_workflow_error(workflow: Any, message: str, local_info: dict[str, Any]) -> None:
    with pytest.raises(WorkflowError, match=message):
        to_api(workflow, local_info)


def test_legacy_group_nodes_are_refused_with_a_hint(local_info: dict[str, Any]) -> None:
    with pytest.raises(WorkflowError, match="legacy group node .*subgraph"):
        to_api(graph(node(1, "workflow>My group")), local_info)


def test_link_loop_is_reported(local_info: dict[str, Any]) -> None:
    workflow = graph(
        node(1, "Reroute", inputs=[inp("", "*", 2)], outputs=[out("", "*", [1])]),
        node(2, "Reroute", inputs=[inp("", "*", 1)], outputs=[out("", "*", [2])]),
        node(3, "SaveImage", ["x"], inputs=[inp("images", "IMAGE", 3)]),
        links=[[1, 1, 0, 2, 0, "*"], [2, 2, 0, 1, 0, "*"], [3, 2, 0, 3, 0, "IMAGE"]],
    )
    with pytest.raises(WorkflowError, match="loop"):
        to_api(workflow, local_info)


def test_subgraph_containing_itself_is_reported(local_info: dict[str, Any]) -> None:
    sub_id = "6a0c0d1e-0000-4000-8000-000000000001"
    inner = {"id": sub_id, "name": "Loop", "nodes": [node(1, sub_id)], "links": [], "inputs": [], "outputs": []}
    workflow = graph(node(7, sub_id), definitions={"subgraphs": [inner]})
    with pytest.raises(WorkflowError, match="contains an instance of itself"):
        to_api(workflow, local_info)


def test_unknown_node_types_name_the_pack(local_info: dict[str, Any]) -> None:
    workflow = graph(
        node(1, "WanVideoSampler"),
        node(2, "VHS_VideoCombine"),
        node(3, "UnetLoaderGGUF"),
        node(4, "ImageResizeKJv2", mode=4),  # bypassed: never sent, so not missing
        node(5, "Totally Unknown"),
    )
    with pytest.raises(MissingNodesError) as caught:
        to_api(workflow, local_info)
    found = {item.class_type: item.pack.name if item.pack else None for item in caught.value.missing}
    assert found == {
        "WanVideoSampler": "ComfyUI-WanVideoWrapper",
        "VHS_VideoCombine": "ComfyUI-VideoHelperSuite",
        "UnetLoaderGGUF": "ComfyUI-GGUF",
        "Totally Unknown": None,
    }
    assert "ComfyUI-GGUF" in str(caught.value) and "\n" not in str(caught.value)
    assert [m.class_type for m in missing_node_types(workflow, local_info)] == list(found)


# -------------------------------------------------------------------------------------------
# API format: the reference workflows
# -------------------------------------------------------------------------------------------

API_FILES = ["example_txt2img.json", "flux_schnell_basic.json", "wan_t2v_basic.json"]


@pytest.mark.parametrize("name", API_FILES)
def test_reference_api_workflows_are_api_format(name: str, reference: Path) -> None:
    data = load(reference / "workflows" / name)
    assert is_api_format(data) and not is_ui_format(data)
    cleaned = strip_meta(data)
    assert "_meta" not in cleaned and "_meta" in data
    recorded = load(reference / "comfyui-api" / "prompt-responses.json")
    assert cleaned == recorded[f"reference_workflow_meta_stripped:{name}"]["request_body"]["prompt"]


def test_strip_meta_keeps_node_titles() -> None:
    api = {"_meta": {"title": "x"}, "1": {"class_type": "A", "inputs": {}, "_meta": {"title": "t"}}}
    assert strip_meta(api) == {"1": {"class_type": "A", "inputs": {}, "_meta": {"title": "t"}}}
    assert is_api_format(api) and not is_api_format({"_meta": {}}) and not is_api_format([])


def test_as_api_accepts_both_formats_and_wrappers(local_info: dict[str, Any]) -> None:
    api = as_api(IMAGE_CHAIN, local_info)
    assert as_api({"prompt": api}, local_info) == api == as_api({"workflow": IMAGE_CHAIN}, local_info)
    with pytest.raises(WorkflowError, match="not a ComfyUI workflow"):
        as_api({"hello": 1}, local_info)


def test_wan_reference_names_its_custom_nodes(reference: Path, object_info: dict[str, Any]) -> None:
    missing = missing_node_types(load(reference / "workflows" / "wan_t2v_basic.json"), object_info)
    packs = {item.class_type: item.pack.name for item in missing if item.pack}
    assert packs["WanVideoSampler"] == "ComfyUI-WanVideoWrapper"
    assert packs["VHS_SaveVideo"] == "ComfyUI-VideoHelperSuite"
    assert {item.class_type for item in missing} >= {"WanModelLoader", "WanTextEncode"}


# -------------------------------------------------------------------------------------------
# models
# -------------------------------------------------------------------------------------------


def refs(api: dict[str, Any], info: dict[str, Any]) -> list[tuple[str, str]]:
    return [(ref.folder, ref.name) for ref in required_models(api, info)]


def test_required_models_of_reference_workflows(reference: Path, object_info: dict[str, Any]) -> None:
    folder = reference / "workflows"
    assert refs(load(folder / "example_txt2img.json"), object_info) == [("checkpoints", "v1-5-pruned-emaonly.ckpt")]
    assert refs(load(folder / "flux_schnell_basic.json"), object_info) == [
        ("diffusion_models", "flux1-schnell.safetensors"),
        ("text_encoders", "t5xxl_fp16.safetensors"),
        ("text_encoders", "clip_l.safetensors"),
        ("vae", "ae.safetensors"),
    ]
    assert refs(load(folder / "wan_t2v_basic.json"), object_info) == [
        ("diffusion_models", "Wan2.1_T2V_14B.safetensors")
    ]


def test_required_models_match_what_templates_declare(reference: Path, object_info: dict[str, Any]) -> None:
    """Templates list each model with its folder in node properties: every one on a node that is
    sent must be found, in that folder."""
    checked = 0
    for path in sorted(PAIRS_DIR.glob("tpl*.ui.json")):
        api = expected_for(path)
        found = set(refs(api, object_info))
        for model in embedded_models(load(path)):
            if model.node_id in api:
                assert (model.directory, model.name) in found, (path.name, model)
                checked += 1
    assert checked > 60


def test_required_models_table(local_info: dict[str, Any]) -> None:
    api = {
        "1": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "sigclip.safetensors"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.pth"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
        "4": {"class_type": "LoraLoader", "inputs": {"lora_name": "sub\\style.safetensors", "model": ["1", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "embedding:EasyNegative, blurry"}},
        "6": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "flux-Q4.gguf"}},
        "7": {"class_type": "SomeCustomVAELoader", "inputs": {"vae": "my_vae.safetensors", "note": "x.txt"}},
        "8": {"class_type": "Power Lora Loader (rgthree)", "inputs": {"lora_1": {"on": True, "lora": "a.safetensors"}}},
        "9": {"class_type": "ModelPatchLoader", "inputs": {"name": "patch.safetensors"}},
    }
    assert refs(api, local_info) == [
        ("clip_vision", "sigclip.safetensors"),
        ("upscale_models", "4x.pth"),
        ("loras", "sub/style.safetensors"),
        ("embeddings", "EasyNegative"),
        ("diffusion_models", "flux-Q4.gguf"),
        ("vae", "my_vae.safetensors"),
        ("loras", "a.safetensors"),
        ("model_patches", "patch.safetensors"),
    ]
    assert required_models(api, local_info)[0].input == "clip_name"


def test_missing_models() -> None:
    wanted = [
        ModelRef("diffusion_models", "flux.safetensors", "1", "unet_name", "UNETLoader"),
        ModelRef("text_encoders", "t5.safetensors", "2", "clip_name1", "DualCLIPLoader"),
        ModelRef("text_encoders", "t5.safetensors", "3", "clip_name", "CLIPLoader"),
        ModelRef("embeddings", "EasyNegative", "4", "text", "CLIPTextEncode"),
        ModelRef("loras", "sub/a.safetensors", "5", "lora_name", "LoraLoader"),
        ModelRef("vae", "ae.safetensors", "6", "vae_name", "VAELoader"),
    ]
    listing = {"unet": ["flux.safetensors"], "embeddings": ["EasyNegative.pt"], "loras": ["sub\\a.safetensors"]}
    assert [(r.folder, r.name) for r in missing_models(wanted, listing)] == [
        ("text_encoders", "t5.safetensors"),
        ("vae", "ae.safetensors"),
    ]
    assert missing_models(wanted[:1], {"diffusion_models": ["other.safetensors"]}) == wanted[:1]


# -------------------------------------------------------------------------------------------
# parameters
# -------------------------------------------------------------------------------------------


def param_table(api: dict[str, Any], info: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [(p.key, p.kind, p.value) for p in parameters(api, info)]


def test_parameters_of_a_txt2img_prompt(local_info: dict[str, Any]) -> None:
    api = load(FIXTURES / "hand-reroute-chain.api.json")
    assert param_table(api, local_info) == [
        ("2.text", "prompt", "a lighthouse on a cliff at sunset, oil painting"),
        ("3.text", "negative_prompt", "blurry, watermark"),
        ("5.seed", "seed", 424242),
        ("5.steps", "steps", 25),
        ("5.cfg", "cfg", 6.5),
        ("5.denoise", "denoise", 1),
        ("4.width", "width", 768),
        ("4.height", "height", 512),
        ("4.batch_size", "batch_size", 2),
        ("7.filename_prefix", "filename_prefix", "hand/test"),
    ]
    seed = parameters(api, local_info)[2]
    assert (seed.type, seed.minimum, seed.maximum, seed.title) == ("INT", 0, 18446744073709551615, "KSampler")


def test_parameters_follow_primitive_nodes(local_info: dict[str, Any]) -> None:
    api = load(FIXTURES / "hand-widget-inputs.api.json")
    table = param_table(api, local_info)
    assert ("10.value", "prompt", "multi\nline prompt from a String node") in table
    assert ("8.value", "steps", 33) in table
    assert ("9.value", "width", 1024) in table
    assert ("11.value", "cfg", 4.25) in table
    assert not any(key.endswith(".height") for key, _, _ in table)  # same primitive as width


def test_parameters_of_a_flux_prompt_without_titles(reference: Path, object_info: dict[str, Any]) -> None:
    api = load(reference / "workflows" / "flux_schnell_basic.json")
    table = param_table(api, object_info)
    assert table[0] == ("3.text", "prompt", "a beautiful sunset over mountains, vibrant colors, photorealistic")
    assert [kind for _, kind, _ in table].count("negative_prompt") == 0


@pytest.mark.parametrize(
    ("values", "node_id", "name", "expected"),
    [
        ({"5.steps": "30"}, "5", "steps", 30),
        ({"5.steps": 30.0}, "5", "steps", 30),
        ({"5.cfg": "7.5"}, "5", "cfg", 7.5),
        ({"5.cfg": 7}, "5", "cfg", 7),
        ({"2.text": "a cat"}, "2", "text", "a cat"),
        ({"7.filename_prefix": 123}, "7", "filename_prefix", "123"),
        ({"5.sampler_name": "dpmpp_2m"}, "5", "sampler_name", "dpmpp_2m"),
        ({"seed": "12"}, "5", "seed", 12),
        ({"negative_prompt": "ugly"}, "3", "text", "ugly"),
        ({"width": 1024}, "4", "width", 1024),
    ],
)
def test_apply_parameters(
    values: dict[str, Any], node_id: str, name: str, expected: Any, local_info: dict[str, Any]
) -> None:
    api = load(FIXTURES / "hand-reroute-chain.api.json")
    before = copy.deepcopy(api)
    changed = apply_parameters(api, values, local_info)
    assert changed[node_id]["inputs"][name] == expected
    assert type(changed[node_id]["inputs"][name]) is type(expected)
    assert api == before


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"5.steps": "0"}, "5.steps: 0 is below the minimum of 1"),
        ({"5.steps": "twenty"}, "expected a whole number"),
        ({"5.steps": True}, "expected a whole number"),
        ({"5.cfg": "nan"}, "expected a number"),
        ({"5.cfg": 101}, "above the maximum of 100"),
        ({"5.sampler_name": "nope"}, "'nope' is not one of 'euler'"),
        ({"5.model": "x"}, "comes from node 1"),
        ({"5.colour": 1}, "KSampler has no input 'colour'"),
        ({"42.seed": 1}, "there is no node 42"),
        ({"guidance": 3}, "no such input in this workflow"),
        ({"2.text": None}, "expected a single value"),
        ({"": 1}, "parameter name"),
    ],
)
def test_apply_parameters_refuses_bad_values(values: dict[str, Any], message: str, local_info: dict[str, Any]) -> None:
    api = load(FIXTURES / "hand-reroute-chain.api.json")
    with pytest.raises(WorkflowError, match=message):
        apply_parameters(api, values, local_info)


def test_apply_parameters_random_seed_and_without_object_info(local_info: dict[str, Any]) -> None:
    api = load(FIXTURES / "hand-reroute-chain.api.json")
    seeded = apply_parameters(api, {"5.seed": "random"}, local_info, rng=random.Random(3))
    assert seeded == apply_parameters(api, {"5.seed": "random"}, local_info, rng=random.Random(3))
    assert 0 <= seeded["5"]["inputs"]["seed"] < 2**53
    assert apply_parameters(api, {"5.steps": "12"})["5"]["inputs"]["steps"] == 12
    with pytest.raises(WorkflowError, match="name the input"):
        apply_parameters(api, {"seed": 1})


# -------------------------------------------------------------------------------------------
# property: broken input only ever raises WorkflowError
# -------------------------------------------------------------------------------------------

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-3, 12)
    | st.floats(allow_nan=True)
    | st.sampled_from(["", "*", "IMAGE", "INT", "seed", "Reroute", "PrimitiveNode", "KSampler", "-10", "-20", "x"])
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
BASES = [
    "hand-reroute-chain",
    "hand-bypass-middle",
    "tplnew-image_z_image_turbo_fun_union_controlnet",
    "tpl-sdxl_simple_example",
]


def _containers(value: Any, found: list[Any]) -> list[Any]:
    if isinstance(value, dict | list):
        found.append(value)
        for child in value.values() if isinstance(value, dict) else value:
            _containers(child, found)
    return found


@st.composite
def mangled_workflows(draw: st.DrawFn) -> Any:
    workflow = copy.deepcopy(load(FIXTURES / f"{draw(st.sampled_from(BASES))}.ui.json"))
    for _ in range(draw(st.integers(1, 6))):
        containers = _containers(workflow, [])
        target = containers[draw(st.integers(0, len(containers) - 1))]
        if isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target)))
            action = draw(st.sampled_from(["replace", "delete", "swap"]))
            if action == "delete":
                del target[key]
            elif action == "swap" and isinstance(target[key], int) and not isinstance(target[key], bool):
                target[key] = draw(st.integers(-25, 300))
            else:
                target[key] = draw(JSON_VALUE)
        elif isinstance(target, list) and target:
            index = draw(st.integers(0, len(target) - 1))
            if draw(st.booleans()):
                target[index] = draw(JSON_VALUE)
            else:
                target.pop(index)
    return workflow


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow=mangled_workflows())
def test_mangled_workflows_raise_only_workflow_error(workflow: Any) -> None:
    info = load(FIXTURES / "object_info.json")
    try:
        api = to_api(workflow, info, rng=random.Random(0))
    except WorkflowError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(api, dict)
    json.dumps(api)
    for function in (parameters, required_models):
        function(api, info)


@settings(max_examples=200, deadline=None)
@given(data=JSON_VALUE | st.fixed_dictionaries({"nodes": st.lists(JSON_VALUE, max_size=4), "links": JSON_VALUE}))
def test_random_json_raises_only_workflow_error(data: Any) -> None:
    info = load(FIXTURES / "object_info.json")
    for function in (to_api, as_api, missing_node_types):
        try:
            function(data, info)
        except WorkflowError:
            pass
    for function in (parameters, required_models):
        try:
            function(data, info)
        except WorkflowError:
            pass
    try:
        apply_parameters(data, {"1.seed": "5"}, info)
    except WorkflowError:
        pass
