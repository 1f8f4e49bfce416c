"""services/nodes.py: the custom nodes folder, image nodes linked in, git installs, ComfyUI's log."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services import nodes, pyenv
from services.errors import NodeError
from tests.support import pyenv_kit


@pytest.mark.parametrize(
    ("spec", "url", "rev"),
    [
        ("https://github.com/kijai/ComfyUI-KJNodes", "https://github.com/kijai/ComfyUI-KJNodes", None),
        ("https://github.com/kijai/ComfyUI-KJNodes.git@v1.2", "https://github.com/kijai/ComfyUI-KJNodes.git", "v1.2"),
        ("https://github.com/a/b@0123abcd", "https://github.com/a/b", "0123abcd"),
        ("git@github.com:a/b.git", "git@github.com:a/b.git", None),
        ("git@github.com:a/b.git@main", "git@github.com:a/b.git", "main"),
        ("https://user@host.example/a/b", "https://user@host.example/a/b", None),
        ("file:///tmp/repo@feature-x", "file:///tmp/repo", "feature-x"),
        ("/srv/nodes/repo", "/srv/nodes/repo", None),
    ],
)
def test_parse_spec(spec, url, rev):
    assert nodes.parse_spec(spec) == (url, rev)


@pytest.mark.parametrize("url", ["https://github.com/a/b", "ssh://git@host/a/b", "file:///tmp/r", "git@host:a/b",
                                 "/tmp/r"])
def test_check_url_accepts(url):
    assert nodes.check_url(url) == url


@pytest.mark.parametrize("url", ["ext::sh -c touch% /tmp/pwned", "--upload-pack=touch", "ftp://host/a", "relative/path",
                                 "fd::17", ""])
def test_check_url_refuses(url):
    with pytest.raises(NodeError):
        nodes.check_url(url)


def test_names_and_public_urls():
    assert nodes.name_from_url("https://github.com/city96/ComfyUI-GGUF.git") == "ComfyUI-GGUF"
    assert nodes.name_from_url("git@github.com:rgthree/rgthree-comfy") == "rgthree-comfy"
    assert nodes.public_url("https://user:ghp_secret@github.com/a/b") == "https://github.com/a/b"
    for bad in ("..", ".hidden", "a/b", ""):
        with pytest.raises(NodeError):
            nodes.check_name(bad)


# ---- image nodes linked into the workspace -------------------------------------------------------


def bake(settings, *names: str) -> Path:
    root = nodes.baked_dir(settings)
    for name in names:
        if name.endswith(".py"):
            root.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("NODE_CLASS_MAPPINGS = {}\n")
        else:
            (root / name).mkdir(parents=True)
            (root / name / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    return root


def test_image_nodes_are_linked_and_a_users_node_of_the_same_name_wins(make_settings, tmp_path):
    settings = make_settings(APP_DIR=str(tmp_path / "app"))
    baked = bake(settings, "ComfyUI-Manager", "KJNodes", "one_file.py")
    mine = settings.custom_nodes_dir / "KJNodes"
    mine.mkdir(parents=True)
    notes = nodes.link_baked(settings)
    folder = settings.custom_nodes_dir
    assert os.readlink(folder / "ComfyUI-Manager") == str(baked / "ComfyUI-Manager")
    assert os.readlink(folder / "one_file.py") == str(baked / "one_file.py")
    assert not mine.is_symlink()
    assert "KJNodes: the workspace's own copy is used instead of the image's" in notes
    listed = {n.name: n.origin for n in nodes.list_nodes(settings)}
    assert listed == {"ComfyUI-Manager": "image", "KJNodes": "user", "one_file.py": "image"}
    assert nodes.link_baked(settings) == ["KJNodes: the workspace's own copy is used instead of the image's"]


def test_removing_an_image_node_hides_it_until_restored(make_settings, tmp_path):
    settings = make_settings(APP_DIR=str(tmp_path / "app"))
    baked = bake(settings, "Extra")
    nodes.link_baked(settings)
    assert "stays off after restarts" in nodes.remove_node(settings, "Extra")
    nodes.link_baked(settings)
    assert not (settings.custom_nodes_dir / "Extra").exists()
    assert (baked / "Extra").is_dir()
    assert nodes.hidden(settings) == {"Extra"}
    nodes.restore_node(settings, "Extra")
    assert (settings.custom_nodes_dir / "Extra").is_symlink()


def test_a_node_gone_from_a_newer_image_is_unlinked_and_disabled_ones_stay_off(make_settings, tmp_path):
    settings = make_settings(APP_DIR=str(tmp_path / "app"))
    baked = bake(settings, "Old", "Off")
    (settings.custom_nodes_dir / ".disabled").mkdir(parents=True)
    os.symlink(baked / "Off", settings.custom_nodes_dir / ".disabled" / "Off")  # how ComfyUI-Manager disables
    nodes.link_baked(settings)
    (baked / "Old" / "__init__.py").unlink()
    (baked / "Old").rmdir()
    assert nodes.link_baked(settings) == ["Old: no longer in the image, link removed"]
    assert sorted(os.listdir(settings.custom_nodes_dir)) == [".disabled"]
    (off,) = nodes.list_nodes(settings)
    assert (off.name, off.enabled) == ("Off", False)


# ---- ComfyUI's verdict -------------------------------------------------------------------------

LOG = """\
2025-12-04T23:40:01.000000 - Import times for custom nodes:
2025-12-04T23:40:01.000001 -    0.0 seconds: /workspace/custom_nodes/Gone
2025-12-04T23:40:01.000002 -
2025-12-04T23:43:14.100000 - Traceback (most recent call last):
2025-12-04T23:43:14.100001 - ModuleNotFoundError: No module named 'cpmissing'
[WARNING] Cannot import /workspace/custom_nodes/Broken module for custom nodes: No module named 'cpmissing'
2025-12-04T23:43:15.385502 -
Import times for custom nodes:
2025-12-04T23:43:15.385720 -    0.0 seconds: /app/ComfyUI/custom_nodes/websocket_image_save.py
2025-12-04T23:43:15.385799 -    0.0 seconds (IMPORT FAILED): /workspace/custom_nodes/Broken
[INFO]    1.6 seconds: /workspace/custom_nodes/ComfyUI-WanVideoWrapper
2025-12-04T23:43:15.386134 -
Starting server
   9.9 seconds: /not/a/node/line
"""


def test_import_status_reads_the_last_start_of_comfyuis_log(tmp_path):
    log = tmp_path / "comfyui.log"
    log.write_text(LOG)
    seen = nodes.import_status(log)
    assert set(seen) == {"websocket_image_save.py", "Broken", "ComfyUI-WanVideoWrapper"}
    assert seen["Broken"].failed and seen["Broken"].error == "No module named 'cpmissing'"
    assert not seen["ComfyUI-WanVideoWrapper"].failed and seen["ComfyUI-WanVideoWrapper"].seconds == 1.6
    assert nodes.import_status(tmp_path / "missing.log") == {}


def test_list_shows_import_status_and_requirements(settings):
    for name in ("Broken", "Fine"):
        (settings.custom_nodes_dir / name).mkdir(parents=True)
    (settings.custom_nodes_dir / "Fine" / "requirements.txt").write_text("cpplain\n")
    settings.logs_dir.mkdir(parents=True)
    (settings.logs_dir / "comfyui.log").write_text(
        "Import times for custom nodes:\n   0.0 seconds (IMPORT FAILED): /w/custom_nodes/Broken\n"
        "   0.1 seconds: /w/custom_nodes/Fine\n")
    listed = {n.name: n for n in nodes.list_nodes(settings)}
    assert (listed["Broken"].imported, listed["Fine"].imported) == ("failed", "ok")
    assert (listed["Broken"].requirements, listed["Fine"].requirements) == ("none", "pending")


# ---- install and remove -------------------------------------------------------------------------


def test_install_at_a_revision_then_remove(settings, tmp_path):
    repo = tmp_path / "repos" / "ComfyUI-Thing"
    first = pyenv_kit.make_node_repo(repo, "VALUE = 1\n")
    pyenv_kit.commit_change(repo, "__init__.py", "VALUE = 2\n")
    done = nodes.install_node(settings, f"file://{repo}@{first[:12]}")
    assert done.requirements is None
    node = done.node
    assert (node.name, node.origin, node.kind, node.commit, node.url) == (
        "ComfyUI-Thing", "user", "git", first, f"file://{repo}")
    assert (settings.custom_nodes_dir / "ComfyUI-Thing" / "__init__.py").read_text() == "VALUE = 1\n"
    with pytest.raises(NodeError, match="already installed"):
        nodes.install_node(settings, f"file://{repo}")
    assert nodes.remove_node(settings, "ComfyUI-Thing") == "ComfyUI-Thing removed"
    assert list(settings.custom_nodes_dir.iterdir()) == []
    with pytest.raises(NodeError, match="no custom node named ComfyUI-Thing"):
        nodes.remove_node(settings, "ComfyUI-Thing")


def test_install_by_branch_with_another_name_replaces_an_image_link(make_settings, tmp_path):
    settings = make_settings(APP_DIR=str(tmp_path / "app"))
    bake(settings, "Mine")
    nodes.link_baked(settings)
    repo = tmp_path / "repos" / "upstream"
    pyenv_kit.make_node_repo(repo, "VALUE = 1\n")
    pyenv_kit.git(repo, "checkout", "-q", "-b", "dev")
    dev = pyenv_kit.commit_change(repo, "__init__.py", "VALUE = 3\n")
    pyenv_kit.git(repo, "checkout", "-q", "main")
    node = nodes.install_node(settings, f"{repo}@dev", name="Mine").node
    assert (node.origin, node.commit, node.branch) == ("user", dev, "dev")
    assert not (settings.custom_nodes_dir / "Mine").is_symlink()


def test_a_failed_clone_leaves_nothing(settings, tmp_path):
    with pytest.raises(NodeError, match="git clone failed"):
        nodes.install_node(settings, f"file://{tmp_path / 'nope'}")
    with pytest.raises(NodeError, match="git checkout failed"):
        repo = tmp_path / "repos" / "r"
        pyenv_kit.make_node_repo(repo)
        nodes.install_node(settings, f"{repo}@no-such-branch")
    assert list(settings.custom_nodes_dir.iterdir()) == []


def test_requirements_are_not_installed_for_a_foreign_interpreter(settings, tmp_path):
    repo = tmp_path / "repos" / "WithReqs"
    pyenv_kit.make_node_repo(repo, requirements="cpplain\n")
    done = nodes.install_node(settings, str(repo))
    assert done.requirements is not None and done.requirements.status == "off"
    assert "not the image's venv" in done.requirements.message
    assert pyenv.node_states(settings) == {}


def test_read_lock_refuses_what_is_not_a_lock():
    with pytest.raises(NodeError, match="not a ComfyPod nodes lock file"):
        nodes.read_lock({"nodes": []})
    with pytest.raises(NodeError, match="needs a name and a url"):
        nodes.read_lock({"format": "comfypod-nodes", "nodes": [{"name": "x"}]})
    with pytest.raises(NodeError, match="is not allowed"):
        nodes.read_lock({"format": "comfypod-nodes", "nodes": [{"name": "x", "url": "ext::sh"}]})
    with pytest.raises(NodeError, match="not a usable custom node name"):
        nodes.read_lock({"format": "comfypod-nodes", "nodes": [{"name": "../x", "url": "https://h/a/b"}]})
