import os
from pathlib import Path

import pytest

from services.errors import PathError, WorkspaceError
from services.paths import MODEL_FOLDERS, WORKSPACE_FOLDERS, ensure_workspace, is_within, within


def test_ensure_workspace_creates_layout(tmp_path):
    created = ensure_workspace(tmp_path)
    for name in WORKSPACE_FOLDERS:
        assert (tmp_path / name).is_dir()
    for name in ("checkpoints", "diffusion_models", "text_encoders", "vae", "clip_vision", "loras",
                 "upscale_models", "audio_encoders", "controlnet"):
        assert name in MODEL_FOLDERS
        assert (tmp_path / "models" / name).is_dir()
    assert created
    assert ensure_workspace(tmp_path) == []


def test_ensure_workspace_never_touches_existing(tmp_path):
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    model = tmp_path / "models" / "checkpoints" / "mine.safetensors"
    model.write_bytes(b"x" * 10)
    os.utime(model, (1000, 1000))
    other = tmp_path / "elsewhere"
    other.mkdir()
    (tmp_path / "models" / "loras").symlink_to(other)
    ensure_workspace(tmp_path)
    assert model.read_bytes() == b"x" * 10 and model.stat().st_mtime == 1000
    assert (tmp_path / "models" / "loras").is_symlink()


def test_ensure_workspace_reports_file_in_the_way(tmp_path):
    (tmp_path / "output").write_text("not a folder")
    with pytest.raises(WorkspaceError, match="output exists but is not a folder"):
        ensure_workspace(tmp_path)
    assert (tmp_path / "output").read_text() == "not a folder"


@pytest.mark.parametrize("rel", ["a.png", "sub/a.png", "./a.png", "sub/../a.png".replace("../", "")])
def test_within_accepts(tmp_path, rel):
    assert within(tmp_path, rel).is_relative_to(tmp_path.resolve())


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../x", "", "a\x00b", "..", "a\\..\\b", "sub/../../x"])
def test_within_rejects(tmp_path, rel):
    with pytest.raises(PathError):
        within(tmp_path, rel)
    assert not is_within(tmp_path, rel)


def test_within_rejects_symlink_out(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "link").symlink_to("/etc")
    with pytest.raises(PathError):
        within(base, "link/passwd")


def test_within_must_exist(tmp_path):
    with pytest.raises(PathError, match="no such file"):
        within(tmp_path, "missing.png", must_exist=True)
    (tmp_path / "here.png").write_bytes(b"")
    assert within(tmp_path, "here.png", must_exist=True) == (tmp_path / "here.png").resolve()


def test_within_base_itself(tmp_path):
    assert within(tmp_path, ".") == Path(tmp_path).resolve()
