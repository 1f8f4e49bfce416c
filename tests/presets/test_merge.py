"""presets.merge: a newer default (image update or `presets update`) merges into the user's
file: new presets added, unedited ones updated, the user's edits and deletions kept."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from presets import catalog as catalog_module
from presets import merge
from presets.catalog import load_catalog, load_text
from presets.merge import merge_text, seed, update_catalog, version_key
from services.errors import CatalogError
from services.settings import load_settings

BASE = """\
metadata:
  version: 1.0.0
presets:
  ALPHA:
    name: Alpha
    type: video
    files:
      - path: vae/a.safetensors
        url: https://example.org/a.safetensors
  BETA:
    name: Beta
    type: image
    files:
      - path: vae/b.safetensors
        url: https://example.org/b.safetensors
  GAMMA:
    name: Gamma
    type: audio
    files:
      - path: vae/g.safetensors
        url: https://example.org/g.safetensors
  DELTA:
    name: Delta
    type: audio
    files:
      - path: vae/d.safetensors
        url: https://example.org/d.safetensors
"""

# The user edited BETA (with a comment), deleted GAMMA, left ALPHA and DELTA alone, added MINE.
USER = (
    BASE.replace("    name: Beta\n", "    name: My Beta   # renamed by me\n")
    .replace(BASE[BASE.index("  GAMMA:"):BASE.index("  DELTA:")], "")
    + """\
  # my own preset
  MINE:
    name: Mine
    type: image
    files:
      - path: loras/mine.safetensors
        url: https://example.org/mine.safetensors
"""
)

# Upstream 1.1.0: ALPHA and BETA and GAMMA changed, DELTA dropped, EPSILON new.
NEW = (
    BASE.replace("version: 1.0.0", "version: 1.1.0")
    .replace("name: Alpha", "name: Alpha v2")
    .replace("name: Beta", "name: Beta v2")
    .replace("name: Gamma", "name: Gamma v2")
    .replace(BASE[BASE.index("  DELTA:"):], "")
    + """\
  EPSILON:
    name: Epsilon
    type: video
    files:
      - path: vae/e.safetensors
        url: https://example.org/e.safetensors
"""
)


def test_three_way_merge() -> None:
    result = merge_text(USER, NEW, BASE)
    assert result.added == ["EPSILON"]
    assert result.updated == ["ALPHA"]
    assert result.kept == ["BETA"]
    assert result.deleted_by_user == ["GAMMA"]
    assert result.dropped_upstream == ["DELTA"]
    assert (result.from_version, result.to_version) == ("1.0.0", "1.1.0")
    catalog = load_text(result.text)
    assert list(catalog.presets) == ["ALPHA", "BETA", "DELTA", "MINE", "EPSILON"]
    assert catalog.get("ALPHA").name == "Alpha v2"
    assert catalog.get("BETA").name == "My Beta"
    assert catalog.metadata["default_version"] == "1.1.0"
    assert "    name: My Beta   # renamed by me\n" in result.text
    assert "  # my own preset\n  MINE:\n" in result.text
    summary = result.summary()
    assert "added: EPSILON" in summary and "kept your edits" in summary and "BETA" in summary
    # merging the same catalog again changes nothing
    again = merge_text(result.text, NEW, NEW)
    assert not again.changed and again.added == [] and again.updated == []


def test_without_a_base_only_new_presets_are_added() -> None:
    result = merge_text(USER, NEW, None)
    assert result.added == ["GAMMA", "EPSILON"]  # no base: GAMMA's deletion cannot be known
    assert result.updated == [] and sorted(result.kept) == ["ALPHA", "BETA"]


SPEECH = """\
  SPEECH:
    name: Speech
    type: audio
    files:
      - path: TTS/voice.safetensors
        url: https://example.org/voice.safetensors
"""


@pytest.mark.parametrize("with_metadata", [True, False])
def test_a_new_preset_in_an_extra_folder_brings_the_folder_along(with_metadata: bool) -> None:
    """A default preset in a folder of the default's metadata.extra_folders (models/TTS) is merged
    into a file that lacks that folder, or lacks metadata altogether, instead of being left out."""
    new = NEW.replace("  version: 1.1.0\n", "  version: 1.1.0\n  extra_folders: [TTS]\n") + SPEECH
    user = USER if with_metadata else USER.replace("metadata:\n  version: 1.0.0\n", "")
    result = merge_text(user, new, None)
    assert "SPEECH" in result.added and not result.conflicts
    catalog = load_text(result.text)
    assert catalog.metadata["extra_folders"] == ["TTS"]
    assert [f.path for f in catalog.get("SPEECH").files] == ["TTS/voice.safetensors"]
    assert "    name: My Beta   # renamed by me\n" in result.text
    assert not merge_text(result.text, new, new).changed


def test_merge_refuses_invalid_input() -> None:
    with pytest.raises(CatalogError):
        merge_text("presets: [\n", NEW, BASE)
    with pytest.raises(CatalogError):
        merge_text(USER, NEW.replace("type: video", "type: film"), BASE)


def test_version_key() -> None:
    assert version_key("2.10.1") > version_key("2.9.9") > version_key(None)
    assert version_key("1.0.0+build") == (1, 0, 0)


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings({"WORKSPACE": str(tmp_path / "ws")})


@pytest.fixture
def image_default(tmp_path: Path, monkeypatch):
    """Point the baked default at a file the test can change, as a new image would."""
    path = tmp_path / "image" / "presets.yaml"
    path.parent.mkdir()
    path.write_text(BASE)
    monkeypatch.setattr(merge, "DEFAULT_PATH", path)
    monkeypatch.setattr(catalog_module, "DEFAULT_PATH", path)
    return path


def test_seed_first_start_then_newer_image(settings, image_default: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    assert seed(settings) is None
    assert settings.presets_file.read_text() == BASE
    assert merge.base_path(settings).read_text() == BASE

    settings.presets_file.write_text(USER)  # the user edits
    assert seed(settings) is None  # same image: nothing to do
    assert settings.presets_file.read_text() == USER

    image_default.write_text(NEW)  # a newer image
    result = seed(settings)
    assert result is not None and result.added == ["EPSILON"] and result.updated == ["ALPHA"]
    merged = load_catalog(settings.presets_file)
    assert merged.get("BETA").name == "My Beta" and "GAMMA" not in merged
    assert merge.base_path(settings).read_text() == NEW
    assert "presets: catalog 1.0.0 -> 1.1.0" in caplog.text

    image_default.write_text(BASE)  # an older image must not undo anything
    before = settings.presets_file.read_text()
    seed(settings)
    assert settings.presets_file.read_text() == before


def test_seed_keeps_an_invalid_user_file_and_retries_later(settings, image_default: Path, caplog) -> None:
    seed(settings)
    settings.presets_file.write_text("presets: [broken\n")
    image_default.write_text(NEW)
    assert seed(settings) is None
    assert settings.presets_file.read_text() == "presets: [broken\n"
    assert merge.base_path(settings).read_text() == BASE  # not recorded: merged on a later start
    assert "could not merge" in caplog.text
    settings.presets_file.write_text(USER)
    assert seed(settings).added == ["EPSILON"]


def test_update_from_a_file_and_dry_run(settings, image_default: Path, tmp_path: Path) -> None:
    seed(settings)
    settings.presets_file.write_text(USER)
    newer = tmp_path / "newer.yaml"
    newer.write_text(NEW)
    dry = update_catalog(settings, str(newer), dry_run=True)
    assert dry.changed and settings.presets_file.read_text() == USER
    result = update_catalog(settings, str(newer))
    assert result.added == ["EPSILON"]
    assert "EPSILON" in load_catalog(settings.presets_file)
    older = tmp_path / "older.yaml"
    older.write_text(BASE.replace("version: 1.0.0", "version: 0.9.0"))
    assert not update_catalog(settings, str(older)).changed
    with pytest.raises(CatalogError):
        update_catalog(settings, str(tmp_path / "missing.yaml"))


def test_update_from_a_url(settings, image_default: Path, range_server) -> None:
    seed(settings)
    url = range_server.add("/presets.yaml", NEW.encode())
    result = update_catalog(settings, url)
    assert result.added == ["EPSILON"] and result.updated == ["ALPHA", "BETA", "GAMMA"]
    assert result.dropped_upstream == ["DELTA"]
    assert "EPSILON" in load_catalog(settings.presets_file)
    assert not (settings.state_dir / "presets.update.yaml").exists()
    broken = range_server.add("/broken.yaml", b"presets: [\n")
    with pytest.raises(CatalogError):
        update_catalog(settings, broken)


def test_update_without_a_source_uses_presets_update_url_or_says_what_to_do(settings, image_default: Path,
                                                                              range_server) -> None:
    """No built-in catalog address: the catalog comes from PRESETS_UPDATE_URL or the command line."""
    import dataclasses

    seed(settings)
    with pytest.raises(CatalogError, match="PRESETS_UPDATE_URL"):
        update_catalog(settings)
    url = range_server.add("/published.yaml", NEW.encode())
    result = update_catalog(dataclasses.replace(settings, presets_update_url=url))
    assert result.added == ["EPSILON"]
