"""services/nodes_cli.py: `comfypod nodes list|install|remove|restore|export|import|sync`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from services import nodes
from services.cli import cli
from services.errors import NodeError
from tests.support import pyenv_kit


def run(settings, *args: str):
    return CliRunner().invoke(cli, ["nodes", *args], obj={"settings": settings}, catch_exceptions=True)


def test_list_empty_and_table(settings, tmp_path):
    result = run(settings, "list")
    assert result.exit_code == 0 and "no custom nodes" in result.output
    repo = tmp_path / "repos" / "ComfyUI-Table"
    commit = pyenv_kit.make_node_repo(repo)
    result = run(settings, "install", str(repo))
    assert result.exit_code == 0, result.output
    assert f"installed ComfyUI-Table at {commit}" in result.output
    assert "comfypod ctl restart comfyui" in result.output
    table = run(settings, "list").output.splitlines()
    assert table[0].split() == ["NAME", "FROM", "COMMIT", "REQUIREMENTS", "IMPORT"]
    assert table[1].split() == ["ComfyUI-Table", "user", commit[:10], "none", "unknown"]
    data = json.loads(run(settings, "list", "--json").output)
    assert data["nodes"][0]["commit"] == commit


def test_errors_are_node_errors(settings):
    result = run(settings, "remove", "Nothing")
    assert isinstance(result.exception, NodeError) and result.exception.exit_code == 10
    result = run(settings, "install", "ftp://example.com/x")
    assert isinstance(result.exception, NodeError)


def test_export_to_a_file_and_import_a_bad_file(settings, tmp_path):
    out = tmp_path / "lock.json"
    result = run(settings, "export", "-o", str(out))
    assert result.exit_code == 0
    assert json.loads(out.read_text())["nodes"] == []
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run(settings, "import", str(bad))
    assert isinstance(result.exception, NodeError) and "is not JSON" in str(result.exception)


# ---- acceptance: export on one workspace, import on an empty one -----------------------------------


def test_export_then_import_on_an_empty_workspace_gives_the_same_nodes(pyenv_pod, wheel_index, tmp_path):
    first = pyenv_pod()
    repos = tmp_path / "repos"
    hello = pyenv_kit.make_node_repo(repos / "ComfyUI-Hello", "import cpplain\nVALUE = cpplain.VERSION\n",
                                     requirements="cpplain\n")
    old = pyenv_kit.make_node_repo(repos / "Pinned", "VALUE = 'old'\n")
    pyenv_kit.commit_change(repos / "Pinned", "__init__.py", "VALUE = 'new'\n")
    first.start()
    first.comfypod("nodes", "install", f"file://{repos / 'ComfyUI-Hello'}")
    first.comfypod("nodes", "install", f"file://{repos / 'Pinned'}@{old}")
    (first.workspace / "custom_nodes" / "LocalOnly").mkdir()  # not a git checkout: cannot travel
    lock = tmp_path / "nodes.lock.json"
    first.comfypod("nodes", "export", "-o", str(lock))
    data = json.loads(lock.read_text())
    assert [n["name"] for n in data["not_exported"]] == ["LocalOnly"]
    assert [(n["name"], n["packages"]) for n in data["nodes"]] == [("ComfyUI-Hello", ["cpplain==1.3"]),
                                                                   ("Pinned", [])]

    wheel_index.add("cpplain", "1.4")  # a newer release since: the lock keeps the tested version
    second = pyenv_pod(name="second")
    second.start()
    result = second.comfypod("nodes", "import", str(lock))
    assert "ComfyUI-Hello: installed" in result.stdout and "Pinned: installed" in result.stdout

    def summary(pod):
        return [(n.name, n.url, n.commit) for n in nodes.list_nodes(pod.settings()) if n.name != "LocalOnly"]

    assert summary(second) == summary(first)
    assert [c for _, _, c in summary(second)] == [hello, old]
    hello_node = nodes.get_node(second.settings(), "ComfyUI-Hello")
    assert hello_node.packages == ["cpplain==1.3"], result.stdout
    report = second.start_comfyui()
    assert report["nodes"]["ComfyUI-Hello"]["value"] == "'1.3'"
    assert report["nodes"]["Pinned"]["value"] == "'old'"
    again = second.comfypod("nodes", "import", str(lock)).stdout
    assert "ComfyUI-Hello: present" in again and "Pinned: present" in again


@pytest.mark.parametrize("spec", ["not a url", "ext::sh -c id"])
def test_install_refuses_bad_specs_before_cloning(settings, spec):
    result = run(settings, "install", spec)
    assert isinstance(result.exception, NodeError)
    assert not settings.custom_nodes_dir.exists() or list(settings.custom_nodes_dir.iterdir()) == []


def test_sync_and_constraints_commands(settings):
    result = run(settings, "sync")
    assert result.exit_code == 0, result.output
    result = run(settings, "constraints")
    assert result.exit_code == 0 and result.output.startswith("# Written by ComfyPod")
