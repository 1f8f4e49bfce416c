"""Which presets are installed: one ``stat`` per distinct file of the catalog.

A preset is *installed* when every required file is present (at its exact size when the
catalog knows it), *damaged* when a file is there with the wrong size, *partial* when some
files (or ``.part`` downloads) are there, *missing* when none are. A file shared by several
presets (a T5 encoder, a VAE) is looked at, stored and counted once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from presets.catalog import Catalog, ModelFile
from services.errors import CatalogError, PathError
from services.paths import within

STATES = ("installed", "partial", "missing", "damaged")
FILE_STATES = ("present", "missing", "downloading", "damaged", "unsafe")


@dataclass(frozen=True)
class FileStatus:
    path: str
    state: str  # present | missing | downloading (.part only) | damaged (size differs) | unsafe
    size_on_disk: int  # bytes of the file, or of its .part while downloading
    expected_size: int | None  # exact size from the catalog, else its estimate, else None
    exact: bool  # expected_size is exact
    optional: bool
    shared_with: tuple[str, ...]  # other presets that need the same file

    @property
    def bytes_missing(self) -> int:
        if self.state == "present" or self.expected_size is None:
            return 0
        if self.state == "downloading":
            return max(0, self.expected_size - self.size_on_disk)
        return self.expected_size


@dataclass(frozen=True)
class PresetStatus:
    id: str
    state: str
    files: tuple[FileStatus, ...]
    bytes_present: int
    bytes_missing: int  # estimate when some sizes are estimates
    exact: bool  # every size involved is exact

    @property
    def files_present(self) -> int:
        return sum(1 for f in self.files if f.state == "present")

    @property
    def installed(self) -> bool:
        return self.state == "installed"

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "state": self.state,
            "bytes_present": self.bytes_present,
            "bytes_missing": self.bytes_missing,
            "exact": self.exact,
            "files": [
                {
                    "path": f.path,
                    "state": f.state,
                    "size_on_disk": f.size_on_disk,
                    "expected_size": f.expected_size,
                    "exact": f.exact,
                    "optional": f.optional,
                    "shared_with": list(f.shared_with),
                }
                for f in self.files
            ],
        }


class _Scanner:
    """Stats each distinct path once; checks each distinct folder with ``within`` once."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self._folders: dict[str, str | None] = {}
        self._files: dict[str, tuple[str, int]] = {}

    def _folder(self, rel_folder: str) -> str | None:
        """The real folder for a models-relative folder, or None when it leaves models/."""
        if rel_folder not in self._folders:
            try:
                real = within(self.models_dir, rel_folder) if rel_folder else self.models_dir.resolve()
                self._folders[rel_folder] = str(real)
            except PathError:
                self._folders[rel_folder] = None
        return self._folders[rel_folder]

    def look(self, item: ModelFile) -> tuple[str, int]:
        """(present|missing|downloading|damaged|unsafe, bytes on disk) for one catalog file."""
        known = self._files.get(item.path)
        if known is not None:
            return known
        rel_folder, _, name = item.path.rpartition("/")
        folder = self._folder(rel_folder)
        if folder is None or name in ("", ".", ".."):
            result = ("unsafe", 0)
        else:
            target = f"{folder}/{name}"
            try:
                st = os.stat(target)
                if not _is_file(st.st_mode):
                    result = ("damaged", 0)
                elif item.size is not None and st.st_size != item.size:
                    result = ("damaged", st.st_size)
                else:
                    result = ("present", st.st_size)
            except FileNotFoundError:
                try:
                    result = ("downloading", os.stat(target + ".part").st_size)
                except OSError:
                    result = ("missing", 0)
            except OSError:
                result = ("missing", 0)
        self._files[item.path] = result
        return result


def _is_file(mode: int) -> bool:
    return (mode & 0o170000) == 0o100000


def _users(catalog: Catalog) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for preset in catalog:
        for item in preset.files:
            ids = users.setdefault(item.path, [])
            if preset.id not in ids:
                ids.append(preset.id)
    return users


def preset_status(catalog: Catalog, models_dir: Path, ids: Iterable[str] | None = None) -> dict[str, PresetStatus]:
    """Status of every preset (or of ``ids``), from one stat per distinct file."""
    scanner = _Scanner(models_dir)
    users = _users(catalog)
    wanted = [catalog.get(i) for i in ids] if ids is not None else list(catalog)
    out: dict[str, PresetStatus] = {}
    for preset in wanted:
        files: list[FileStatus] = []
        for item in preset.files:
            state, on_disk = scanner.look(item)
            files.append(
                FileStatus(
                    path=item.path,
                    state=state,
                    size_on_disk=on_disk,
                    expected_size=item.expected_size,
                    exact=item.size is not None,
                    optional=item.optional,
                    shared_with=tuple(u for u in users.get(item.path, ()) if u != preset.id),
                )
            )
        out[preset.id] = _summarize(preset.id, files)
    return out


def _summarize(preset_id: str, files: list[FileStatus]) -> PresetStatus:
    required = [f for f in files if not f.optional] or files
    if any(f.state in ("damaged", "unsafe") for f in required):
        state = "damaged"
    elif all(f.state == "present" for f in required):
        state = "installed"
    elif any(f.state in ("present", "downloading") for f in files):
        state = "partial"
    else:
        state = "missing"
    present = sum(f.size_on_disk for f in files if f.state == "present")
    missing = sum(f.bytes_missing for f in files if not f.optional)
    exact = all(f.exact for f in files)
    return PresetStatus(preset_id, state, tuple(files), present, missing, exact)


def installed_ids(statuses: dict[str, PresetStatus]) -> list[str]:
    """Presets the user has: installed, damaged (all there, a size wrong), or partial with a
    download in progress. A preset that is partial only because it shares files with others
    is not one of them."""
    return [
        pid for pid, s in statuses.items()
        if s.state in ("installed", "damaged")
        or (s.state == "partial" and any(f.state == "downloading" for f in s.files))
    ]


def disk_usage(catalog: Catalog, models_dir: Path) -> int:
    """Bytes on disk of catalog files, each shared file counted once."""
    scanner = _Scanner(models_dir)
    seen: dict[str, int] = {}
    for preset in catalog:
        for item in preset.files:
            if item.path not in seen:
                state, size = scanner.look(item)
                seen[item.path] = size if state in ("present", "damaged") else 0
    return sum(seen.values())


def files_to_remove(catalog: Catalog, models_dir: Path, preset_id: str,
                    installed_ids: Iterable[str]) -> list[Path]:
    """Files of ``preset_id`` on disk that no other installed preset needs (plus their .part)."""
    preset = catalog.get(preset_id)
    keep: set[str] = set()
    for other in installed_ids:
        try:
            other_preset = catalog.get(other)
        except CatalogError:  # an id no longer in the catalog needs nothing
            continue
        if other_preset.id != preset.id:
            keep.update(f.path for f in other_preset.files)
    out: list[Path] = []
    for item in preset.files:
        if item.path in keep:
            continue
        pure = PurePosixPath(item.path)
        try:
            # the folder must stay inside models/; the file itself may be the user's link
            target = within(Path(models_dir), str(pure.parent)) / pure.name
        except PathError:
            continue
        for candidate in (target, target.with_name(target.name + ".part")):
            if candidate.is_file() or candidate.is_symlink():
                out.append(candidate)
    return out
