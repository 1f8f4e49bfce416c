"""presets.sources: pure URL rules, table-driven."""

from __future__ import annotations

import pytest

from presets.sources import (
    classify_source,
    hub_file,
    is_loopback_host,
    normalize_url,
    pinned_url,
    token_for,
    url_problem,
)
from services.settings import load_settings

HF = "https://huggingface.co"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{HF}/org/repo/blob/main/a/b.safetensors", f"{HF}/org/repo/resolve/main/a/b.safetensors"),
        (f"{HF}/org/repo/resolve/main/b.safetensors", f"{HF}/org/repo/resolve/main/b.safetensors"),
        (f"  {HF}/org/repo/blob/main/b.safetensors?download=true  ",
         f"{HF}/org/repo/resolve/main/b.safetensors?download=true"),
        ("https://hf.co/org/repo/blob/v1.0/x.pth", f"{HF}/org/repo/resolve/v1.0/x.pth"),
        (f"{HF}/datasets/org/set/blob/main/x.bin", f"{HF}/datasets/org/set/resolve/main/x.bin"),
        (f"{HF}/org/repo/raw/main/x.json", f"{HF}/org/repo/resolve/main/x.json"),
        (f"{HF}/org/repo/blob/main/dir%20name/x.safetensors", f"{HF}/org/repo/resolve/main/dir%20name/x.safetensors"),
        (f"{HF}/org/repo", f"{HF}/org/repo"),  # a repo page, not a file: left alone
        ("https://civitai.com/models/4384/dreamshaper?modelVersionId=128713",
         "https://civitai.com/api/download/models/128713"),
        ("https://www.civitai.com/models/4384?modelVersionId=1", "https://civitai.com/api/download/models/1"),
        ("https://civitai.com/models/4384/dreamshaper", "https://civitai.com/models/4384/dreamshaper"),
        ("https://civitai.com/api/download/models/128713?type=Model",
         "https://civitai.com/api/download/models/128713?type=Model"),
        ("https://example.com/blob/main/x.safetensors", "https://example.com/blob/main/x.safetensors"),
        ("http://[::1", "http://[::1"),  # unparsable: returned as is, validation reports it
    ],
)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{HF}/Comfy-Org/x/resolve/main/split/vae.safetensors",
         {"type": "huggingface", "repo": "Comfy-Org/x", "revision": "main", "file": "split/vae.safetensors",
          "repo_type": "model"}),
        (f"{HF}/datasets/a/b/blob/abc/f.bin",
         {"type": "huggingface", "repo": "a/b", "revision": "abc", "file": "f.bin", "repo_type": "dataset"}),
        ("https://civitai.com/api/download/models/77", {"type": "civitai", "model_version_id": "77"}),
        ("https://civitai.com/models/12/name", {"type": "civitai", "model_version_id": None}),
        ("https://example.org/x.safetensors", {"type": "direct", "host": "example.org"}),
        ("http://127.0.0.1:8080/x", {"type": "direct", "host": "127.0.0.1"}),
    ],
)
def test_classify_source(url: str, expected: dict) -> None:
    assert classify_source(url) == expected


def test_hub_file_and_pinned_url_work_on_any_host() -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert pinned_url(f"{HF}/o/r/resolve/main/d/f.safetensors", commit) == f"{HF}/o/r/resolve/{commit}/d/f.safetensors"
    local = "http://127.0.0.1:5000/o/r/resolve/main/f.safetensors"
    assert hub_file(local)["repo"] == "o/r"
    assert pinned_url(local, commit) == f"http://127.0.0.1:5000/o/r/resolve/{commit}/f.safetensors"
    assert pinned_url("https://example.org/plain.bin", commit) == "https://example.org/plain.bin"
    assert hub_file(f"{HF}/o/r/blob/main/f") is None


@pytest.fixture
def settings(tmp_path):
    return load_settings({"WORKSPACE": str(tmp_path), "HF_TOKEN": "hf_abcdefghijklmnop", "CIVITAI_TOKEN": "civ123"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{HF}/o/r/resolve/main/f", "hf_abcdefghijklmnop"),
        ("https://hf.co/o/r/resolve/main/f", "hf_abcdefghijklmnop"),
        ("https://HuggingFace.co./o/r/resolve/main/f", "hf_abcdefghijklmnop"),
        ("http://huggingface.co/o/r/resolve/main/f", None),  # never over plain http
        ("https://cdn-lfs.huggingface.co/repos/x", None),  # redirect targets get no token
        ("https://cas-bridge.xethub.hf.co/x", None),
        ("https://huggingface.co.evil.example/x", None),
        ("https://evil.example/?u=https://huggingface.co/", None),
        ("https://civitai.com/api/download/models/1", "civ123"),
        ("https://www.civitai.com/api/download/models/1", None),
        ("https://example.org/f", None),
        ("not a url", None),
    ],
)
def test_token_for_only_its_own_host(settings, url: str, expected: str | None) -> None:
    assert token_for(url, settings) == expected


def test_token_for_without_tokens(tmp_path) -> None:
    settings = load_settings({"WORKSPACE": str(tmp_path)})
    assert token_for(f"{HF}/o/r/resolve/main/f", settings) is None
    assert token_for("https://civitai.com/api/download/models/1", settings) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://example.org/x.safetensors", None),
        ("http://127.0.0.1:8000/x", None),
        ("http://localhost/x", None),
        ("http://[::1]:9/x", None),
        ("http://127.8.9.10/x", None),
        ("http://example.org/x", "plain http"),
        ("ftp://example.org/x", "https://"),
        ("file:///etc/passwd", "https://"),
        ("https:///x", "no host"),
        ("https://user:pw@example.org/x", "password"),
        ("https://example.org:99999/x", "not a valid URL"),
    ],
)
def test_url_problem(url: str, problem: str | None) -> None:
    found = url_problem(url)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("::1", True), ("[::1]", True), ("10.0.0.1", False),
     ("example.org", False), ("localhost.example", False)],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
