"""Install ComfyUI and the pinned custom nodes of docker/custom-nodes.lock (the image's comfyui stage).

    python -m ci.nodes check                      # the lock is well formed (no network)
    python -m ci.nodes install --dest /app/ComfyUI --nodes-dir /app/custom_nodes_baked --python /app/venv/bin/python

Each repository is fetched at exactly its commit (submodules included). The image keeps its nodes
in ``/app/custom_nodes_baked`` (services/nodes.py links them into the volume's custom_nodes). The requirements of
ComfyUI and of every installed node are resolved in ONE installer run, so a conflict fails the
build and names both sides instead of a later node silently replacing an earlier one's packages.
Nodes marked ``skip`` are not installed; the reason is printed and written to
``<dest>/comfypod-nodes.json`` for the admin and the docs.

Standard library only (it runs inside the image build).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = ROOT / "docker" / "custom-nodes.lock"
REPORT_FILE = "comfypod-nodes.json"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class LockError(Exception):
    """The lock file is malformed (one-line message naming the entry)."""


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    commit: str
    requirements: str | None = None  # None: requirements.txt when present; "": none
    packages: tuple[str, ...] = ()
    skip: str = ""
    note: str = ""


@dataclass(frozen=True)
class Lock:
    comfyui: Source
    version: str
    nodes: tuple[Source, ...] = field(default_factory=tuple)

    @property
    def installed(self) -> tuple[Source, ...]:
        return tuple(node for node in self.nodes if not node.skip)

    @property
    def skipped(self) -> tuple[Source, ...]:
        return tuple(node for node in self.nodes if node.skip)


def _source(entry: dict, where: str) -> Source:
    unknown = set(entry) - {"name", "url", "commit", "requirements", "packages", "skip", "note", "version"}
    if unknown:
        raise LockError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    name = entry.get("name", "ComfyUI")
    if not _NAME.fullmatch(name):
        raise LockError(f"{where}: bad name {name!r}")
    url = entry.get("url", "")
    if not (url.startswith("https://github.com/") and url.endswith(".git")):
        raise LockError(f"{where} ({name}): url must be https://github.com/<owner>/<repo>.git, not {url!r}")
    commit = entry.get("commit", "")
    if not _COMMIT.fullmatch(commit):
        raise LockError(f"{where} ({name}): commit must be 40 lower-case hex digits, not {commit!r}")
    packages = tuple(entry.get("packages", ()))
    requirements = entry.get("requirements")
    if packages and requirements:
        raise LockError(f"{where} ({name}): give packages or requirements, not both")
    if (packages or requirements == "") and not entry.get("note"):
        raise LockError(f"{where} ({name}): a changed requirement list needs a note saying why")
    return Source(
        name=name,
        url=url,
        commit=commit,
        requirements=requirements,
        packages=packages,
        skip=entry.get("skip", ""),
        note=entry.get("note", ""),
    )


def load(path: Path = LOCK_FILE) -> Lock:
    data = tomllib.loads(Path(path).read_text())
    comfyui = _source(data.get("comfyui", {}), "[comfyui]")
    nodes = tuple(_source(entry, f"[[node]] #{i + 1}") for i, entry in enumerate(data.get("node", [])))
    names = [node.name.lower() for node in nodes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LockError(f"nodes listed twice: {', '.join(duplicates)}")
    return Lock(comfyui=comfyui, version=str(data.get("comfyui", {}).get("version", "")), nodes=nodes)


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True)


def checkout(source: Source, dest: Path) -> None:
    """``dest`` at exactly ``source.commit``, with its submodules, without history."""
    dest.mkdir(parents=True, exist_ok=True)
    _git("-C", str(dest), "init", "-q")
    _git("-C", str(dest), "fetch", "-q", "--depth", "1", source.url, source.commit)
    _git("-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD")
    if (dest / ".gitmodules").is_file():
        _git("-C", str(dest), "submodule", "update", "-q", "--init", "--recursive", "--depth", "1")


def requirement_args(source: Source, path: Path) -> list[str]:
    """Installer arguments for one checkout: ``-r file`` or the explicit package list."""
    if source.packages:
        return list(source.packages)
    name = "requirements.txt" if source.requirements is None else source.requirements
    if name and (path / name).is_file():
        return ["-r", str(path / name)]
    if name and source.requirements is not None:
        raise LockError(f"{source.name}: {name} is not in the checkout")
    return []


def installer(python: str) -> list[str]:
    uv = shutil.which("uv")
    return [uv, "pip", "install", "--python", python] if uv else [python, "-m", "pip", "install"]


def install(lock: Lock, dest: Path, python: str, nodes_dir: Path | None = None) -> dict:
    nodes_dir = nodes_dir or dest / "custom_nodes"
    checkout(lock.comfyui, dest)
    args = requirement_args(lock.comfyui, dest)
    report: dict = {"comfyui": {"version": lock.version, "commit": lock.comfyui.commit}, "nodes": [], "skipped": []}
    for node in lock.nodes:
        if node.skip:
            print(f"ci.nodes: skip {node.name}: {node.skip}", flush=True)
            report["skipped"].append({"name": node.name, "commit": node.commit, "reason": node.skip})
            continue
        path = nodes_dir / node.name
        print(f"ci.nodes: {node.name} @ {node.commit[:12]}", flush=True)
        checkout(node, path)
        args += requirement_args(node, path)
        report["nodes"].append({"name": node.name, "commit": node.commit, "url": node.url, "note": node.note})
    subprocess.run([*installer(python), *args], check=True)
    (dest / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.nodes", description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=LOCK_FILE)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate the lock file")
    inst = sub.add_parser("install", help="fetch ComfyUI and the nodes, install their requirements")
    inst.add_argument("--dest", type=Path, required=True, help="ComfyUI's folder")
    inst.add_argument("--nodes-dir", type=Path, help="where the nodes go (default: DEST/custom_nodes)")
    inst.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    try:
        lock = load(args.lock)
        if args.command == "check":
            print(
                f"ComfyUI {lock.version} @ {lock.comfyui.commit[:12]}: {len(lock.installed)} nodes, "
                f"{len(lock.skipped)} skipped"
            )
            for node in lock.skipped:
                print(f"  skipped {node.name}: {node.skip}")
        else:
            install(lock, args.dest, args.python, args.nodes_dir)
    except LockError as err:
        print(f"ci.nodes: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
