"""The pod's one Python environment: the image's venv plus a persistent package layer.

* The image's venv is ``APP_DIR/venv``; ComfyUI runs with ``COMFYUI_PYTHON`` (default: that venv).
* Packages a node or the user adds live in the **layer**, ``WORKSPACE/.venv-overlay`` used as a
  pip ``--prefix``. A ``.pth`` file written at every start into the venv's site-packages appends
  the layer's site-packages *after* the image's own (``site.addsitedir``, so the layer's own
  ``.pth`` files work too): the image always wins, the layer only adds.
* Every pip call goes through the image's constraints (``services.constraints``); the programs
  get ``PIP_CONSTRAINT`` and ``PIP_PREFIX`` so a terminal, a notebook or ComfyUI-Manager installs
  into the layer and cannot replace torch.
* ``prepare_environment`` is the start-up step (fast: no network). ``sync_requirements`` runs in
  the ``comfyui`` program just before ComfyUI starts: each user node whose requirements.txt
  changed is resolved against what is installed and only the missing packages go into the layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata as metadata
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import constraints
from services.errors import NodeError
from services.files import write_atomic
from services.settings import Settings, process_environment

log = logging.getLogger("comfypod.pyenv")

LAYER_DIR = ".venv-overlay"
PTH_NAME = "comfypod-layer.pth"
STATE_NAME = "pyenv.json"
LOCK_NAME = "pyenv.lock"
PIP_TIMEOUT = 900.0  # seconds one node's pip step may take
# Packages that never go into the layer: ComfyUI serves its frontend from whichever copy is
# importable, so an old copy on the volume must never be the one it finds.
NEVER_IN_LAYER = frozenset({"comfyui-frontend-package", "pip", "setuptools"})

# Runs under COMFYUI_PYTHON (any Python >= 3.8): where things live and what the image has.
_PROBE = r"""
import importlib.util, json, os, pathlib, platform, re, sys, sysconfig
prefix = sys.argv[1]
if hasattr(sysconfig, "get_preferred_scheme"):
    scheme = sysconfig.get_preferred_scheme("prefix")
else:
    scheme = "posix_prefix" if os.name == "posix" else "nt"
paths = sysconfig.get_paths(scheme=scheme, vars={"base": prefix, "platbase": prefix})
layer = []
for key in ("purelib", "platlib"):
    if paths[key] not in layer:
        layer.append(paths[key])
norm = lambda p: os.path.normcase(os.path.abspath(p))
layer_norm = {norm(p) for p in layer}
own = sysconfig.get_paths()
site = []
for key in ("purelib", "platlib"):
    if own[key] not in site:
        site.append(own[key])
image = [p for p in sys.path if p and os.path.isdir(p) and norm(p) not in layer_norm]
installed = {}
for folder in image:
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        continue
    for entry in entries:
        if entry.endswith(".dist-info"):
            stem = entry[: -len(".dist-info")]
        elif entry.endswith(".egg-info"):
            stem = entry[: -len(".egg-info")]
        else:
            continue
        name, sep, rest = stem.partition("-")
        version = rest.split("-py", 1)[0]
        if not sep or not version:  # an unusual folder name: read the metadata itself
            import importlib.metadata as md
            dist = md.PathDistribution(pathlib.Path(folder, entry))
            name, version = dist.metadata["Name"] or "", dist.version or ""
        if name:
            installed.setdefault(re.sub(r"[-_.]+", "-", name).lower(), version)
cuda = None
for folder in image:
    version_py = os.path.join(folder, "torch", "version.py")
    if os.path.isfile(version_py):
        with open(version_py) as handle:
            found = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", handle.read(), re.M)
        cuda = found.group(1) if found else None
        break
print(json.dumps({
    "executable": sys.executable,
    "prefix": sys.prefix,
    "version": platform.python_version(),
    "tag": sys.implementation.cache_tag + "-" + platform.machine(),
    "site": site,
    "layer_site": layer,
    "image_path": image,
    "installed": installed,
    "torch_cuda": cuda,
    "has_pip": importlib.util.find_spec("pip") is not None,
    "has_ipykernel": importlib.util.find_spec("ipykernel") is not None,
}))
"""


@dataclass(frozen=True)
class Probe:
    """What ``COMFYUI_PYTHON`` is and what the image installed in it (the layer excluded)."""

    executable: str
    prefix: str
    version: str
    tag: str
    site: tuple[str, ...]
    layer_site: tuple[str, ...]
    image_path: tuple[str, ...]
    installed: dict[str, str]
    torch_cuda: str | None
    has_pip: bool
    has_ipykernel: bool


@dataclass
class NodeRequirements:
    """The outcome of installing one node's requirements into the layer."""

    name: str
    status: str  # ok | refused | failed | off
    packages: list[str] = field(default_factory=list)  # what went into the layer, name==version
    skipped: list[str] = field(default_factory=list)  # asked for, but the image's copy is used
    message: str = ""
    requirements_sha: str = ""
    constraints_sha: str = ""
    python: str = ""
    updated: str = ""
    cached: int = 0
    downloaded: int = 0

    def line(self) -> str:
        if self.status == "ok":
            if not self.packages:
                text = "requirements already satisfied by the image and the layer"
            else:
                origin = []
                if self.cached:
                    origin.append(f"{self.cached} from the cache")
                if self.downloaded:
                    origin.append(f"{self.downloaded} downloaded")
                text = "installed " + ", ".join(self.packages) + (f" ({', '.join(origin)})" if origin else "")
            if self.skipped:
                text += "; kept the image's " + ", ".join(self.skipped)
            return f"node {self.name}: {text}"
        return f"node {self.name}: requirements {self.status}: {self.message}"


# ---- where things are -------------------------------------------------------------------------


def layer_prefix(settings: Settings) -> Path:
    return settings.workspace / LAYER_DIR


def image_venv(settings: Settings) -> Path:
    return settings.app_dir / "venv"


def interpreter_prefix(settings: Settings) -> Path:
    """The venv COMFYUI_PYTHON belongs to (``<venv>/bin/python``), not following the link."""
    return Path(os.path.abspath(settings.comfyui_python)).parent.parent


def layer_attached(settings: Settings) -> bool:
    """True when COMFYUI_PYTHON is the image's venv: only then does ComfyPod write into it."""
    prefix, venv = interpreter_prefix(settings), image_venv(settings)
    return (venv / "pyvenv.cfg").is_file() and os.path.realpath(prefix) == os.path.realpath(venv)


def state_file(settings: Settings) -> Path:
    return settings.state_dir / STATE_NAME


def jupyter_dir(settings: Settings) -> Path:
    return settings.run_dir / "jupyter"


def pip_cache(settings: Settings) -> Path:
    return settings.workspace / ".cache" / "pip"


# ---- the environment every program gets -------------------------------------------------------


def search_path(settings: Settings, current: str) -> str:
    """PATH for every program: ComfyUI's interpreter first, then ComfyPod's, then the layer's
    scripts, then what was there."""
    first = [str(settings.comfyui_python.parent), str(settings.venv_bin)]
    if layer_attached(settings):
        first.append(str(layer_prefix(settings) / "bin"))
    entries: list[str] = []
    for entry in [*first, *current.split(os.pathsep), "/usr/sbin"]:
        if entry and entry not in entries:
            entries.append(entry)
    return os.pathsep.join(entries)


def environment(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """Variables every program gets so the terminal, Jupyter and ComfyUI-Manager install the
    same way the CLI does: constraints, the layer as pip's prefix, ComfyUI's kernel first."""
    env = {
        "PIP_CONSTRAINT": str(constraints.constraints_file(settings)),
        "PIP_CACHE_DIR": str(pip_cache(settings)),
        "PATH": search_path(settings, base.get("PATH", "/usr/local/bin:/usr/bin:/bin")),
    }
    if layer_attached(settings):
        env["PIP_PREFIX"] = str(layer_prefix(settings))
    jupyter = str(jupyter_dir(settings))
    existing = [p for p in base.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != jupyter]
    env["JUPYTER_PATH"] = os.pathsep.join([jupyter, *existing])
    return env


# ---- probing the interpreter ------------------------------------------------------------------


def probe_python(settings: Settings) -> Probe:
    """Run COMFYUI_PYTHON once to learn its version, site-packages and installed packages."""
    python = str(settings.comfyui_python)
    try:
        result = subprocess.run(
            [python, "-I", "-c", _PROBE, str(layer_prefix(settings))],
            capture_output=True, text=True, timeout=120, env=_clean_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NodeError(f"cannot run COMFYUI_PYTHON {python}: {err}") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise NodeError(f"COMFYUI_PYTHON {python} failed to describe itself: {last}")
    data = json.loads(result.stdout)
    for key in ("site", "layer_site", "image_path"):
        data[key] = tuple(data[key])
    return Probe(**data)


def _clean_env() -> dict[str, str]:
    env = process_environment()
    for key in ("PYTHONPATH", "PYTHONHOME", "PIP_PREFIX", "PIP_TARGET", "PIP_USER", "PIP_CONSTRAINT"):
        env.pop(key, None)
    return env


# ---- the start-up step -------------------------------------------------------------------------


def prepare_environment(settings: Settings) -> dict[str, Any]:
    """Start-up step: constraints, the layer's .pth, the Jupyter kernel, baked nodes linked in,
    the layer tidied, ComfyUI-Manager's config, and one log line per version in use.
    Fast and offline; installing node requirements happens in ``sync_requirements``."""
    from services import manager_config, nodes

    summary: dict[str, Any] = {}
    try:
        probe: Probe | None = probe_python(settings)
    except NodeError as err:
        log.warning("python environment: %s", err)
        probe = None
    installed = probe.installed if probe else {}
    path = constraints.write_constraints(settings, installed)
    summary["constraints"] = str(path)
    if probe is not None:
        if layer_attached(settings):
            summary["pth"] = str(write_pth(probe))
        else:
            log.warning(
                "package layer off: COMFYUI_PYTHON %s is not the image's venv %s, so node packages "
                "are not installed for it", settings.comfyui_python, image_venv(settings),
            )
        if probe.has_ipykernel:
            summary["kernel"] = str(write_kernelspec(settings))
        for line in tidy_layer(settings, probe):
            log.warning("package layer: %s", line)
    for line in nodes.link_baked(settings):
        log.info("custom nodes: %s", line)
    written = manager_config.configure(settings, packaged="comfyui-manager" in installed)
    if written:
        log.info("ComfyUI-Manager: settings written to %s", ", ".join(str(p) for p in written))
    versions = collect_versions(settings, probe)
    for line in version_lines(versions):
        log.info("%s", line)
    summary["versions"] = versions
    python = {k: getattr(probe, k) for k in ("executable", "prefix", "version", "tag")} if probe else None
    _update_state(settings, lambda state: state.update(versions=versions, python=python, checked=_now()))
    return summary


def write_pth(probe: Probe) -> Path:
    """``<venv site-packages>/comfypod-layer.pth``: append the layer after the image's packages."""
    lines = [f"import site; site.addsitedir({folder!r})" for folder in probe.layer_site]
    text = "# Written by ComfyPod at start: packages on the volume, after the image's own.\n"
    text += "\n".join(lines) + "\n"
    target = Path(probe.site[0]) / PTH_NAME
    if not target.is_file() or target.read_text() != text:
        write_atomic(target, text)
    return target


def write_kernelspec(settings: Settings) -> Path:
    """A ``python3`` kernel that runs COMFYUI_PYTHON, found first through ``JUPYTER_PATH``."""
    folder = jupyter_dir(settings) / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [str(settings.comfyui_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ComfyUI)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    path = folder / "kernel.json"
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


def collect_versions(settings: Settings, probe: Probe | None) -> dict[str, str | None]:
    installed = probe.installed if probe else {}
    return {
        "comfyui": comfyui_version(settings.comfyui_dir),
        "frontend": installed.get("comfyui-frontend-package"),
        "torch": installed.get("torch"),
        "cuda": probe.torch_cuda if probe else None,
        "python": probe.version if probe else None,
        "interpreter": str(settings.comfyui_python),
    }


def version_lines(versions: Mapping[str, str | None]) -> list[str]:
    torch = versions.get("torch")
    cuda = versions.get("cuda")
    torch_text = "not installed" if not torch else f"{torch} ({'CUDA ' + cuda if cuda else 'CPU build'})"
    return [
        f"ComfyUI version: {versions.get('comfyui') or 'unknown'}",
        f"ComfyUI frontend package: {versions.get('frontend') or 'not installed'}",
        f"torch: {torch_text}",
        f"Python {versions.get('python') or '?'}: {versions.get('interpreter')}",
    ]


def comfyui_version(comfyui_dir: Path) -> str | None:
    path = comfyui_dir / "comfyui_version.py"
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return match.group(1) if match else None


# ---- keeping the layer tidy ---------------------------------------------------------------------


def tidy_layer(settings: Settings, probe: Probe) -> list[str]:
    """Remove from the layer what can never be used or is there twice; say what is hidden.

    * two versions of one package (pip cannot uninstall outside the venv): keep the newest install;
    * a package the image also has: the image's copy is the one imported, so the layer's goes;
    * a layer package whose top-level module the image also provides: reported, left alone.
    """
    notes: list[str] = []
    root = layer_prefix(settings)
    image_dirs = [Path(p) for p in probe.image_path]
    for site_text in probe.layer_site:
        site = Path(site_text)
        if not site.is_dir():
            continue
        groups: dict[str, list[metadata.Distribution]] = {}
        for dist in metadata.distributions(path=[str(site)]):
            name = dist.metadata["Name"]
            if name:
                groups.setdefault(constraints.canonical(name), []).append(dist)
        for name, dists in sorted(groups.items()):
            dists.sort(key=_installed_at, reverse=True)
            for old in dists[1:]:
                remove_distribution(root, site, old, keep=dists[0])
                notes.append(f"removed {name} {old.version}, replaced by {dists[0].version}")
            newest = dists[0]
            image_version = probe.installed.get(name)
            if image_version is not None or name in NEVER_IN_LAYER:
                remove_distribution(root, site, newest)
                why = f"the image has {image_version}" if image_version else "it must come from the image"
                notes.append(f"removed {name} {newest.version}: {why}")
                continue
            for module in top_level(newest):
                if any((d / module).exists() or (d / f"{module}.py").exists() for d in image_dirs):
                    notes.append(f"{name} {newest.version}: module {module!r} is hidden by the image's own")
    return notes


def _info_path(dist: metadata.Distribution) -> Path:
    return Path(str(getattr(dist, "_path", "")))


def _installed_at(dist: metadata.Distribution) -> float:
    try:
        return _info_path(dist).stat().st_mtime
    except OSError:
        return 0.0


def top_level(dist: metadata.Distribution) -> list[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return [line.strip() for line in text.splitlines() if line.strip()]
    names: list[str] = []
    for item in dist.files or []:
        first = item.parts[0]
        if first.endswith((".dist-info", ".egg-info", ".pth")) or first in ("..", "__pycache__"):
            continue
        module = first[:-3] if first.endswith(".py") else first
        if module not in names:
            names.append(module)
    return names


def remove_distribution(layer_root: Path, site: Path, dist: metadata.Distribution,
                        keep: metadata.Distribution | None = None) -> None:
    """Delete a distribution's files (from its RECORD) inside the layer, sparing what ``keep``
    also lists; never touches anything outside the layer's prefix."""
    kept = {os.path.normpath(site / str(f)) for f in (keep.files or [])} if keep else set()
    info_name = _info_path(dist).name
    folders: set[Path] = set()
    for item in dist.files or []:
        target = Path(os.path.normpath(site / str(item)))
        if str(target) in kept or not _inside(target, layer_root):
            continue
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        folders.add(target.parent)
    if info_name.endswith((".dist-info", ".egg-info")):
        shutil.rmtree(site / info_name, ignore_errors=True)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        while _inside(folder, site) and folder != site:
            pycache = folder / "__pycache__"
            if pycache.is_dir() and not any(p.suffix != ".pyc" for p in pycache.iterdir()):
                if not any(folder.glob("*.py")):
                    shutil.rmtree(pycache, ignore_errors=True)
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# ---- the state file on the volume ---------------------------------------------------------------


def load_state(settings: Settings) -> dict[str, Any]:
    try:
        data = json.loads(state_file(settings).read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.setdefault("nodes", {})
    return data


def _save_state(settings: Settings, state: dict[str, Any]) -> None:
    write_atomic(state_file(settings), json.dumps(state, indent=1, sort_keys=True) + "\n")


def _update_state(settings: Settings, change) -> None:
    with layer_lock(settings):
        state = load_state(settings)
        change(state)
        _save_state(settings, state)


def node_states(settings: Settings) -> dict[str, NodeRequirements]:
    """Per node, the last requirements outcome recorded on the volume."""
    out: dict[str, NodeRequirements] = {}
    for name, entry in load_state(settings)["nodes"].items():
        known = {k: v for k, v in entry.items() if k in NodeRequirements.__dataclass_fields__}
        known["name"] = name
        out[name] = NodeRequirements(**known)
    return out


def forget_node(settings: Settings, name: str) -> None:
    _update_state(settings, lambda state: state["nodes"].pop(name, None))


_held = threading.local()


@contextlib.contextmanager
def layer_lock(settings: Settings, timeout: float | None = None) -> Iterator[None]:
    """One writer at a time for the layer and the state file (start-up, CLI, admin threads).
    Re-entrant within one thread."""
    path = settings.state_dir / LOCK_NAME
    key = str(path)
    held: dict[str, int] = _held.__dict__.setdefault("counts", {})
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise NodeError("another install is running: try again when it has finished") from None
                time.sleep(0.2)
        held[key] = 1
        try:
            yield
        finally:
            held.pop(key, None)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- installing requirements ------------------------------------------------------------------


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync_requirements(settings: Settings) -> list[NodeRequirements]:
    """Install the requirements of every user node whose requirements.txt changed since the last
    time (or whose packages left the layer). Never raises: a node that fails is recorded with
    pip's error, and ComfyUI starts anyway."""
    from services import nodes

    if not layer_attached(settings):
        log.info("package layer off: node requirements are not installed (COMFYUI_PYTHON is not %s)",
                 image_venv(settings))
        return []
    results: list[NodeRequirements] = []
    try:
        with layer_lock(settings):
            probe = probe_python(settings)
            if not probe.has_pip:
                log.error("COMFYUI_PYTHON %s has no pip: node requirements are not installed", probe.executable)
                return []
            constraints_path = constraints.write_constraints(settings, probe.installed)
            write_pth(probe)
            state = load_state(settings)
            current = constraints_path.read_bytes()
            for name, folder in nodes.user_node_folders(settings):
                requirements = folder / "requirements.txt"
                if not requirements.is_file():
                    continue
                entry = state["nodes"].get(name)
                if entry and _unchanged(entry, requirements, probe, current):
                    continue
                log.info("node %s: requirements.txt changed, installing into the package layer", name)
                result = install_requirements(settings, name, requirements, probe=probe)
                log.log(logging.INFO if result.status == "ok" else logging.ERROR, "%s", result.line())
                results.append(result)
            if not results:
                log.info("node requirements: nothing changed")
            for line in tidy_layer(settings, probe):
                log.warning("package layer: %s", line)
    except NodeError as err:
        log.error("node requirements: %s", err)
    return results


def sync_before_launch(settings: Settings) -> None:
    """The comfyui program's first act: install what changed, with its lines in comfyui.log."""
    if not logging.getLogger().handlers:
        from services.logs import setup_logging

        setup_logging(settings.log_level)
    try:
        sync_requirements(settings)
    except Exception:  # ComfyUI must start even when the sync itself breaks
        log.exception("node requirements: the sync failed; starting ComfyUI anyway")


def _unchanged(entry: Mapping[str, Any], requirements: Path, probe: Probe, constraints_bytes: bytes) -> bool:
    if entry.get("requirements_sha") != file_sha(requirements) or entry.get("python") != probe.tag:
        return False
    status = entry.get("status")
    if status == "refused":
        return entry.get("constraints_sha") == hashlib.sha256(constraints_bytes).hexdigest()
    if status != "ok":
        return False
    if entry.get("packages"):
        return any(Path(site).is_dir() for site in probe.layer_site)
    return True


def install_requirements(settings: Settings, name: str, requirements: Path, *, probe: Probe | None = None,
                         pins: Sequence[str] = ()) -> NodeRequirements:
    """Resolve ``requirements`` against the image and the layer under the constraints, then put
    only what is missing into the layer. Records the outcome under ``name``; never raises for
    pip's own failures (the result says ``refused`` or ``failed``)."""
    if not layer_attached(settings):
        return NodeRequirements(name, "off", message=(
            f"the package layer is off: COMFYUI_PYTHON {settings.comfyui_python} is not the image's "
            f"venv {image_venv(settings)}"))
    with layer_lock(settings):
        probe = probe or probe_python(settings)
        constraints_path = constraints.write_constraints(settings, probe.installed)
        write_pth(probe)
        result = _install(settings, name, requirements, probe, constraints_path, pins)
        result.requirements_sha = file_sha(requirements)
        result.constraints_sha = hashlib.sha256(constraints_path.read_bytes()).hexdigest()
        result.python = probe.tag
        result.updated = _now()
        entry = {k: v for k, v in asdict(result).items() if k != "name"}
        _update_state(settings, lambda state: state["nodes"].__setitem__(name, entry))
        return result


def _pip(probe: Probe, settings: Settings, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = _clean_env()
    env.update({
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
        "PYTHONNOUSERSITE": "1",
    })
    cmd = [probe.executable, "-m", "pip", *args, "--progress-bar", "off", "--cache-dir", str(pip_cache(settings))]
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"ERROR: pip did not finish in {PIP_TIMEOUT:.0f} s")


def _install(settings: Settings, name: str, requirements: Path, probe: Probe, constraints_path: Path,
             pins: Sequence[str]) -> NodeRequirements:
    with tempfile.TemporaryDirectory(prefix="comfypod-pip-") as tmp:
        constraint_args = ["-c", str(constraints_path)]
        if pins:
            pin_file = Path(tmp) / "lock-pins.txt"
            pin_file.write_text("\n".join(pins) + "\n")
            constraint_args += ["-c", str(pin_file)]
        report_path = Path(tmp) / "report.json"
        plan = _pip(probe, settings, ["install", "--dry-run", "--report", str(report_path),
                                      "-r", str(requirements), *constraint_args], requirements.parent)
        output = plan.stdout + "\n" + plan.stderr
        if plan.returncode != 0:
            refusal = constraints.explain_refusal(output, constraints_path.read_text())
            if refusal:
                return NodeRequirements(name, "refused", message=refusal)
            return NodeRequirements(name, "failed", message=pip_error(output))
        report = json.loads(report_path.read_text() or "{}")
        wanted, skipped = _choose(report, probe)
        if not wanted:
            return NodeRequirements(name, "ok", skipped=skipped)
        args = ["install", "--no-deps", "--prefix", str(layer_prefix(settings)), "--no-warn-script-location",
                "--no-warn-conflicts", *[req for _, req in wanted], *constraint_args]
        done = _pip(probe, settings, args, requirements.parent)
    output = done.stdout + "\n" + done.stderr
    if done.returncode != 0:
        return NodeRequirements(name, "failed", message=pip_error(output))
    return NodeRequirements(
        name, "ok", packages=[pin for pin, _ in wanted], skipped=skipped,
        cached=len(re.findall(r"^\s*Using cached ", output, re.M)),
        downloaded=len(re.findall(r"^\s*Downloading ", output, re.M)),
    )


def _choose(report: Mapping[str, Any], probe: Probe) -> tuple[list[tuple[str, str]], list[str]]:
    """From pip's plan: what goes into the layer (pin, requirement) and what the image keeps."""
    wanted: list[tuple[str, str]] = []
    skipped: list[str] = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        project, version = meta.get("name", "?"), meta.get("version", "?")
        canon = constraints.canonical(project)
        if canon in probe.installed:
            skipped.append(f"{project} {probe.installed[canon]} (asked for {version})")
        elif canon in NEVER_IN_LAYER:
            skipped.append(f"{project} (never installed on the volume)")
        else:
            wanted.append((f"{project}=={version}", requirement_for(item)))
    return wanted, skipped


def requirement_for(item: Mapping[str, Any]) -> str:
    """The exact requirement that reinstalls one item of pip's dry-run report."""
    meta = item.get("metadata", {})
    project, version = meta.get("name", ""), meta.get("version", "")
    info = item.get("download_info", {})
    if not item.get("is_direct"):
        return f"{project}=={version}"
    url = info.get("url", "")
    vcs = info.get("vcs_info")
    if vcs:
        return f"{project} @ {vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}"
    return f"{project} @ {url}"


def pip_error(output: str) -> str:
    """pip's own error lines, one line for people."""
    errors = [line.strip()[len("ERROR:"):].strip() for line in output.splitlines() if line.strip().startswith("ERROR:")]
    errors = [e for e in errors if e and not e.startswith("ResolutionImpossible")]
    if not errors:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        errors = lines[-1:] or ["pip failed without a message"]
    text = " / ".join(dict.fromkeys(errors))
    return text if len(text) <= 600 else text[:597] + "..."


__all__ = [
    "NodeRequirements",
    "Probe",
    "environment",
    "install_requirements",
    "layer_attached",
    "layer_prefix",
    "prepare_environment",
    "probe_python",
    "sync_requirements",
]
