"""Custom nodes on the volume: list, install from git, remove, and a lock file to rebuild a setup.

``WORKSPACE/custom_nodes`` is the one folder ComfyUI loads user nodes from (extra_model_paths.yaml
puts it first, so ComfyUI-Manager installs there too). The image's own nodes, baked in
``APP_DIR/custom_nodes_baked``, are linked into it at start (``link_baked``) without copying; a
user's node of the same name is a real folder and wins. Removing an image node hides it for good
(``config/state/nodes.json``); ``restore_node`` brings it back.

Node requirements go into the package layer through ``services.pyenv``; ComfyUI's own verdict on
each node comes from the last "Import times for custom nodes" block of ``logs/comfyui.log``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import pyenv
from services.errors import NodeError
from services.files import write_atomic
from services.settings import Settings, process_environment

log = logging.getLogger("comfypod.nodes")

BAKED_DIR = "custom_nodes_baked"
HIDDEN_STATE = "nodes.json"
LOCK_FORMAT = "comfypod-nodes"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$")
REV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")
GIT_TIMEOUT = 600.0
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"


@dataclass
class Node:
    """One entry ComfyUI loads (or would load) from the custom nodes folder."""

    name: str
    origin: str  # user | image | link (the user's own symlink)
    kind: str  # git | folder | file
    enabled: bool = True
    url: str | None = None
    commit: str | None = None
    branch: str | None = None
    requirements: str = "none"  # none | ok | refused | failed | off | pending
    packages: list[str] = field(default_factory=list)
    message: str = ""
    imported: str = "unknown"  # ok | failed | unknown (from ComfyUI's log)
    import_seconds: float | None = None
    import_error: str = ""
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImportResult:
    seconds: float
    failed: bool
    path: str
    error: str = ""


@dataclass
class Outcome:
    """What ``import_lock`` did with one node of a lock file."""

    name: str
    action: str  # installed | present | differs | skipped | failed
    message: str = ""


# ---- names, specs and git -----------------------------------------------------------------------


def check_name(name: str) -> str:
    if not NAME_RE.match(name or "") or name in (".", ".."):
        raise NodeError(f"not a usable custom node name: {name!r}")
    return name


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``URL[@rev]`` -> (url, rev). The revision is what follows the last ``@`` when that part has
    no ``/`` or ``:`` (so ``git@host:repo`` and ``https://user@host/repo`` stay whole)."""
    spec = spec.strip()
    head, sep, tail = spec.rpartition("@")
    if sep and head and tail and "/" not in tail and ":" not in tail and ("/" in head or ":" in head):
        if not REV_RE.match(tail):
            raise NodeError(f"not a usable git revision: {tail!r}")
        return head, tail
    return spec, None


def check_url(url: str) -> str:
    """Accept https/http/ssh/git/file URLs, scp-like ``user@host:path`` and absolute local paths."""
    if not url or url.startswith("-") or any(ch.isspace() for ch in url):
        raise NodeError(f"not a usable git URL: {url!r}")
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if scheme:
        if scheme.group(1).lower() not in ("https", "http", "ssh", "git", "file"):
            raise NodeError(f"git URL scheme {scheme.group(1)!r} is not allowed: use https, ssh, git or file")
        return url
    if "::" in url:
        raise NodeError(f"git transport in {url!r} is not allowed")
    if re.match(r"^[\w.-]+@[\w.-]+:", url) or url.startswith("/"):
        return url
    raise NodeError(f"not a usable git URL: {url!r} (expected https://host/owner/repo[@rev])")


def name_from_url(url: str) -> str:
    tail = re.split(r"[/:]", url.rstrip("/"))[-1]
    if tail.endswith(".git"):
        tail = tail[:-4]
    return check_name(tail)


def public_url(url: str | None) -> str | None:
    """The URL without credentials (``https://user:token@host`` -> ``https://host``)."""
    if url is None:
        return None
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]+@", r"\1", url)


def _git_env() -> dict[str, str]:
    env = process_environment()
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS, "GIT_ASKPASS": "/bin/true"})
    return env


def git(args: list[str], cwd: Path | None = None, timeout: float = GIT_TIMEOUT) -> str:
    cmd = ["git", "-c", "safe.directory=*", "-c", "advice.detachedHead=false", *args]
    verb = (args[2:] if args[:1] == ["-C"] else args)[0]
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_git_env())
    except FileNotFoundError:
        raise NodeError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise NodeError(f"git {verb} did not finish in {timeout:.0f} s") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        message = next((line for line in reversed(lines) if line.startswith(("fatal:", "error:"))), None)
        raise NodeError(f"git {verb} failed: {public_url(message or (lines[-1] if lines else 'no message'))}")
    return result.stdout.strip()


def git_info(folder: Path) -> tuple[str | None, str | None, str | None]:
    """(remote URL, commit, branch) of a node that is a git checkout of its own."""
    if not (folder / ".git").exists():
        return None, None, None
    try:
        head = git(["-C", str(folder), "rev-parse", "HEAD", "--abbrev-ref", "HEAD"], timeout=30).splitlines()
    except NodeError:
        return None, None, None
    commit = head[0] if head else None
    branch = head[1] if len(head) > 1 and head[1] != "HEAD" else None
    try:
        url = git(["-C", str(folder), "config", "--get", "remote.origin.url"], timeout=30) or None
    except NodeError:
        url = None
    return public_url(url), commit, branch


# ---- the merged view: image nodes linked into the workspace --------------------------------------


def baked_dir(settings: Settings) -> Path:
    return settings.app_dir / BAKED_DIR


def _hidden_file(settings: Settings) -> Path:
    return settings.state_dir / HIDDEN_STATE


def hidden(settings: Settings) -> set[str]:
    try:
        data = json.loads(_hidden_file(settings).read_text())
    except (OSError, ValueError):
        return set()
    return set(data.get("hidden_image_nodes", [])) if isinstance(data, dict) else set()


def _set_hidden(settings: Settings, names: Iterable[str]) -> None:
    write_atomic(_hidden_file(settings), json.dumps({"hidden_image_nodes": sorted(set(names))}, indent=1) + "\n")


def _points_into_baked(settings: Settings, link: Path) -> bool:
    try:
        target = Path(os.readlink(link))
    except OSError:
        return False
    if not target.is_absolute():
        return False
    root = baked_dir(settings)
    return root in target.parents or target.parent.name == BAKED_DIR


def _disabled_names(folder: Path) -> set[str]:
    names = {p.name[: -len(".disabled")] for p in folder.glob("*.disabled")}
    if (folder / ".disabled").is_dir():
        names |= {p.name for p in (folder / ".disabled").iterdir()}
    return names


def link_baked(settings: Settings) -> list[str]:
    """Link each image node into the workspace folder unless the user has their own of that name,
    removed it, or disabled it; drop links to image nodes that are gone. Returns what changed."""
    folder = settings.custom_nodes_dir
    folder.mkdir(parents=True, exist_ok=True)
    source = baked_dir(settings)
    baked: dict[str, Path] = {}
    if source.is_dir():
        baked = {p.name: p for p in sorted(source.iterdir()) if not p.name.startswith((".", "__"))}
    skip = hidden(settings) | _disabled_names(folder)
    notes: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink() and _points_into_baked(settings, entry):
            wanted = baked.get(entry.name)
            if wanted is None or entry.name in skip or Path(os.readlink(entry)) != wanted:
                entry.unlink()
                if wanted is None:
                    notes.append(f"{entry.name}: no longer in the image, link removed")
    for name, path in baked.items():
        if name in skip:
            continue
        target = folder / name
        if target.is_symlink() and Path(os.readlink(target)) == path:
            continue
        if target.exists() or target.is_symlink():
            notes.append(f"{name}: the workspace's own copy is used instead of the image's")
            continue
        target.symlink_to(path, target_is_directory=path.is_dir())
        notes.append(f"{name}: linked from the image")
    return notes


def user_node_folders(settings: Settings) -> list[tuple[str, Path]]:
    """Enabled nodes that belong to the user (not image links), as (name, folder)."""
    folder = settings.custom_nodes_dir
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(folder.iterdir()):
        if _skip_entry(entry.name) or not entry.is_dir():
            continue
        if entry.is_symlink() and _points_into_baked(settings, entry):
            continue
        out.append((entry.name, entry))
    return out


def _skip_entry(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith(".disabled")


# ---- listing ----------------------------------------------------------------------------------


def list_nodes(settings: Settings, with_git: bool = True) -> list[Node]:
    """Every node in the workspace folder (image links included), disabled ones last."""
    folder = settings.custom_nodes_dir
    states = pyenv.node_states(settings)
    imports = import_status(settings.logs_dir / "comfyui.log")
    entries: list[tuple[Path, bool]] = []
    if folder.is_dir():
        for entry in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
            if entry.name == ".disabled" and entry.is_dir():
                entries += [(p, False) for p in sorted(entry.iterdir(), key=lambda p: p.name.lower())]
            elif entry.name.endswith(".disabled") and not entry.name.startswith("."):
                entries.append((entry, False))
            elif not _skip_entry(entry.name):
                entries.append((entry, True))
    nodes: list[Node] = []
    for path, enabled in entries:
        if not (path.is_dir() or path.suffix == ".py"):
            continue
        name = path.name[: -len(".disabled")] if path.name.endswith(".disabled") else path.name
        if path.is_symlink():
            origin = "image" if _points_into_baked(settings, path) else "link"
        else:
            origin = "user"
        node = Node(name=name, origin=origin, kind="file" if path.is_file() else "folder", enabled=enabled,
                    path=str(path))
        if path.is_dir() and with_git:
            node.url, node.commit, node.branch = git_info(path)
            if node.commit:
                node.kind = "git"
        if path.is_dir() and (path / "requirements.txt").is_file():
            state = states.get(name)
            if origin == "image":
                node.requirements = "image"
            elif state is None:
                node.requirements = "pending"
            else:
                node.requirements, node.packages, node.message = state.status, state.packages, state.message
                if state.skipped and not node.message:
                    node.message = "kept the image's " + ", ".join(state.skipped)
        seen = imports.get(name)
        if seen is not None and enabled:
            node.imported = "failed" if seen.failed else "ok"
            node.import_seconds = seen.seconds
            node.import_error = seen.error
        nodes.append(node)
    nodes.sort(key=lambda n: (not n.enabled, n.name.lower()))
    return nodes


def get_node(settings: Settings, name: str) -> Node:
    for node in list_nodes(settings):
        if node.name == name:
            return node
    raise NodeError(f"no custom node named {name}")


# ---- ComfyUI's verdict from its log -------------------------------------------------------------

_IMPORT_HEADER = "Import times for custom nodes:"
_IMPORT_LINE = re.compile(r"(\d+(?:\.\d+)?) seconds( \(IMPORT FAILED\))?: (.+?)\s*$")
_CANNOT = re.compile(r"Cannot import (.+?) module for custom nodes: (.*?)\s*$")


def import_status(log_path: Path, max_bytes: int = 4 << 20) -> dict[str, ImportResult]:
    """Node name -> ComfyUI's import result, from the last start recorded in its log."""
    try:
        with open(log_path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return {}
    return parse_import_times(text)


def parse_import_times(text: str) -> dict[str, ImportResult]:
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if _IMPORT_HEADER in line]
    if not headers:
        return {}
    start = headers[-1]
    previous = headers[-2] if len(headers) > 1 else -1
    errors: dict[str, str] = {}
    for line in lines[previous + 1 : start]:
        match = _CANNOT.search(line)
        if match:
            errors[_node_name(match.group(1))] = match.group(2)
    results: dict[str, ImportResult] = {}
    for line in lines[start + 1 :]:
        match = _IMPORT_LINE.search(line)
        if not match:
            if results:
                break
            continue
        path = match.group(3)
        name = _node_name(path)
        results[name] = ImportResult(float(match.group(1)), bool(match.group(2)), path, errors.get(name, ""))
    return results


def _node_name(path: str) -> str:
    return path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


# ---- install / remove / restore -----------------------------------------------------------------


@dataclass
class Installed:
    node: Node
    requirements: pyenv.NodeRequirements | None


def install_node(settings: Settings, spec: str, *, rev: str | None = None, name: str | None = None,
                 pins: Iterable[str] = (), lock_timeout: float | None = None) -> Installed:
    """Clone ``spec`` (``URL[@rev]``) into the custom nodes folder and install its requirements
    into the package layer. All or nothing: a refusal or failure leaves no folder behind."""
    url, spec_rev = (spec.strip(), None) if rev else parse_spec(spec)
    rev = rev or spec_rev
    check_url(url)
    if rev is not None and not REV_RE.match(rev):
        raise NodeError(f"not a usable git revision: {rev!r}")
    name = check_name(name or name_from_url(url))
    folder = settings.custom_nodes_dir
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    replaces_image = dest.is_symlink() and _points_into_baked(settings, dest)
    if (dest.exists() or dest.is_symlink()) and not replaces_image:
        raise NodeError(f"{name} is already installed: remove it first (comfypod nodes remove {name})")
    with pyenv.layer_lock(settings, timeout=lock_timeout):
        # ".disabled" at the end: ComfyUI skips it if it starts while this clone is on its way
        work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".installing.disabled", dir=folder))
        try:
            git(["clone", "--quiet", "--recurse-submodules", "--", url, str(work)])
            if rev:
                git(["-C", str(work), "checkout", "--quiet", rev, "--"])
                if (work / ".gitmodules").is_file():
                    git(["-C", str(work), "submodule", "update", "--quiet", "--init", "--recursive"])
            result = None
            requirements = work / "requirements.txt"
            if requirements.is_file():
                result = pyenv.install_requirements(settings, name, requirements, pins=list(pins))
                if result.status in ("refused", "failed"):
                    pyenv.forget_node(settings, name)
                    raise NodeError(f"{name} was not installed: requirements {result.status}: {result.message}")
            if replaces_image:
                dest.unlink()
            os.rename(work, dest)
        except BaseException:
            _rmtree(work)
            raise
        _set_hidden(settings, hidden(settings) - {name})
    node = next((n for n in list_nodes(settings) if n.name == name), Node(name, "user", "git", path=str(dest)))
    log.info("custom node %s installed at %s", name, node.commit or "?")
    return Installed(node, result)


def remove_node(settings: Settings, name: str) -> str:
    """Remove a node from the workspace (an image node is hidden instead). Packages it added stay
    in the layer: other nodes may use them."""
    check_name(name)
    folder = settings.custom_nodes_dir
    path = folder / name
    with pyenv.layer_lock(settings, timeout=60):
        if not (path.exists() or path.is_symlink()):
            for disabled in (folder / f"{name}.disabled", folder / ".disabled" / name):
                if disabled.exists() or disabled.is_symlink():
                    path = disabled
                    break
            else:
                raise NodeError(f"no custom node named {name} in {folder}")
        if path.is_symlink():
            from_image = _points_into_baked(settings, path)
            path.unlink()
            if from_image:
                _set_hidden(settings, hidden(settings) | {name})
                message = (f"{name} (from the image) removed: it stays off after restarts "
                           f"(comfypod nodes restore {name})")
            else:
                message = f"{name} removed (it was a link; its target is untouched)"
        elif path.is_dir():
            _rmtree(path)
            message = f"{name} removed"
        else:
            path.unlink()
            message = f"{name} removed"
        pyenv.forget_node(settings, name)
    log.info("custom node %s", message)
    return message


def restore_node(settings: Settings, name: str) -> str:
    """Bring back an image node that was removed."""
    check_name(name)
    if name not in hidden(settings):
        raise NodeError(f"{name} is not a removed image node")
    _set_hidden(settings, hidden(settings) - {name})
    link_baked(settings)
    return f"{name} restored from the image"


def _rmtree(path: Path) -> None:
    def retry(func, target, _exc):
        os.chmod(target, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
        func(target)

    if path.is_symlink():
        path.unlink()
    elif path.exists():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=retry)
        else:
            shutil.rmtree(path, onerror=retry)


# ---- lock file ----------------------------------------------------------------------------------


def export_lock(settings: Settings) -> dict[str, Any]:
    """The user's git nodes with their commits and the packages they added to the layer."""
    nodes, left_out = [], []
    for node in list_nodes(settings):
        if node.origin == "image":
            continue
        if node.kind != "git" or not node.url:
            left_out.append({"name": node.name, "reason": "not a git checkout with a remote"})
            continue
        nodes.append({
            "name": node.name,
            "url": node.url,
            "commit": node.commit,
            "branch": node.branch,
            "enabled": node.enabled,
            "packages": node.packages,
        })
    state = pyenv.load_state(settings)
    return {
        "format": LOCK_FORMAT,
        "version": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": (state.get("python") or {}).get("tag"),
        "nodes": nodes,
        "image_nodes": sorted(n.name for n in list_nodes(settings, with_git=False) if n.origin == "image"),
        "not_exported": left_out,
    }


def read_lock(data: Any) -> list[dict[str, Any]]:
    """Validate a lock file's content; return its node entries."""
    if not isinstance(data, Mapping) or data.get("format") != LOCK_FORMAT:
        raise NodeError(f"not a ComfyPod nodes lock file (expected \"format\": \"{LOCK_FORMAT}\")")
    entries = data.get("nodes")
    if not isinstance(entries, list):
        raise NodeError("the lock file has no \"nodes\" list")
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not entry.get("name") or not entry.get("url"):
            raise NodeError(f"lock file node #{index + 1} needs a name and a url")
        check_name(str(entry["name"]))
        check_url(str(entry["url"]))
        commit = entry.get("commit")
        if commit is not None and not REV_RE.match(str(commit)):
            raise NodeError(f"lock file node {entry['name']}: not a usable commit {commit!r}")
        packages = entry.get("packages") or []
        if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
            raise NodeError(f"lock file node {entry['name']}: packages must be a list of strings")
        out.append(dict(entry))
    return out


def import_lock(settings: Settings, data: Any) -> list[Outcome]:
    """Install each node of a lock file that is missing, at its commit, with the package versions
    the lock recorded (as extra constraints). Nodes already there are left as they are."""
    outcomes: list[Outcome] = []
    present = {n.name: n for n in list_nodes(settings)}
    for entry in read_lock(data):
        name, url, commit = str(entry["name"]), str(entry["url"]), entry.get("commit")
        have = present.get(name)
        if have is not None and have.origin != "image":
            if commit and have.commit != commit:
                outcomes.append(Outcome(name, "differs", f"installed at {have.commit or 'no commit'}, "
                                                         f"the lock has {commit}: left as it is"))
            else:
                outcomes.append(Outcome(name, "present"))
            continue
        pins = [p for p in entry.get("packages") or [] if "==" in p and " @ " not in p]
        try:
            done = install_node(settings, url, rev=commit or None, name=name, pins=pins)
            outcomes.append(Outcome(name, "installed", f"at {done.node.commit}"))
        except NodeError as err:
            if not pins or "requirements" not in str(err):
                outcomes.append(Outcome(name, "failed", str(err)))
                continue
            try:
                done = install_node(settings, url, rev=commit or None, name=name)
                outcomes.append(Outcome(name, "installed", f"at {done.node.commit} (the lock's package versions "
                                                           f"did not fit this image: {err})"))
            except NodeError as again:
                outcomes.append(Outcome(name, "failed", str(again)))
        if entry.get("enabled") is False and (settings.custom_nodes_dir / name).is_dir():
            os.rename(settings.custom_nodes_dir / name, settings.custom_nodes_dir / f"{name}.disabled")
    return outcomes
