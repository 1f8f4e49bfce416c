"""`comfypod models add/list/rm` through the real click group."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from presets.download import part_path
from presets.queue import JobQueue
from services.cli import cli
from tests.support.range_server import pseudo_random, safetensors_blob


@pytest.fixture
def run(settings):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(cli, ["models", *args], obj={"settings": settings}, input=input)

    return invoke


def test_add_downloads_a_direct_url_into_the_folder(settings, run, range_server):
    data = safetensors_blob(200 * 1024)
    url = range_server.add("/files/detail.safetensors", data)
    result = run("add", url, "--folder", "loras")
    assert result.exit_code == 0, result.output
    assert (settings.models_dir / "loras/detail.safetensors").read_bytes() == data
    assert "verified" in result.output


def test_add_with_a_name_and_a_server_given_name(settings, run, range_server):
    url = range_server.add("/files/x.bin", pseudo_random(5000))
    assert run("add", url, "--folder", "upscale_models", "--name", "4x.pth").exit_code == 0
    assert (settings.models_dir / "upscale_models/4x.pth").exists()
    civitai_like = range_server.add("/api/download/models/77", safetensors_blob(4096), disposition="civ.safetensors")
    assert run("add", civitai_like, "-f", "loras").exit_code == 0
    assert (settings.models_dir / "loras/civ.safetensors").exists()


def test_add_reports_a_failure_and_leaves_nothing(settings, run, range_server):
    url = range_server.add("/files/gated.safetensors", pseudo_random(100), gated=True, repo="org/model")
    result = run("add", url, "--folder", "loras")
    assert result.exit_code == 1
    assert "licence not accepted" in result.output
    assert not (settings.models_dir / "loras/gated.safetensors").exists()


def test_add_refuses_an_unknown_folder(run):
    result = run("add", "https://example.com/a.safetensors", "--folder", "nope")
    assert result.exit_code != 0 and "unknown model folder" in str(result.exception)


def test_add_no_follow_queues_only(settings, run, range_server, monkeypatch):
    from presets import install

    monkeypatch.setattr(install, "downloader_running", lambda s: True)
    url = range_server.add("/files/q.bin", pseudo_random(100))
    result = run("add", url, "--folder", "vae", "--no-follow")
    assert result.exit_code == 0 and "queued" in result.output
    assert JobQueue(settings.queue_db).active()[0].files[0].path == "vae/q.bin"


def test_list_and_rm(settings, run):
    loras = settings.models_dir / "loras"
    loras.mkdir(parents=True)
    (loras / "a.safetensors").write_bytes(b"x" * 2048)
    (loras / "b.safetensors.part").write_bytes(b"x" * 10)
    (loras / "b.safetensors.lock").write_bytes(b"{}")
    result = run("list")
    assert result.exit_code == 0
    assert "loras/a.safetensors" in result.output and "loras/b.safetensors  (partial download)" in result.output
    rows = json.loads(run("list", "--folder", "loras", "--json").output)
    assert {r["path"]: r["partial"] for r in rows} == {"loras/a.safetensors": False, "loras/b.safetensors": True}
    assert run("rm", "loras/a.safetensors", "--yes").exit_code == 0
    assert not (loras / "a.safetensors").exists()
    assert run("rm", "models/loras/b.safetensors", "-y").exit_code == 0
    assert not part_path(loras / "b.safetensors").exists() and not (loras / "b.safetensors.lock").exists()


def test_rm_refuses_traversal_and_missing_files(settings, run):
    result = run("rm", "../config/presets.yaml", "--yes")
    assert result.exit_code != 0 and "leaves its folder" in str(result.exception)
    result = run("rm", "loras/none.safetensors", "--yes")
    assert result.exit_code != 0 and "no such model file" in str(result.exception)


def test_rm_asks_first(settings, run):
    (settings.models_dir / "vae").mkdir(parents=True)
    target = settings.models_dir / "vae/v.safetensors"
    target.write_bytes(b"x")
    assert run("rm", "vae/v.safetensors", input="n\n").exit_code != 0
    assert target.exists()
