"""presets.validate: the schema, every semantic rule with its line:column, both reference
catalogs, and a property test that the loader only ever raises CatalogError."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from presets.catalog import DEFAULT_PATH, load_catalog, load_text
from presets.validate import (
    CatalogValidationError,
    Issue,
    format_size,
    parse_size,
    path_problem,
    schema,
)
from services.errors import CatalogError
from services.paths import MODEL_FOLDERS
from tests.conftest import REFERENCE

SEED = REFERENCE / "seed-presets.yaml"
PER_PRESET = REFERENCE / "comfyui-presets" / "presets"

GOOD = textwrap.dedent(
    """\
    metadata:
      version: 1.0.0
    categories:
      Video Generation:
        type: video
    presets:
      ALPHA:
        name: Alpha
        type: video
        category: Video Generation
        files:
          - path: vae/shared.safetensors
            url: https://huggingface.co/o/r/resolve/main/shared.safetensors
            size: 1024
      BETA:
        name: Beta
        type: image
        files:
          - path: checkpoints/beta.safetensors
            url: https://example.org/beta.safetensors
            size: ~1.5GB
          - path: vae/shared.safetensors
            url: https://huggingface.co/o/r/resolve/main/shared.safetensors
    """
)


BETA_PATH = "      - path: checkpoints/beta.safetensors\n"
BETA_URL = "        url: https://example.org/beta.safetensors\n"


def errors_of(text: str) -> list[Issue]:
    with pytest.raises(CatalogValidationError) as info:
        load_text(text, "presets.yaml")
    return [i for i in info.value.issues if i.is_error]


def one_error(text: str) -> Issue:
    found = errors_of(text)
    assert len(found) == 1, [str(i) for i in found]
    return found[0]


def test_good_catalog_loads() -> None:
    catalog = load_text(GOOD)
    assert set(catalog.presets) == {"ALPHA", "BETA"}
    beta = catalog.get("beta")
    assert beta.files[0].size is None and beta.files[0].approx_size == int(1.5 * 1024**3)
    assert catalog.get("ALPHA").files[0].size == 1024
    assert catalog.warnings == []


# ---- every error class, with its line:column ---------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "line", "col", "preset", "field", "words"),
    [
        # YAML syntax
        ("    name: Alpha\n", "    name: [Alpha\n", 9, 9, None, None, "YAML"),
        # duplicate id
        ("  BETA:\n", "  ALPHA:\n", 15, 3, None, None, "duplicate key 'ALPHA'"),
        # unknown field (points at the key)
        ("    name: Beta\n", "    name: Beta\n    ulr: x\n", 17, 5, "BETA", "ulr", "unknown field"),
        # missing required field
        ("    name: Beta\n", "", 15, 3, "BETA", None, "'name' is missing"),
        # wrong type
        ("    name: Alpha\n", "    name: [1, 2]\n", 8, 11, "ALPHA", "name", "is not a string"),
        # enum
        ("    type: image\n", "    type: movie\n", 17, 11, "BETA", "type", "not one of"),
        # id pattern
        ("  BETA:\n", "  beta-two:\n", 15, 3, "beta-two", None, "UPPER_SNAKE_CASE such as BETA_TWO"),
        # sizes that do not parse
        ("        size: ~1.5GB\n", "        size: 1.5 gigs\n", 21, 15, "BETA", "files[0].size", "not a size"),
        ("        size: 1024\n", "        size: -5\n", 14, 15, "ALPHA", "files[0].size", "not a size"),
        # sha256 shape
        ("        size: 1024\n", "        size: 1024\n        sha256: abc\n", 15, 17, "ALPHA", "files[0].sha256",
         "does not match"),
        # absolute path, '..', unknown folder, no folder, backslash
        (BETA_PATH, "      - path: /etc/beta.safetensors\n", 19, 15, "BETA", "files[0].path", "not absolute"),
        (BETA_PATH, "      - path: checkpoints/../../x.bin\n", 19, 15, "BETA", "files[0].path", "'..'"),
        (BETA_PATH, "      - path: secrets/beta.safetensors\n", 19, 15, "BETA", "files[0].path",
         "not a ComfyUI model folder"),
        (BETA_PATH, "      - path: beta.safetensors\n", 19, 15, "BETA", "files[0].path",
         "must start with a model folder"),
        (BETA_PATH, "      - path: checkpoints\\\\beta.bin\n", 19, 15, "BETA", "files[0].path", "backslash"),
        # URLs
        (BETA_URL, "        url: http://example.org/beta.safetensors\n", 20, 14, "BETA", "files[0].url", "plain http"),
        (BETA_URL, "        url: ftp://example.org/beta.safetensors\n", 20, 14, "BETA", "files[0].url", "https://"),
        (BETA_URL, "        url: https://me:pw@example.org/beta.safetensors\n", 20, 14, "BETA", "files[0].url",
         "password"),
        # category not declared / of another type
        ("    category: Video Generation\n", "    category: Nope\n", 10, 15, "ALPHA", "category", "not declared"),
        ("    type: image\n", "    type: image\n    category: Video Generation\n", 18, 15, "BETA", "category",
         "holds video presets"),
        # replaced_by names nothing
        ("    name: Beta\n", "    name: Beta\n    replaced_by: GAMMA\n", 17, 18, "BETA", "replaced_by", "not a preset"),
        # source disagrees with the URL
        ("        size: 1024\n", "        size: 1024\n        source: {type: huggingface, repo: x/y}\n", 15, 43,
         "ALPHA", "files[0].source.repo", "points into 'o/r'"),
        ("        size: 1024\n", "        size: 1024\n        source: {type: civitai}\n", 15, 24, "ALPHA",
         "files[0].source.type", "huggingface link"),
        # the same path twice in a preset
        ("        size: ~1.5GB\n", "        size: ~1.5GB\n" + BETA_PATH + BETA_URL, 22, 15, "BETA", "files[1].path",
         "listed twice"),
        # files must not be empty
        (GOOD[GOOD.index("    files:\n      - path: checkpoints"):], "    files: []\n", 18, 12, "BETA", "files",
         "at least 1"),
        # unknown top-level key
        ("presets:\n", "extras: 1\npresets:\n", 6, 1, None, "extras", "unknown field"),
        # a key that is not text
        ("    name: Beta\n", "    name: Beta\n    [1, 2]: x\n", 17, 5, "BETA", None, "a key must be text, not a list"),
    ],
)
def test_each_error_names_preset_field_and_line_col(old, new, line, col, preset, field, words) -> None:
    assert old in GOOD, old
    issue = errors_of(GOOD.replace(old, new, 1))[0]
    assert (issue.line, issue.column) == (line, col), str(issue)
    assert issue.preset == preset, str(issue)
    if field is not None:
        assert issue.field == field, str(issue)
    assert words in issue.message, str(issue)
    assert str(issue).startswith(f"presets.yaml:{line}:{col}: ")


def test_shared_path_with_another_url() -> None:
    second = "      - path: vae/shared.safetensors\n        url: https://huggingface.co/o/r/resolve/main/shared.safetensors\n"
    assert GOOD.endswith(second)
    other = second.replace("https://huggingface.co/o/r/resolve/main/shared", "https://example.org/other")
    issue = one_error(GOOD[: -len(second)] + other)
    assert (issue.line, issue.column, issue.preset, issue.field) == (23, 14, "BETA", "files[1].url")
    assert "also in ALPHA (presets.yaml:12)" in issue.message


def test_shared_path_with_another_exact_size_is_an_error_estimate_a_warning() -> None:
    issue = one_error(GOOD + "        size: 2048\n")
    assert (issue.line, issue.preset, issue.field) == (24, "BETA", "files[1].size")
    assert "another size" in issue.message
    estimate = GOOD.replace("        size: 1024\n", "        size: ~1KB\n") + "        size: ~2KB\n"
    catalog = load_text(estimate)
    assert [(w.preset, w.field) for w in catalog.warnings] == [("BETA", "files[1].size")]


def test_blob_url_is_a_warning_and_is_fixed_on_load() -> None:
    text = GOOD.replace("/resolve/main/shared", "/blob/main/shared")
    catalog = load_text(text, "presets.yaml")
    assert catalog.get("ALPHA").files[0].url == "https://huggingface.co/o/r/resolve/main/shared.safetensors"
    assert [(w.preset, w.line, w.column) for w in catalog.warnings] == [("ALPHA", 13, 14), ("BETA", 23, 14)]
    assert all("opens a web page" in w.message for w in catalog.warnings)


def test_loopback_http_is_allowed_and_extra_folders_extend_the_list() -> None:
    text = GOOD.replace("https://example.org/beta.safetensors", "http://127.0.0.1:8123/beta.safetensors")
    text = text.replace("checkpoints/beta.safetensors", "TTS/beta.safetensors")
    with pytest.raises(CatalogError, match="not a ComfyUI model folder"):
        load_text(text)
    text = text.replace("  version: 1.0.0\n", "  version: 1.0.0\n  extra_folders: [TTS]\n")
    assert load_text(text).get("BETA").files[0].path == "TTS/beta.safetensors"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "empty"),
        ("# only a comment\n", 1, "empty"),
        ("- a\n- b\n", 1, "expected a mapping"),
        ("just text\n", 1, "expected a mapping"),
        ("presets: 5\n", 1, "is not an object"),
        ("presets: &x {A: *x}\n", 1, "preset A"),
        ("presets:" + " [" * 80 + "]" * 80 + "\n", 1, "too large or too deeply nested"),
        ("\t- x\n", 1, "YAML"),
        ("presets: {A: !!binary '%%%'}\n", 1, "is not an object"),
        ("presets: {A: !!python/object:os.system {}}\n", 1, "'name' is missing"),
    ],
)
def test_malformed_documents(text: str, line: int, words: str) -> None:
    with pytest.raises(CatalogError) as info:
        load_text(text, "presets.yaml")
    assert words in str(info.value)
    issues = getattr(info.value, "issues", [])
    if issues:
        assert issues[0].line == line


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 12):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]")
    lines.append("presets: {}")
    with pytest.raises(CatalogError, match="too large"):
        load_text("\n".join(lines) + "\n")


def test_error_message_is_one_line_and_counts_the_rest() -> None:
    text = GOOD.replace("name: Alpha", "name: [1]").replace("name: Beta", "name: [2]")
    with pytest.raises(CatalogValidationError) as info:
        load_text(text, "presets.yaml")
    message = str(info.value)
    assert "\n" not in message and message.endswith("(and 1 more error)")
    assert info.value.exit_code == 6


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (0, (0, True)),
        (4831838208, (4831838208, True)),
        ("4.8GB", (int(4.8 * 1024**3), False)),
        ("~4.8GB", (int(4.8 * 1024**3), False)),
        ("~ 538 MB", (538 * 1024**2, False)),
        ("1.5GiB", (int(1.5 * 1024**3), False)),
        ("100KB", (100 * 1024, False)),
        ("2T", (2 * 1024**4, False)),
        ("12B", (12, False)),
        ("9.31GB (9536MB)", None),
        ("lots", None),
        (-1, None),
        (True, None),
        (1.5, None),
        (None, None),
    ],
)
def test_parse_size(value, parsed) -> None:
    assert parse_size(value) == parsed


def test_format_size() -> None:
    assert format_size(None) == "?"
    assert format_size(512) == "512 B"
    assert format_size(3 * 1024**3, approx=True) == "~3.0 GiB"


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("checkpoints/a.safetensors", True),
        ("text_encoders/PixArt/text_encoder/model-1.safetensors", True),
        ("checkpoints/./a.bin", False),
        ("checkpoints//a.bin", False),
        (" checkpoints/a.bin", False),
        ("checkpoints/a\x00.bin", False),
        ("models/checkpoints/a.bin", False),
    ],
)
def test_path_problem(path: str, ok: bool) -> None:
    assert (path_problem(path, MODEL_FOLDERS) is None) is ok


def test_schema_is_a_valid_json_schema() -> None:
    import jsonschema

    data = schema()
    jsonschema.validators.validator_for(data).check_schema(data)
    assert json.loads(Path(DEFAULT_PATH.with_name("schema.json")).read_text())["title"]


# ---- the default and the reference catalogs ------------------------------------------------


def test_default_catalog_is_clean_and_complete() -> None:
    catalog = load_catalog(DEFAULT_PATH)
    assert catalog.warnings == []
    assert len(catalog) == 56
    kinds = [p.type for p in catalog]
    assert (kinds.count("video"), kinds.count("image"), kinds.count("audio")) == (26, 25, 5)
    for preset in catalog:
        assert preset.description and preset.name and preset.tags
        assert preset.disk_gb
        for item in preset.files:
            assert "/blob/" not in item.url
            assert item.url.startswith("https://")
            assert item.expected_size is not None or item.path == "diffusion_models/Wan2.2_S2V_FP8.safetensors"
            assert item.source["type"] == "huggingface" and item.source["repo"]


def test_default_keeps_every_reference_id_with_new_descriptions() -> None:
    yaml = YAML(typ="safe")
    seed = yaml.load(SEED.read_text())["presets"]
    catalog = load_catalog(DEFAULT_PATH)
    assert list(catalog.presets) == list(seed)
    for preset_id, old in seed.items():
        preset = catalog.get(preset_id)
        assert preset.type == old["type"]
        assert preset.description != old["description"]  # written in our own words
    assert catalog.get("wan_22_5b_tiv2").replaced_by == "WAN_2_2_T2V_BASIC"


def test_seed_reference_catalog_validates_to_its_known_problems() -> None:
    with pytest.raises(CatalogValidationError) as info:
        load_catalog(SEED)
    issues = info.value.issues
    errors = [i for i in issues if i.is_error]
    warnings = [i for i in issues if not i.is_error]
    assert all(i.file == "seed-presets.yaml" and i.line and i.column for i in issues)
    # /blob/ URLs (an HTML page): warnings, fixed on load
    blob = [i for i in warnings if "opens a web page" in i.message]
    assert len(blob) == 13
    assert ("SD1_5_UPSCALE_BASIC", 547, 12) in {(i.preset, i.line, i.column) for i in blob}
    # the same path with several URLs: one file cannot be two
    conflicts = [i for i in errors if "a shared path must be one file" in i.message]
    assert {i.message.split("'")[1] for i in conflicts} == {
        "text_encoders/t5xxl_fp16.safetensors",
        "text_encoders/clip_l.safetensors",
        "text_encoders/clip_g.safetensors",
        "vae/ae.safetensors",
        "checkpoints/v1-5-pruned-emaonly-fp16.safetensors",
    }
    # sizes that do not parse, a folder ComfyUI does not have
    sizes = {(i.preset, i.line, i.column) for i in errors if "is not a size" in i.message}
    assert sizes == {("WAN2_2_TI2V_5B_FP16", 1264, 13), ("WAN2_2_S2V_14B_FP8_SCALED", 1300, 13)}
    folders = [i for i in errors if "not a ComfyUI model folder" in i.message]
    assert {(i.preset, i.field, i.line) for i in folders} == {
        ("COMPLETE_AUDIO_SUITE", "files[3].path", 1002),
        ("COMPLETE_AUDIO_SUITE", "files[4].path", 1005),
    }
    assert len(errors) == len(conflicts) + len(sizes) + len(folders)


def test_per_preset_reference_layout_validates_to_its_known_problems() -> None:
    with pytest.raises(CatalogValidationError) as info:
        load_catalog(PER_PRESET)
    errors = [i for i in info.value.issues if i.is_error]
    by_kind = {
        "shared": [i for i in errors if "a shared path must be one file" in i.message],
        "source": [i for i in errors if i.field and i.field.endswith("source.repo")],
        "size": [i for i in errors if "is not a size" in i.message],
        "folder": [i for i in errors if "not a ComfyUI model folder" in i.message],
    }
    assert sum(len(v) for v in by_kind.values()) == len(errors)
    assert {i.preset for i in by_kind["source"]} == {
        "SD1_5_LORA_BASIC", "SD1_5_MULTIPLE_LORAS", "COSMOS_PREDICT2_VIDEO2WORLD", "WAN_2_2_ANIMATE"}
    wrong = next(i for i in by_kind["size"] if i.preset == "WAN2_2_TI2V_5B_FP16")
    assert (wrong.file, wrong.line, wrong.column) == ("video/wan2-2-ti2v-5b-fp16/preset.yaml", 12, 9)
    ids = {i.preset for i in info.value.issues}
    assert ids <= set(YAML(typ="safe").load(SEED.read_text())["presets"])


# ---- property test: only CatalogError ever comes out --------------------------------------

_DEFAULT_TEXT = DEFAULT_PATH.read_text(encoding="utf-8")
_SMALL = _DEFAULT_TEXT[_DEFAULT_TEXT.index("metadata:"):_DEFAULT_TEXT.index("  LTX_VIDEO_I2V:")]

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["video", "~4.8GB", "https://x.org/a.bin", "checkpoints/a.bin", "../x", "http://10.0.0.1/x"]),
)
_keys = st.one_of(
    st.sampled_from(["presets", "metadata", "files", "path", "url", "size", "name", "type", "ALPHA", "tags",
                     "categories", "source", "optional", "sha256", "extra_folders", "replaced_by"]),
    st.text(max_size=10),
)
_structures = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)),
    max_leaves=30,
)


def _loads_or_catalog_error(text: str) -> None:
    try:
        load_text(text, "fuzz.yaml")
    except CatalogError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_only_raises_catalog_error(text: str) -> None:
    _loads_or_catalog_error(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mangled_yaml_only_raises_catalog_error(data: st.DataObject) -> None:
    text = _SMALL
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        action = data.draw(st.sampled_from(["delete", "insert", "replace", "swap"]))
        chunk = data.draw(st.sampled_from([":", "-", " ", "\n", "\t", "'", '"', "[", "{", "&a", "*a", "!!", "#",
                                           "? ", "|", ">", "%", "@", "\x00", "\ufeff", "é", "  ", "---", "..."]))
        if action == "delete":
            text = text[:at] + text[at + data.draw(st.integers(min_value=1, max_value=20)):]
        elif action == "insert":
            text = text[:at] + chunk + text[at:]
        elif action == "replace":
            text = text[:at] + chunk + text[at + len(chunk):]
        else:
            lines = text.splitlines(keepends=True)
            if len(lines) > 2:
                i = at % (len(lines) - 1)
                lines[i], lines[i + 1] = lines[i + 1], lines[i]
                text = "".join(lines)
    _loads_or_catalog_error(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_structures, st.booleans())
def test_random_structures_only_raise_catalog_error(structure, wrap: bool) -> None:
    import io

    if wrap:
        structure = {"presets": {"ALPHA": structure} if not isinstance(structure, dict) else structure}
    stream = io.StringIO()
    YAML(typ="safe").dump(structure, stream)
    _loads_or_catalog_error(stream.getvalue())
    # and as JSON, which is YAML too
    try:
        text = json.dumps(structure, allow_nan=True)
    except ValueError:
        return
    _loads_or_catalog_error(text)
