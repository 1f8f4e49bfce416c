"""`comfypod presets ...`: every subcommand, check-urls and pin against a local server that
answers like the Hugging Face hub (X-Repo-Commit, X-Linked-Etag, X-Linked-Size)."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from presets.catalog import DEFAULT_PATH, load_catalog, seed_catalog
from services.cli import cli, main
from services.errors import CatalogError
from services.settings import load_settings
from tests.plugins.downloads import put

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings({"WORKSPACE": str(tmp_path / "ws")})


def run(settings, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["presets", *args], obj={"settings": settings}, input=input)


# ---- read-only commands ---------------------------------------------------------------------


def test_list(settings) -> None:
    result = run(settings, "list", "--type", "audio")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 5 and all(" audio " in line and " missing " in line for line in lines)
    data = json.loads(run(settings, "list", "--json").output)
    assert len(data) == 56 and data[0]["id"] == "LTX_VIDEO_T2V" and data[0]["state"] == "missing"
    assert run(settings, "list", "--installed").output.strip() == "no presets match"


def test_list_installed_and_status(settings) -> None:
    catalog = load_catalog(DEFAULT_PATH)
    for item in catalog.get("ACE_STEP_V1_3_5B").files:
        put(settings.models_dir, item.path, 10)
    put(settings.models_dir, "audio_encoders/ace_audio_encoder.pth", 10)  # half of another preset
    result = run(settings, "list", "--installed")
    assert [line.split()[0] for line in result.output.splitlines()] == ["ACE_STEP_V1_3_5B", "ACE_STEP_AUDIO_TO_AUDIO"]
    status = run(settings, "status")
    assert status.exit_code == 0
    assert status.output.splitlines()[0].startswith("2 installed, 2 partial, 0 damaged, 52 missing; 20 B on disk")
    data = json.loads(run(settings, "status", "--json").output)
    assert data["disk_bytes"] == 20 and data["presets"]["ACE_STEP_V1_3_5B"]["state"] == "installed"


def test_show_and_search(settings) -> None:
    result = run(settings, "show", "flux-dev-basic")
    assert result.exit_code == 0
    assert result.output.startswith("FLUX_DEV_BASIC: FLUX.1 dev\n")
    assert "text_encoders/t5xxl_fp16.safetensors: missing, ~9.1 GiB, shared with" in result.output
    assert "last check 2026-03-01: needs_token (HTTP 401): set HF_TOKEN" in result.output
    data = json.loads(run(settings, "show", "FLUX_DEV_BASIC", "--json").output)
    assert data["status"]["state"] == "missing" and len(data["files"]) == 4
    unknown = run(settings, "show", "flux")
    assert isinstance(unknown.exception, CatalogError) and "closest: FLUX_" in str(unknown.exception)
    found = run(settings, "search", "qwen", "edit")
    assert found.output.splitlines()[0].startswith("QWEN_IMAGE_EDIT")
    assert run(settings, "search", "zzzzqqqq-nothing").exit_code == 1


def test_validate(settings, tmp_path: Path, capsys) -> None:
    assert run(settings, "validate").exit_code == 0  # no user file yet: the baked default
    assert main(["presets", "validate", str(DEFAULT_PATH)]) == 0
    assert "56 presets, valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("presets:\n  X:\n    name: X\n    type: film\n    files: []\n")
    assert main(["presets", "validate", str(bad)]) == 6
    err = capsys.readouterr().err
    assert "bad.yaml:4:11: preset X, field type: 'film' is not one of" in err
    assert "bad.yaml:5:12: preset X, field files: needs at least 1" in err
    assert err.rstrip().endswith("comfypod: " + str(bad) + ": 2 errors")
    result = run(settings, "validate", str(bad), "--json")
    assert result.exit_code == 6
    report = json.loads(result.output)
    assert not report["valid"] and [(i["line"], i["column"]) for i in report["issues"]] == [(4, 11), (5, 12)]
    assert main(["presets", "validate", str(tmp_path / "nope.yaml")]) != 0


# ---- remove -----------------------------------------------------------------------------------


def test_remove_keeps_files_other_installed_presets_need(settings) -> None:
    seed_catalog(settings)
    catalog = load_catalog(settings.presets_file)
    for pid in ("FLUX_SCHNELL_BASIC", "FLUX_DEV_BASIC"):
        for item in catalog.get(pid).files:
            put(settings.models_dir, item.path, 1)
    dry = run(settings, "remove", "flux-dev-basic", "--dry-run")
    assert dry.exit_code == 0 and "flux1-dev.safetensors" in dry.output and "1 file(s)" in dry.output
    assert run(settings, "remove", "flux_dev_basic", input="n\n").exit_code != 0
    assert (settings.models_dir / "diffusion_models/flux1-dev.safetensors").exists()
    assert run(settings, "remove", "FLUX_DEV_BASIC", "--yes").exit_code == 0
    assert not (settings.models_dir / "diffusion_models/flux1-dev.safetensors").exists()
    assert (settings.models_dir / "vae/ae.safetensors").exists()  # FLUX_SCHNELL_BASIC needs it
    assert run(settings, "remove", "FLUX_SCHNELL_BASIC", "-y").exit_code == 0
    assert not (settings.models_dir / "vae/ae.safetensors").exists()
    assert run(settings, "remove", "FLUX_SCHNELL_BASIC", "-y").output.strip() == "nothing to delete"
    assert isinstance(run(settings, "remove", "nope", "-y").exception, CatalogError)


def test_remove_two_presets_at_once_removes_their_shared_files(settings) -> None:
    catalog = load_catalog(DEFAULT_PATH)
    for pid in ("FLUX_SCHNELL_BASIC", "FLUX_DEV_BASIC"):
        for item in catalog.get(pid).files:
            put(settings.models_dir, item.path, 1)
    assert run(settings, "remove", "FLUX_SCHNELL_BASIC", "FLUX_DEV_BASIC", "-y").exit_code == 0
    assert not (settings.models_dir / "vae/ae.safetensors").exists()


# ---- install (wired to presets.install) -----------------------------------------------------


def test_install_calls_the_installer(settings, monkeypatch) -> None:
    calls = []

    def fake_install(settings_, ids, dry_run=False, follow=True):
        calls.append((list(ids), dry_run, follow))
        return 0 if dry_run else 1

    module = types.ModuleType("presets.install")
    module.install_presets = fake_install
    monkeypatch.setitem(sys.modules, "presets.install", module)
    assert run(settings, "install", "FLUX_DEV_BASIC", "--dry-run").exit_code == 0
    assert run(settings, "install", "a", "b").exit_code == 1
    assert calls == [(["FLUX_DEV_BASIC"], True, True), (["a", "b"], False, True)]


# ---- network commands against a local hub -----------------------------------------------------


def _local_catalog(settings, urls: dict[str, str], sizes: dict[str, int] | None = None) -> None:
    lines = ["metadata:\n  version: 1.0.0\npresets:\n"]
    for n, (name, url) in enumerate(urls.items()):
        lines.append(f"  P{n}:\n    name: {name}\n    type: image\n    files:\n"
                     f"      # file {name}\n      - path: checkpoints/{name}.safetensors\n        url: {url}\n")
        if sizes and name in sizes:
            lines.append(f"        size: {sizes[name]}\n")
    settings.presets_file.parent.mkdir(parents=True, exist_ok=True)
    settings.presets_file.write_text("".join(lines))


def test_check_urls(settings, range_server) -> None:
    urls = {
        "good": range_server.add("/o/good/resolve/main/good.safetensors", b"x" * 100),
        "private": range_server.add("/o/private/resolve/main/p.safetensors", b"y" * 10, token="secret"),
        "gated": range_server.add("/o/gated/resolve/main/g.safetensors", b"z", gated=True),
        "gone": range_server.url("/o/gone/resolve/main/missing.safetensors"),
    }
    _local_catalog(settings, urls)
    result = run(settings, "check-urls")
    assert result.exit_code == 1
    by_name = {line.split()[2]: line.split()[0] for line in result.output.splitlines()[:-1]}
    by_url = {name: by_name[url] for name, url in urls.items()}
    assert by_url == {"good": "ok", "private": "needs_token", "gated": "gated", "gone": "not_found"}
    assert result.output.splitlines()[-1] == "1 ok, 3 with problems, of 4 URLs"
    only = run(settings, "check-urls", "p0", "--json")
    assert only.exit_code == 0 and json.loads(only.output)[0]["status"] == "ok"

    before = settings.presets_file.read_text()
    assert run(settings, "check-urls", "--record").exit_code == 1
    after = settings.presets_file.read_text()
    catalog = load_catalog(settings.presets_file)
    assert catalog.get("P0").files[0].last_check["status"] == "ok"
    assert catalog.get("P1").files[0].last_check["status"] == "needs_token"
    for line in before.splitlines():
        if line.strip().startswith("#"):
            assert line in after


def test_pin_records_commit_sha256_and_size(settings, range_server) -> None:
    data = b"safetensors-bytes" * 64
    url = range_server.add("/org/model/resolve/main/model.safetensors", data, hf=True)
    plain = range_server.add("/plain/file.safetensors", b"abc")  # not a hub URL: left alone
    nohub = range_server.add("/org/other/resolve/main/other.safetensors", b"q")  # no hub headers
    _local_catalog(settings, {"model": url, "plain": plain, "other": nohub})
    result = run(settings, "pin", "P0", "--dry-run")
    assert result.exit_code == 0 and f"@ {COMMIT[:12]}" in result.output
    assert "resolve/main" in settings.presets_file.read_text()

    result = run(settings, "pin")
    assert result.exit_code == 1  # `other` could not be pinned
    assert "skipped" in result.output and "1 file(s) pinned in 1 preset(s)" in result.output
    catalog = load_catalog(settings.presets_file)
    item = catalog.get("P0").files[0]
    assert item.url == url.replace("/resolve/main/", f"/resolve/{COMMIT}/")
    assert item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.size == len(data)
    assert item.source["revision"] == COMMIT
    assert catalog.get("P1").files[0].url == plain
    assert "# file model" in settings.presets_file.read_text()
    # already pinned: nothing left to do for P0
    assert run(settings, "pin", "P0").output.strip() == "nothing to pin"


def test_update_command(settings, tmp_path: Path) -> None:
    seed_catalog(settings)
    newer = tmp_path / "newer.yaml"
    text = DEFAULT_PATH.read_text().replace("version: 2.0.0", "version: 2.1.0", 1)
    text += ("  EXTRA_PRESET:\n    name: Extra\n    type: image\n    files:\n"
             "      - path: vae/extra.safetensors\n        url: https://example.org/extra.safetensors\n")
    newer.write_text(text)
    dry = run(settings, "update", str(newer), "--dry-run")
    assert dry.exit_code == 0 and "added: EXTRA_PRESET" in dry.output and "dry run" in dry.output
    assert "EXTRA_PRESET" not in settings.presets_file.read_text()
    result = run(settings, "update", str(newer), "--json")
    assert json.loads(result.output)["added"] == ["EXTRA_PRESET"]
    assert "EXTRA_PRESET" in load_catalog(settings.presets_file)
