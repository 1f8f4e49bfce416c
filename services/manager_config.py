"""ComfyUI-Manager's settings, written where the installed version reads them.

* Manager >= 3.1 (a custom node): ``<ComfyUI user dir>/default/ComfyUI-Manager/config.ini``;
* Manager < 3.1: ``custom_nodes/ComfyUI-Manager/config.ini`` next to its code;
* Manager as the ``comfyui-manager`` package (ComfyUI's ``--enable-manager``): ``<user dir>/__manager/``.

Only the keys ComfyPod cares about are set; the user's other choices in the file are kept:
``security_level = normal`` (ComfyUI listens on loopback behind nginx's login), ``use_uv = False``
(uv ignores ``PIP_CONSTRAINT``/``PIP_PREFIX``), and a ``downgrade_blacklist`` plus
``pip_blacklist.list`` naming the pinned packages, so Manager never tries to replace them.
"""

from __future__ import annotations

import configparser
import io
import re
import tomllib
from pathlib import Path

from services import constraints
from services.files import write_atomic
from services.settings import Settings

MANAGER_NAMES = ("comfyui-manager",)
SETTINGS: dict[str, str] = {
    "security_level": "normal",
    "use_uv": "False",
    "network_mode": "public",
    "file_logging": "True",
}


def user_directory(settings: Settings) -> Path:
    """ComfyUI's user directory: ``--user-directory`` when ComfyUI gets one, else its default."""
    from services.launcher import comfyui_argv

    argv = comfyui_argv(settings)
    for index, arg in enumerate(argv):
        if arg == "--user-directory" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--user-directory="):
            return Path(arg.split("=", 1)[1])
    return settings.comfyui_dir / "user"


def find_manager(settings: Settings) -> Path | None:
    """The ComfyUI-Manager custom node folder ComfyUI will load, if any."""
    for folder in (settings.custom_nodes_dir, settings.comfyui_dir / "custom_nodes"):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.lower() in MANAGER_NAMES and entry.is_dir():
                return entry
    return None


def manager_version(folder: Path) -> tuple[int, ...] | None:
    """Manager's version from its pyproject.toml, or from ``version_code`` in its sources."""
    try:
        data = tomllib.loads((folder / "pyproject.toml").read_text())
        text = str(data["project"]["version"])
        return tuple(int(part) for part in re.findall(r"\d+", text)[:3])
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError):
        pass
    for source in (folder / "glob" / "manager_core.py", folder / "__init__.py"):
        try:
            match = re.search(r"version_code\s*=\s*\[([\d,\s]+)\]", source.read_text(errors="replace"))
        except OSError:
            continue
        if match:
            return tuple(int(part) for part in re.findall(r"\d+", match.group(1)))
    return None


def config_targets(settings: Settings, folder: Path | None, packaged: bool) -> list[Path]:
    """The folders whose ``config.ini`` the installed Manager reads."""
    targets: list[Path] = []
    if folder is not None:
        version = manager_version(folder)
        if version is not None and version < (3, 1):
            targets.append(folder)
        else:
            targets.append(user_directory(settings) / "default" / "ComfyUI-Manager")
    if packaged:
        targets.append(user_directory(settings) / "__manager")
    return targets


def render_config(existing: str, pinned: list[str]) -> str:
    """``existing`` config.ini with ComfyPod's keys set in ``[default]``; other keys kept."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read_string(existing)
    except configparser.Error:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
    if not parser.has_section("default"):
        parser.add_section("default")
    for key, value in SETTINGS.items():
        parser.set("default", key, value)
    blacklist = [item.strip() for item in parser.get("default", "downgrade_blacklist", fallback="").split(",")]
    for name in pinned:
        if name not in blacklist:
            blacklist.append(name)
    parser.set("default", "downgrade_blacklist", ",".join(item for item in blacklist if item))
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def render_blacklist(existing: str, pinned: list[str]) -> str:
    lines = [line.rstrip() for line in existing.splitlines()]
    for name in pinned:
        if name not in {line.strip() for line in lines}:
            lines.append(name)
    return "\n".join(line for line in lines if line.strip()) + "\n"


def configure(settings: Settings, packaged: bool = False) -> list[Path]:
    """Write Manager's config.ini and pip_blacklist.list where the installed version reads them.
    Does nothing when no Manager is installed. Returns the files written."""
    folder = find_manager(settings)
    if folder is None and not packaged:
        return []
    pinned = list(constraints.PINNED)
    written: list[Path] = []
    for target in config_targets(settings, folder, packaged):
        target.mkdir(parents=True, exist_ok=True)
        config = target / "config.ini"
        current = config.read_text() if config.is_file() else ""
        _write(config, render_config(current, pinned))
        blacklist = target / "pip_blacklist.list"
        current = blacklist.read_text() if blacklist.is_file() else ""
        _write(blacklist, render_blacklist(current, pinned))
        written += [config, blacklist]
    return written


def _write(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    write_atomic(path, text)
