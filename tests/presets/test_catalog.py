"""presets.catalog: lookup, search, hot reload that keeps the last good catalog, and
round-trip edits that keep every comment byte-for-byte."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from presets import catalog as catalog_module
from presets.catalog import (
    DEFAULT_PATH,
    CatalogStore,
    add_preset,
    canonical_id,
    load_catalog,
    load_text,
    preset_data,
    remove_preset,
    save_text,
    seed_catalog,
    update_preset,
)
from services.errors import CatalogError
from services.settings import load_settings

COMMENTED = """\
# My presets: hand-edited, keep these notes!
metadata:
  version: 1.0.0   # bumped by hand
  description: "mine"

presets:
  # ---- video ----------------------------------------------------------------
  ALPHA:   # the first one
    name: Alpha   # short name
    type: video
    description: >-
      A long description
      folded over two lines.
    files:
    # the model itself
    - path: diffusion_models/alpha.safetensors
      url: https://huggingface.co/o/alpha/resolve/main/alpha.safetensors   # from the hub
      size: ~2GB
    tags: [a, 'b']    # flow style
  # a comment between presets, about BETA
  BETA:
    name: 'Beta'
    type: image
    files:
    - {path: checkpoints/beta.safetensors, url: "https://example.org/beta.safetensors"}

  # ---- image ----------------------------------------------------------------

  GAMMA:
    name: Gamma
    type: image
    files:
    - path: vae/shared.safetensors
      url: https://example.org/shared.safetensors
      size: 1000
    # trailing comment inside GAMMA
# end of file comment
"""


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines(keepends=True) if "#" in line]


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings({"WORKSPACE": str(tmp_path / "ws")})


@pytest.fixture
def default():
    return load_catalog(DEFAULT_PATH)


# ---- lookup --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("WAN_22_5B_TIV2", "WAN_22_5B_TIV2"),
        ("wan_22_5b_tiv2", "WAN_22_5B_TIV2"),
        ("wan-22-5b-tiv2", "WAN_22_5B_TIV2"),
        (" Wan-22-5B-TIv2 ", "WAN_22_5B_TIV2"),
        ("sd1.5-text-to-image-basic", "SD1_5_TEXT_TO_IMAGE_BASIC"),
        ("ace step v1 3 5b", "ACE_STEP_V1_3_5B"),
    ],
)
def test_get_accepts_lower_and_kebab_case(default, text: str, expected: str) -> None:
    assert canonical_id(text) == expected
    assert default.get(text).id == expected
    assert text in default


def test_unknown_id_names_the_closest(default) -> None:
    with pytest.raises(CatalogError) as info:
        default.get("flux-dev")
    message = str(info.value)
    assert message.startswith("unknown preset 'flux-dev'; closest: FLUX_DEV_BASIC")
    assert "\n" not in message
    assert "QWEN_IMAGE_EDIT" in default.closest("qwen image edit")
    assert default.closest("") == []


def test_resolve_ids_reports_unknown_and_keeps_going(default) -> None:
    found, problems = default.resolve_ids(["flux_dev_basic", "nope-nope", "FLUX_DEV_BASIC", "", "ltx-video-t2v"])
    assert [p.id for p in found] == ["FLUX_DEV_BASIC", "LTX_VIDEO_T2V"]
    assert len(problems) == 1 and "nope-nope" in problems[0]


def test_search(default) -> None:
    assert [p.id for p in default.search("flux")][:2] == ["FLUX_DEV_BASIC", "FLUX_SCHNELL_BASIC"]
    assert {p.id for p in default.search("qwen edit")} == {"QWEN_IMAGE_EDIT", "QWEN_IMAGE_COMPLETE"}
    assert default.search("music")[0].type == "audio"
    assert {p.id for p in default.search("ace-step")} == {p.id for p in default if p.id.startswith("ACE_STEP")}
    assert default.search("wan2.1")[0].id.startswith("WAN_2_1")
    assert len(default.search("")) == len(default)
    assert default.search("fluxx dev")  # fuzzy fallback when no word matches exactly


def test_preset_fields(default) -> None:
    preset = default.get("FLUX_DEV_BASIC")
    assert preset.type == "image" and preset.category == "Image Generation"
    assert preset.vram_gb == 16.0 and preset.disk_gb and preset.disk_gb > 20
    total, exact = preset.total_size
    assert total > 20 * 1024**3 and exact is False
    t5 = next(f for f in preset.files if f.path == "text_encoders/t5xxl_fp16.safetensors")
    assert t5.size is None and t5.approx_size and t5.expected_size == t5.approx_size
    assert t5.source == {"type": "huggingface", "repo": "Comfy-Org/mochi_preview_repackaged", "revision": "main",
                         "file": "split_files/text_encoders/t5xxl_fp16.safetensors", "repo_type": "model"}
    assert preset.as_dict()["files"][0]["path"] == preset.files[0].path
    assert default.by_type("audio") and all(p.type == "audio" for p in default.by_type("audio"))


def test_load_errors_are_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such file"):
        load_catalog(tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_catalog(tmp_path / "bin.yaml")
    with pytest.raises(CatalogError, match=r"no \*/preset.yaml"):
        load_catalog(tmp_path)


def test_per_preset_layout_and_duplicate_ids(tmp_path: Path) -> None:
    body = "name: X\ntype: video\nfiles:\n- path: vae/x.safetensors\n  url: https://example.org/x.safetensors\n"
    for folder, preset_id in (("video/one", "my-preset"), ("video/two", "other")):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "preset.yaml").write_text(f"id: {preset_id}\n{body}")
    loaded = load_catalog(tmp_path)
    assert set(loaded.presets) == {"MY_PRESET", "OTHER"}
    (tmp_path / "video/two/preset.yaml").write_text(f"id: MY-PRESET\n{body}")
    with pytest.raises(CatalogError, match="duplicate preset id") as info:
        load_catalog(tmp_path)
    assert info.value.issues[0].file == "video/two/preset.yaml"


# ---- hot reload ----------------------------------------------------------------------------


def _bump(path: Path) -> None:
    """Make sure the next write is seen as a change even on coarse-mtime filesystems."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


def test_store_reloads_on_change_and_keeps_last_good(settings, caplog) -> None:
    path = settings.presets_file
    path.parent.mkdir(parents=True)
    path.write_text(COMMENTED)
    store = CatalogStore(settings)
    first = store.current()
    assert set(first.presets) == {"ALPHA", "BETA", "GAMMA"} and store.error is None
    assert store.current() is first  # nothing changed: same object, one stat

    path.write_text(COMMENTED.replace("  GAMMA:", "  DELTA:"))
    _bump(path)
    assert set(store.current().presets) == {"ALPHA", "BETA", "DELTA"}

    path.write_text(COMMENTED.replace("type: image", "type: picture", 1))
    _bump(path)
    kept = store.current()
    assert set(kept.presets) == {"ALPHA", "BETA", "DELTA"}  # the last good one
    assert store.error and "preset BETA, field type" in store.error and ":23:11:" in store.error
    assert "keeping the last good catalog" in caplog.text

    path.write_text(COMMENTED)
    _bump(path)
    assert set(store.current().presets) == {"ALPHA", "BETA", "GAMMA"} and store.error is None


def test_store_falls_back_to_the_default(settings) -> None:
    store = CatalogStore(settings)
    assert len(store.current()) == 56 and store.error is None  # no file yet
    settings.presets_file.parent.mkdir(parents=True)
    settings.presets_file.write_text("presets: [broken\n")
    assert len(store.reload()) == 56 and "YAML" in (store.error or "")


def test_store_is_thread_safe(settings) -> None:
    seed_catalog(settings)
    store = CatalogStore(settings)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(len(store.current()))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [56] * 8


# ---- round-trip edits ----------------------------------------------------------------------


def test_edits_keep_every_comment_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "presets.yaml"
    path.write_text(COMMENTED)

    # change BETA (its fields), add DELTA, remove GAMMA's neighbour nothing else
    data = preset_data(COMMENTED, "beta")
    data["name"] = "Beta two"
    data["tags"] = ["new"]
    update_preset(path, "beta", data)
    add_preset(path, {"id": "delta", "name": "Delta", "type": "audio",
                      "files": [{"path": "checkpoints/d.safetensors", "url": "https://example.org/d.safetensors",
                                 "size": 12}]})
    text = path.read_text()
    for line in comment_lines(COMMENTED):
        assert line in text, line
    # every line outside BETA and after the end is unchanged and in order
    original = COMMENTED.splitlines(keepends=True)
    start = original.index("  BETA:\n")
    end = start + 5
    assert text.startswith("".join(original[:start + 1]))
    assert "".join(original[end:-1]) in text
    catalog = load_text(text)
    assert catalog.get("BETA").name == "Beta two" and catalog.get("BETA").tags == ("new",)
    assert catalog.get("DELTA").files[0].size == 12
    assert text.index("# trailing comment inside GAMMA") < text.index("  DELTA:") < text.index("# end of file")

    # changing one field of ALPHA keeps its inline comments too
    data = preset_data(text, "ALPHA")
    data["files"][0]["size"] = 123
    update_preset(path, "ALPHA", data)
    after = path.read_text()
    for line in comment_lines(COMMENTED):
        if "from the hub" in line:
            continue  # its own line changed, the comment must still be there:
        assert line in after, line
    assert "alpha.safetensors   # from the hub" in after
    assert "# short name" in after and "# the first one" in after
    assert load_text(after).get("ALPHA").files[0].size == 123

    # removing GAMMA leaves every other comment in place
    remove_preset(path, "gamma")
    final = path.read_text()
    assert "GAMMA" not in final
    for line in comment_lines(COMMENTED):
        if "inside GAMMA" in line or "from the hub" in line:
            continue
        assert line in final, line
    assert set(load_text(final).presets) == {"ALPHA", "BETA", "DELTA"}


def test_edits_of_the_default_catalog_change_only_that_preset(tmp_path: Path) -> None:
    path = tmp_path / "presets.yaml"
    shutil.copy(DEFAULT_PATH, path)
    original = DEFAULT_PATH.read_text().splitlines(keepends=True)
    data = preset_data("".join(original), "FLUX_DEV_BASIC")
    data["vram_gb"] = 24
    update_preset(path, "FLUX_DEV_BASIC", data)
    changed = path.read_text().splitlines(keepends=True)
    assert len(changed) == len(original)
    diff = [i for i, (a, b) in enumerate(zip(original, changed, strict=True)) if a != b]
    assert len(diff) == 1 and changed[diff[0]] == "    vram_gb: 24\n"


def test_invalid_edits_are_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "presets.yaml"
    path.write_text(COMMENTED)
    before = path.read_bytes()
    bad = preset_data(COMMENTED, "ALPHA")
    bad["files"][0]["path"] = "../../etc/passwd"
    with pytest.raises(CatalogError, match="preset ALPHA, field files"):
        update_preset(path, "ALPHA", bad)
    with pytest.raises(CatalogError, match="already exists"):
        add_preset(path, {"id": "ALPHA", **preset_data(COMMENTED, "ALPHA")})
    with pytest.raises(CatalogError, match="closest: ALPHA"):
        remove_preset(path, "ALPHAA")
    with pytest.raises(CatalogError, match="YAML"):
        save_text(path, "presets: [\n")
    with pytest.raises(CatalogError):
        add_preset(path, {"name": "no id"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".presets.yaml.lock", "presets.yaml"]


def test_save_text_is_atomic_and_keeps_the_mode(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "presets.yaml"
    path.write_text(COMMENTED)
    path.chmod(0o600)
    new = COMMENTED.replace("name: Gamma", "name: Gamma 2")
    save_text(path, new)
    assert path.read_text() == new and (path.stat().st_mode & 0o777) == 0o600

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(catalog_module.os, "replace", broken_replace)
    with pytest.raises(CatalogError, match="No space left on device; the file is unchanged"):  # issue 11
        save_text(path, COMMENTED)
    assert path.read_text() == new
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    path = tmp_path / "presets.yaml"
    path.write_bytes(COMMENTED.replace("\n", "\r\n").encode())
    data = preset_data(COMMENTED, "GAMMA")
    data["name"] = "G"
    update_preset(path, "GAMMA", data)
    raw = path.read_bytes()
    assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    assert load_catalog(path).get("GAMMA").name == "G"


def test_seed_catalog_copies_the_default_once(settings) -> None:
    seed_catalog(settings)
    assert settings.presets_file.read_bytes() == DEFAULT_PATH.read_bytes()
    settings.presets_file.write_text(COMMENTED)
    seed_catalog(settings)  # same image: the user's file is left alone
    assert settings.presets_file.read_text() == COMMENTED
