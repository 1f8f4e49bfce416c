"""docker/custom-nodes.lock and ci.nodes: every seed node pinned to a commit, known failures listed
with their reason, requirement lists built right (git and the installer are not run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ci import nodes
from tests.conftest import REFERENCE

ROOT = Path(__file__).resolve().parents[2]
SEED = REFERENCE / "seed-custom-nodes.txt"


def norm(url: str) -> str:
    return url.strip().lower().removesuffix(".git").rstrip("/")


@pytest.fixture(scope="module")
def lock() -> nodes.Lock:
    return nodes.load()


def test_lock_is_well_formed(lock):
    assert lock.comfyui.url == "https://github.com/Comfy-Org/ComfyUI.git" and lock.version
    assert lock.nodes[0].name == "ComfyUI-Manager"
    assert len({n.commit for n in lock.nodes}) == len(lock.nodes)


def test_every_seed_node_is_pinned(lock):
    pinned = {norm(n.url) for n in lock.nodes}
    seed = [norm(line) for line in SEED.read_text().splitlines() if line.strip()]
    missing = [url for url in seed if url not in pinned]
    assert not missing, f"not in docker/custom-nodes.lock: {missing}"


def test_known_failures_say_why(lock):
    assert [n.name for n in lock.skipped] == ["ComfyUI_TensorRT"]
    assert all(len(n.skip) > 40 for n in lock.skipped)
    changed = [n for n in lock.nodes if n.packages or n.requirements is not None]
    assert {n.name for n in changed} >= {"ComfyUI-Impact-Pack", "comfy-ex-tagcomplete", "ComfyUI-Frame-Interpolation"}
    assert all(n.note for n in changed)
    impact = next(n for n in lock.nodes if n.name == "ComfyUI-Impact-Pack")
    assert not any(p.startswith("numpy") for p in impact.packages)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"name": "x", "url": "https://github.com/a/b.git", "commit": "abc"}, "40 lower-case hex"),
        ({"name": "x", "url": "http://example.com/b", "commit": "a" * 40}, "url must be"),
        ({"name": "x", "url": "https://github.com/a/b.git", "commit": "a" * 40, "packages": ["p"]}, "needs a note"),
        (
            {
                "name": "x",
                "url": "https://github.com/a/b.git",
                "commit": "a" * 40,
                "requirements": "r.txt",
                "packages": ["p"],
                "note": "n",
            },
            "not both",
        ),
        ({"name": "../x", "url": "https://github.com/a/b.git", "commit": "a" * 40}, "bad name"),
        ({"name": "x", "url": "https://github.com/a/b.git", "commit": "a" * 40, "pin": "?"}, "unknown keys"),
    ],
)
def test_bad_entries_are_rejected(tmp_path, entry, words):
    body = '[comfyui]\nurl = "https://github.com/Comfy-Org/ComfyUI.git"\ncommit = "' + "b" * 40 + '"\n\n[[node]]\n'
    body += "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    path = tmp_path / "lock"
    path.write_text(body)
    with pytest.raises(nodes.LockError, match=words):
        nodes.load(path)


def test_duplicates_are_rejected(tmp_path):
    entry = '[[node]]\nname = "x"\nurl = "https://github.com/a/b.git"\ncommit = "' + "a" * 40 + '"\n'
    path = tmp_path / "lock"
    path.write_text(
        '[comfyui]\nurl = "https://github.com/Comfy-Org/ComfyUI.git"\ncommit = "' + "b" * 40 + '"\n' + entry * 2
    )
    with pytest.raises(nodes.LockError, match="listed twice"):
        nodes.load(path)


def test_requirement_args(tmp_path):
    (tmp_path / "requirements.txt").write_text("piexif\n")
    (tmp_path / "requirements-no-cupy.txt").write_text("kornia\n")
    base = dict(name="n", url="https://github.com/a/b.git", commit="a" * 40)
    assert nodes.requirement_args(nodes.Source(**base), tmp_path) == ["-r", str(tmp_path / "requirements.txt")]
    assert nodes.requirement_args(nodes.Source(**base, requirements=""), tmp_path) == []
    assert nodes.requirement_args(nodes.Source(**base, requirements="requirements-no-cupy.txt"), tmp_path) == [
        "-r",
        str(tmp_path / "requirements-no-cupy.txt"),
    ]
    assert nodes.requirement_args(nodes.Source(**base, packages=("a", "b>=1")), tmp_path) == ["a", "b>=1"]
    assert nodes.requirement_args(nodes.Source(**base), tmp_path / "none") == []
    with pytest.raises(nodes.LockError):
        nodes.requirement_args(nodes.Source(**base, requirements="missing.txt"), tmp_path)


def test_install_resolves_everything_in_one_run(tmp_path, monkeypatch, lock):
    calls: list[list[str]] = []

    def fake_checkout(source, dest):
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("requirements.txt", source.requirements or "requirements.txt"):
            (dest / name).write_text("x\n")

    monkeypatch.setattr(nodes, "checkout", fake_checkout)
    monkeypatch.setattr(nodes.subprocess, "run", lambda argv, check: calls.append(argv))
    report = nodes.install(lock, tmp_path / "ComfyUI", "/app/venv/bin/python", tmp_path / "custom_nodes_baked")
    assert (tmp_path / "custom_nodes_baked" / "ComfyUI-Manager").is_dir()
    assert len(calls) == 1
    argv = calls[0]
    assert "-r" in argv and str(tmp_path / "ComfyUI" / "requirements.txt") in argv
    assert "numpy<2" not in argv and "segment-anything" in argv
    assert [s["name"] for s in report["skipped"]] == ["ComfyUI_TensorRT"]
    assert len(report["nodes"]) == len(lock.installed)
    assert json.loads((tmp_path / "ComfyUI" / nodes.REPORT_FILE).read_text()) == report


def test_checkout_fetches_exactly_the_commit(tmp_path):
    """A real git checkout from a local repository, by commit id, with no history."""
    origin = tmp_path / "origin"
    origin.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(origin), *a], check=True, capture_output=True, text=True)  # noqa: E731
    run("init", "-q")
    (origin / "a.txt").write_text("one")
    run("add", "a.txt")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "one")
    first = run("rev-parse", "HEAD").stdout.strip()
    (origin / "a.txt").write_text("two")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-am", "two")
    dest = tmp_path / "dest"
    nodes.checkout(nodes.Source("n", f"file://{origin}", first), dest)
    assert (dest / "a.txt").read_text() == "one"


def test_cli_check(capsys):
    assert nodes._main(["check"]) == 0
    out = capsys.readouterr().out
    assert "skipped ComfyUI_TensorRT" in out
