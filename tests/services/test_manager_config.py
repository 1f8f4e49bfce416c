"""services/manager_config.py: ComfyUI-Manager's config written where its version reads it."""

from __future__ import annotations

import configparser

import pytest

from services import constraints, manager_config


def make_manager(settings, version: str | None, name: str = "ComfyUI-Manager"):
    folder = settings.custom_nodes_dir / name
    (folder / "glob").mkdir(parents=True)
    if version:
        (folder / "pyproject.toml").write_text(f'[project]\nname = "comfyui-manager"\nversion = "{version}"\n')
    return folder


def read(path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return parser


def test_nothing_without_manager(settings):
    assert manager_config.configure(settings) == []
    assert not (settings.comfyui_dir / "user").exists()


@pytest.mark.parametrize("version", ["3.31.9", None])
def test_recent_manager_reads_the_user_directory(make_settings, tmp_path, version):
    settings = make_settings(COMFYUI_DIR=str(tmp_path / "ComfyUI"))
    make_manager(settings, version, name="comfyui-manager")
    written = manager_config.configure(settings)
    folder = tmp_path / "ComfyUI" / "user" / "default" / "ComfyUI-Manager"
    assert written == [folder / "config.ini", folder / "pip_blacklist.list"]
    config = read(folder / "config.ini")["default"]
    assert config["security_level"] == "normal"
    assert config["use_uv"] == "False"
    assert config["downgrade_blacklist"].split(",") == list(constraints.PINNED)
    assert (folder / "pip_blacklist.list").read_text().split() == list(constraints.PINNED)


def test_old_manager_reads_its_own_folder(make_settings, tmp_path):
    settings = make_settings(COMFYUI_DIR=str(tmp_path / "ComfyUI"))
    folder = make_manager(settings, None)
    (folder / "glob" / "manager_core.py").write_text("version_code = [2, 48, 1]\n")
    assert manager_config.configure(settings)[0] == folder / "config.ini"


def test_user_directory_from_comfyui_args(make_settings, tmp_path):
    settings = make_settings(COMFYUI_ARGS=f"--user-directory {tmp_path / 'user'}")
    assert manager_config.user_directory(settings) == tmp_path / "user"


def test_the_packaged_manager_reads_user_manager(make_settings, tmp_path):
    settings = make_settings(COMFYUI_DIR=str(tmp_path / "ComfyUI"))
    written = manager_config.configure(settings, packaged=True)
    assert written[0] == tmp_path / "ComfyUI" / "user" / "__manager" / "config.ini"


def test_the_users_other_choices_are_kept():
    existing = "[default]\nsecurity_level = weak\nshare_option = none\ndowngrade_blacklist = diffusers\n"
    text = manager_config.render_config(existing, ["torch", "numpy"])
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(text)
    assert config["default"]["security_level"] == "normal"
    assert config["default"]["share_option"] == "none"
    assert config["default"]["downgrade_blacklist"] == "diffusers,torch,numpy"
    assert manager_config.render_blacklist("onnxruntime\ntorch\n", ["torch", "numpy"]) == "onnxruntime\ntorch\nnumpy\n"
