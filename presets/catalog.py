"""The presets catalog: load, look up, hot-reload and edit presets.yaml without losing comments.

- :func:`load_catalog` reads presets.yaml (or a folder of ``*/preset.yaml`` files, the
  per-preset layout) into a :class:`Catalog` of frozen :class:`Preset` objects, or raises
  :class:`~services.errors.CatalogError` naming the preset, the field and line:column.
- :class:`CatalogStore` keeps the last good catalog and reloads when the file's mtime changes;
  an invalid edit leaves the last good one in force and shows its error (``.error``).
- :func:`add_preset`, :func:`update_preset`, :func:`remove_preset`, :func:`save_text` validate
  first, then write atomically (temp file + ``os.replace`` in the same folder); comments, order
  and formatting outside the edited preset stay byte-for-byte.
- :func:`seed_catalog` (a start-up step) puts the baked default on the volume or merges a
  newer default in (see presets.merge).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz, process
from ruamel.yaml.error import MarkedYAMLError, YAMLError

import presets
from presets import yamledit
from presets.sources import classify_source, normalize_url
from presets.validate import (
    CatalogValidationError,
    Issue,
    parse_size,
    raise_for,
    to_plain,
    validate_document,
    validate_preset_document,
)
from services import files
from services.errors import CatalogError
from services.paths import MODEL_FOLDERS

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(presets.__file__).parent / "presets.yaml"
TYPES = ("video", "image", "audio")
DEFAULT_CATEGORIES = {"video": "Video Generation", "image": "Image Generation", "audio": "Audio Generation"}
MAX_BYTES = 8 * 1024 * 1024  # a catalog is text; anything bigger is a mistake


@dataclass(frozen=True)
class ModelFile:
    """One file of a preset. ``size`` is exact (bytes) or None; ``approx_size`` is an estimate."""

    path: str
    url: str
    size: int | None
    sha256: str | None
    optional: bool
    source: dict[str, Any]
    approx_size: int | None = None
    note: str | None = None
    last_check: dict[str, Any] | None = None

    @property
    def expected_size(self) -> int | None:
        """Best known size: exact when known, else the estimate."""
        return self.size if self.size is not None else self.approx_size


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    type: str
    category: str
    description: str
    files: tuple[ModelFile, ...]
    tags: tuple[str, ...]
    use_case: str
    vram_gb: float | None
    disk_gb: float | None
    replaced_by: str | None = None

    @property
    def total_size(self) -> tuple[int, bool]:
        """(bytes of all files, True when every size is exact)."""
        total, exact = 0, True
        for item in self.files:
            if item.size is None:
                exact = False
            total += item.expected_size or 0
        return total, exact

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "category": self.category,
            "description": self.description,
            "use_case": self.use_case,
            "tags": list(self.tags),
            "vram_gb": self.vram_gb,
            "disk_gb": self.disk_gb,
            "replaced_by": self.replaced_by,
            "files": [
                {
                    "path": f.path,
                    "url": f.url,
                    "size": f.size,
                    "approx_size": f.approx_size,
                    "sha256": f.sha256,
                    "optional": f.optional,
                    "source": dict(f.source),
                }
                for f in self.files
            ],
        }


def canonical_id(text: str) -> str:
    """``wan-22-5b-tiv2`` / ``Wan_22_5b_TIv2`` / `` sd1.5 basic`` -> ``WAN_22_5B_TIV2`` style."""
    return re.sub(r"[^A-Z0-9]+", "_", str(text).strip().upper()).strip("_")


@dataclass
class Catalog:
    """Presets by id, plus the warnings found while loading and where they came from."""

    presets: dict[str, Preset]
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[Issue] = field(default_factory=list)
    path: Path | None = None

    @property
    def version(self) -> str | None:
        value = self.metadata.get("version")
        return str(value) if value is not None else None

    def __len__(self) -> int:
        return len(self.presets)

    def __iter__(self) -> Iterator[Preset]:
        return iter(self.presets.values())

    def __contains__(self, preset_id: object) -> bool:
        return isinstance(preset_id, str) and canonical_id(preset_id) in self.presets

    def by_type(self, kind: str) -> list[Preset]:
        return [p for p in self.presets.values() if p.type == kind]

    def closest(self, preset_id: str, limit: int = 3) -> list[str]:
        """The ids that look most like ``preset_id`` (by id and by name)."""
        wanted = canonical_id(preset_id)
        if not wanted or not self.presets:
            return []
        choices = {pid: f"{pid} {canonical_id(p.name)}" for pid, p in self.presets.items()}
        scored = process.extract(wanted, choices, scorer=fuzz.WRatio, limit=limit * 2)
        out: list[str] = []
        for _, score, pid in sorted(scored, key=lambda s: (-s[1], s[2])):
            if score >= 50 and pid not in out:
                out.append(pid)
        return out[:limit]

    def get(self, preset_id: str) -> Preset:
        """The preset named ``preset_id`` (any case; ``-`` or ``.`` for ``_``), or CatalogError."""
        key = canonical_id(preset_id)
        preset = self.presets.get(key)
        if preset is not None:
            return preset
        near = self.closest(preset_id)
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise CatalogError(f"unknown preset {preset_id.strip()!r}{hint}")

    def resolve_ids(self, ids: list[str] | tuple[str, ...]) -> tuple[list[Preset], list[str]]:
        """Presets for ``ids`` in order (duplicates dropped) and one message per unknown id."""
        found: list[Preset] = []
        problems: list[str] = []
        for raw in ids:
            if not str(raw).strip():
                continue
            try:
                preset = self.get(raw)
            except CatalogError as err:
                problems.append(str(err))
                continue
            if preset not in found:
                found.append(preset)
        return found, problems

    def search(self, text: str) -> list[Preset]:
        """Presets matching every word of ``text`` (id, name, tags, type, description, paths),
        best first; when nothing matches every word, the closest fuzzy matches."""
        words = [w for w in re.split(r"\s+", text.strip().lower()) if w]
        if not words:
            return list(self.presets.values())
        ranked: list[tuple[int, str, Preset]] = []
        for preset in self.presets.values():
            fields = {
                "id": preset.id.lower(),
                "name": preset.name.lower(),
                "tags": " ".join(preset.tags).lower(),
                "type": f"{preset.type} {preset.category}".lower(),
                "text": f"{preset.description} {preset.use_case}".lower(),
                "files": " ".join(f.path for f in preset.files).lower(),
            }
            weights = {"id": 8, "name": 6, "tags": 5, "type": 3, "text": 2, "files": 1}
            score = 0
            for word in words:
                hits = [weights[k] for k, v in fields.items() if word in v or word in v.replace("_", "-")]
                if not hits:
                    score = -1
                    break
                score += max(hits)
            if score > 0:
                ranked.append((score, preset.id, preset))
        if ranked:
            return [p for _, _, p in sorted(ranked, key=lambda r: (-r[0], r[1]))]
        return [self.presets[pid] for pid in self.closest(text, limit=5)]


# ---- loading -----------------------------------------------------------------------------


def parse_text(text: str, filename: str | None = None) -> Any:
    """ruamel round-trip parse; a YAML syntax error becomes a CatalogError with line:col."""
    if len(text) > MAX_BYTES:
        raise CatalogValidationError([Issue(f"the file is larger than {MAX_BYTES} bytes", file=filename)])
    try:
        return yamledit.parse(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = " ".join(str(err.problem or err.context or "not valid YAML").split())
        if type(err).__name__ == "DuplicateKeyError":
            match = re.search(r'duplicate key "(.*?)" with value', problem)
            name = match.group(1) if match else "?"
            problem = f"duplicate key {name!r}: each preset id (and each field) may appear once"
            if err.context_mark is not None:
                problem += f" (first at line {err.context_mark.line + 1})"
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        raise CatalogValidationError([Issue(f"YAML: {problem}", line=line, column=column, file=filename)]) from None
    except (YAMLError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError,
            RecursionError) as err:
        # ruamel raises these for some malformed input (bad tags, odd scalars)
        message = " ".join(str(err).split())[:160] or type(err).__name__
        raise CatalogValidationError([Issue(f"YAML: {message}", file=filename, line=1, column=1)]) from None


def _file_from(data: Mapping[str, Any]) -> ModelFile:
    url = normalize_url(str(data["url"]))
    parsed = parse_size(data["size"]) if "size" in data else None
    exact = parsed[0] if parsed and parsed[1] else None
    approx = parsed[0] if parsed and not parsed[1] else None
    sha = data.get("sha256")
    checksum = data.get("checksum")
    if not sha and isinstance(checksum, Mapping) and checksum.get("algorithm") == "sha256":
        sha = checksum.get("value")
    derived = classify_source(url)
    source = dict(derived)
    given = data.get("source")
    if isinstance(given, Mapping):
        source.update({k: v for k, v in given.items() if v is not None})
        source["type"] = derived["type"]
        if derived["type"] == "huggingface":
            source["revision"] = derived["revision"]
    return ModelFile(
        path=str(data["path"]),
        url=url,
        size=exact,
        sha256=str(sha).lower() if sha else None,
        optional=bool(data.get("optional", False)),
        source=source,
        approx_size=approx,
        note=data.get("note"),
        last_check=dict(data["last_check"]) if isinstance(data.get("last_check"), Mapping) else None,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 else None


def _preset_from(preset_id: str, data: Mapping[str, Any]) -> Preset:
    files = tuple(_file_from(f) for f in data["files"])
    requirements = data.get("requirements") if isinstance(data.get("requirements"), Mapping) else {}
    vram = _number(data.get("vram_gb", requirements.get("vram_gb")))
    disk = _number(data.get("disk_gb", requirements.get("disk_gb")))
    if disk is None:
        total = sum(f.expected_size or 0 for f in files)
        disk = round(total / 1024**3, 1) if total else None
    kind = str(data["type"])
    return Preset(
        id=preset_id,
        name=str(data["name"]),
        type=kind,
        category=str(data.get("category") or DEFAULT_CATEGORIES.get(kind, kind)),
        description=str(data.get("description") or ""),
        files=files,
        tags=tuple(str(t) for t in data.get("tags") or ()),
        use_case=str(data.get("use_case") or ""),
        vram_gb=vram,
        disk_gb=disk,
        replaced_by=canonical_id(data["replaced_by"]) if data.get("replaced_by") else None,
    )


def _fast_plain(text: str) -> Any:
    """The document through the C parser, or _SLOW when that parser is missing or refuses it."""
    if not yamledit.fast_available() or len(text) > MAX_BYTES:
        return _SLOW
    try:
        return yamledit.parse_plain(text)
    except (YAMLError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError,
            RecursionError):
        return _SLOW


_SLOW = object()


def read_plain(text: str, filename: str | None = None) -> Any:
    """Plain data of a YAML text (fast path when possible); CatalogError on a syntax error."""
    fast = _fast_plain(text)
    if fast is not _SLOW:
        try:
            return to_plain(fast)[0]
        except CatalogError:
            pass
    return to_plain(parse_text(text, filename))[0]


def load_text(text: str, filename: str | None = None, *, path: Path | None = None) -> Catalog:
    """Parse and validate catalog text; raise CatalogError (with every issue) on any error.

    A clean document goes through the C parser only; anything it finds wrong is parsed again
    with ruamel's round-trip parser, which knows the line and column of every node.
    """
    fast = _fast_plain(text)
    plain = None
    if fast is not _SLOW:
        try:
            plain, issues = validate_document(fast, filename=filename)
        except CatalogError:
            plain = None
        if plain is not None and issues:
            plain = None
    if plain is None:
        root = parse_text(text, filename)
        plain, issues = validate_document(root, filename=filename)
        raise_for(issues)
    presets_data = plain.get("presets") or {}
    loaded = {pid: _preset_from(pid, data) for pid, data in presets_data.items()}
    metadata = dict(plain.get("metadata") or {})
    return Catalog(loaded, metadata, [i for i in issues if not i.is_error], path)


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CatalogError(f"{path}: is a folder") from None
    except OSError as err:
        raise CatalogError(f"{path}: cannot read: {err.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CatalogError(f"{path}: not UTF-8 text (byte {err.start})") from None


def load_catalog(path: str | os.PathLike[str]) -> Catalog:
    """Load presets.yaml, or a folder in the per-preset layout (``<type>/<id>/preset.yaml``)."""
    path = Path(path)
    if path.is_dir():
        return load_preset_dir(path)
    return load_text(_read(path), path.name, path=path)


def load_preset_dir(folder: Path) -> Catalog:
    """The per-preset layout: one ``preset.yaml`` per preset, its ``id`` in kebab-case."""
    files = sorted(folder.rglob("preset.yaml"))
    if not files:
        raise CatalogError(f"{folder}: no */preset.yaml files")
    issues: list[Issue] = []
    loaded: dict[str, Preset] = {}
    origin: dict[str, str] = {}
    seen: dict[str, Any] = {}
    raw_ids = {}
    for file in files:
        root = parse_text(_read(file), str(file.relative_to(folder)))
        raw = root.get("id") if hasattr(root, "get") else None
        raw_ids[file] = (root, canonical_id(str(raw)) if raw else canonical_id(file.parent.name))
    all_ids = {pid for _, pid in raw_ids.values()}
    for file, (root, preset_id) in raw_ids.items():
        name = str(file.relative_to(folder))
        if preset_id in origin:
            issues.append(Issue(f"duplicate preset id (also in {origin[preset_id]})", preset_id, "id",
                                1, 1, file=name))
            continue
        origin[preset_id] = name
        extra = (root.get("extra_folders") if hasattr(root, "get") else None) or []
        plain, found = validate_preset_document(
            root, preset_id, filename=name, folders=set(MODEL_FOLDERS) | set(extra), seen=seen, ids=all_ids
        )
        issues += found
        if not any(i.is_error for i in found):
            loaded[preset_id] = _preset_from(preset_id, plain)
    raise_for(issues)
    return Catalog(loaded, {}, issues, folder)


# ---- hot reload --------------------------------------------------------------------------


class CatalogStore:
    """The catalog in force: the user's file when it is valid, else the last good one.

    ``current()`` costs one ``stat`` when nothing changed. Before any good load it falls back
    to the baked default, so a broken file never leaves the pod without presets.
    """

    def __init__(self, settings: Any, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else Path(settings.presets_file)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._catalog: Catalog | None = None
        self._error: str | None = None

    @property
    def error(self) -> str | None:
        """The error of the file on disk when it is not valid (the last good catalog is in use)."""
        self.current()
        return self._error

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> Catalog:
        with self._lock:
            stamp = self._stat()
            if self._catalog is not None and stamp == self._stamp:
                return self._catalog
            self._stamp = stamp
            if stamp is None:
                # no file on the volume (yet): the last good catalog, else the baked default
                self._error = None
                if self._catalog is None:
                    self._catalog = load_catalog(DEFAULT_PATH)
                return self._catalog
            try:
                self._catalog = load_catalog(self.path)
                if self._error:
                    log.info("presets catalog %s is valid again", self.path)
                self._error = None
            except CatalogError as err:
                if str(err) != self._error:
                    log.error("presets catalog %s: %s (keeping the last good catalog)", self.path, err)
                self._error = str(err)
                if self._catalog is None:
                    self._catalog = load_catalog(DEFAULT_PATH)
            return self._catalog

    def reload(self) -> Catalog:
        with self._lock:
            self._stamp = None
        return self.current()


_SHARED: dict[Path, CatalogStore] = {}
_SHARED_LOCK = threading.Lock()


def shared_store(settings: Any) -> CatalogStore:
    """One CatalogStore per catalog file in this process, so callers do not re-parse the file."""
    path = Path(settings.presets_file)
    with _SHARED_LOCK:
        store = _SHARED.get(path)
        if store is None:
            store = _SHARED[path] = CatalogStore(settings)
        return store


# ---- edits -------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize writers (admin workers, CLI) with a lock file next to the catalog."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, keeping the file's mode; errors become CatalogError."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    try:
        files.write_atomic(path, text, mode=mode)
    except OSError as err:
        # a full disk (ENOSPC), a read-only volume: say so in one line, keep the old file (issue 11)
        raise CatalogError(f"cannot write {path.name}: {err.strerror}; the file is unchanged") from None


def save_text(path: str | os.PathLike[str], text: str) -> Catalog:
    """Validate ``text`` as a whole catalog and, only when valid, write it atomically."""
    path = Path(path)
    catalog = load_text(text, path.name, path=path)
    with _locked(path):
        write_atomic(path, text)
    return catalog


def _edit(path: Path, change: Any) -> Catalog:
    with _locked(path):
        text = _read(path)
        new_text = change(text)
        catalog = load_text(new_text, path.name, path=path)
        if new_text != text:
            write_atomic(path, new_text)
    return catalog


def _clean(data: Mapping[str, Any]) -> dict[str, Any]:
    """Preset data as it is written to the file (no id inside, no None values)."""
    if not isinstance(data, Mapping):
        raise CatalogError("a preset must be a mapping of fields")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "id" or value is None:
            continue
        if key == "files" and isinstance(value, list | tuple):
            value = [{k: v for k, v in dict(f).items() if v is not None} for f in value]
        out[key] = value
    return out


def add_preset(path: str | os.PathLike[str], data: Mapping[str, Any], preset_id: str | None = None) -> Catalog:
    """Append a preset to the file; its id is ``preset_id`` or ``data["id"]``."""
    if not isinstance(data, Mapping):
        raise CatalogError("a preset must be a mapping of fields")
    preset_id = preset_id or data.get("id")
    if not preset_id:
        raise CatalogError("a new preset needs an id")
    key = canonical_id(preset_id)
    path = Path(path)

    def change(text: str) -> str:
        current = load_text(text, path.name)
        if key in current.presets:
            raise CatalogError(f"preset {key} already exists: edit it instead")
        return yamledit.set_entry(text, ("presets",), key, _clean(data))

    return _edit(path, change)


def update_preset(path: str | os.PathLike[str], preset_id: str, data: Mapping[str, Any]) -> Catalog:
    """Replace a preset's fields with ``data`` (the whole preset); unchanged nodes keep comments."""
    path = Path(path)
    key = canonical_id(preset_id)

    def change(text: str) -> str:
        current = load_text(text, path.name)
        if key not in current.presets:
            current.get(preset_id)  # raises with the closest ids
        return yamledit.set_entry(text, ("presets",), key, _clean(data))

    return _edit(path, change)


def remove_preset(path: str | os.PathLike[str], preset_id: str) -> Catalog:
    """Delete a preset (and the comment lines right above it) from the file."""
    path = Path(path)
    key = canonical_id(preset_id)

    def change(text: str) -> str:
        current = load_text(text, path.name)
        if key not in current.presets:
            current.get(preset_id)
        return yamledit.delete_entry(text, ("presets",), key)

    return _edit(path, change)


def preset_data(text: str, preset_id: str) -> dict[str, Any]:
    """The plain data of one preset as written in ``text`` (for editing forms)."""
    plain = read_plain(text)
    key = canonical_id(preset_id)
    try:
        return plain["presets"][key]
    except (KeyError, TypeError):
        raise CatalogError(f"unknown preset {preset_id!r}") from None


def seed_catalog(settings: Any) -> None:
    """Start-up step: copy the baked default to the volume, or merge a newer default in."""
    from presets.merge import seed

    seed(settings)
