"""Bring a newer default catalog into the user's presets.yaml without clobbering their edits.

A three-way merge per preset, against the default the user's file came from (the *base*,
kept in ``config/state/presets.default.yaml``):

- new upstream, never in the base: **added** (appended to the user's file);
- unchanged by the user (equal to the base) but changed upstream: **updated**;
- edited by the user and changed upstream: **kept** (the user's version stays);
- deleted by the user (in the base, not in their file): stays deleted;
- dropped upstream: stays in the user's file, reported.

Used at start-up (:func:`seed`, a newer image) and by ``comfypod presets update``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from presets import yamledit
from presets.catalog import DEFAULT_PATH, _locked, _read, load_text, read_plain, write_atomic
from presets.validate import CatalogValidationError
from services.errors import CatalogError

log = logging.getLogger(__name__)

BASE_NAME = "presets.default.yaml"


@dataclass
class MergeResult:
    text: str
    changed: bool
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    deleted_by_user: list[str] = field(default_factory=list)
    dropped_upstream: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # left out: they clash with the user's presets
    from_version: str | None = None
    to_version: str | None = None

    def summary(self) -> str:
        """Several lines: what changed, by kind."""
        head = f"catalog {self.from_version or '?'} -> {self.to_version or '?'}"
        lines = [head if self.changed else f"{head}: nothing to change"]
        for label, ids in (
            ("added", self.added),
            ("updated (you had not edited them)", self.updated),
            ("kept your edits (changed upstream too)", self.kept),
            ("left out (you had removed them)", self.deleted_by_user),
            ("no longer in the default (kept in your file)", self.dropped_upstream),
            ("left out (they share a file path with your presets but differ)", self.conflicts),
        ):
            if ids:
                lines.append(f"  {label}: {', '.join(ids)}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "added": self.added,
            "updated": self.updated,
            "kept": self.kept,
            "deleted_by_user": self.deleted_by_user,
            "dropped_upstream": self.dropped_upstream,
            "conflicts": self.conflicts,
        }


def version_key(version: str | None) -> tuple[int, ...]:
    """``"2.10.1"`` -> ``(2, 10, 1)``; unknown versions sort first."""
    if not version:
        return ()
    return tuple(int(n) for n in re.findall(r"\d+", str(version).split("+")[0])[:4])


def _presets_of(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        plain = read_plain(text)
    except CatalogError:
        return {}
    presets = plain.get("presets") if isinstance(plain, dict) else None
    return presets if isinstance(presets, dict) else {}


def merge_text(user_text: str, new_text: str, base_text: str | None = None) -> MergeResult:
    """Merge the catalog ``new_text`` into ``user_text`` (both must be valid catalogs)."""
    user_catalog = load_text(user_text, "presets.yaml")
    new_catalog = load_text(new_text, "new catalog")
    user = _presets_of(user_text)
    new = _presets_of(new_text)
    base = _presets_of(base_text)
    have_base = base_text is not None
    result = MergeResult(user_text, False, to_version=new_catalog.version,
                         from_version=(user_catalog.metadata.get("default_version")
                                       or _version_of(base_text) or user_catalog.version))
    changes: dict[str, Any] = {}
    for preset_id, data in new.items():
        if preset_id not in user:
            if have_base and preset_id in base:
                result.deleted_by_user.append(preset_id)
            else:
                changes[preset_id] = data
                result.added.append(preset_id)
        elif user[preset_id] == data:
            continue
        elif have_base and base.get(preset_id) == user[preset_id]:
            changes[preset_id] = data
            result.updated.append(preset_id)
        else:
            result.kept.append(preset_id)
    result.dropped_upstream = [pid for pid in user if pid not in new and (not have_base or pid in base)]
    edits: list[tuple[tuple[str, ...], dict[str, Any]]] = [(("presets",), changes)]
    metadata = user_catalog.metadata or {}
    has_metadata = bool(metadata) and "metadata" in _document_keys(user_text)
    meta_changes: dict[str, Any] = {}
    if new_catalog.version and has_metadata and str(metadata.get("default_version", "")) != new_catalog.version:
        meta_changes["default_version"] = new_catalog.version
    # model folders the merged presets may need (models/TTS for the audio suite): the user's
    # list plus the new default's, so no preset is left out only for a folder name
    mine = [str(f) for f in (metadata.get("extra_folders") or [])]
    wanted = [str(f) for f in (new_catalog.metadata.get("extra_folders") or []) if str(f) not in mine]
    if wanted and changes:
        if has_metadata:
            meta_changes["extra_folders"] = mine + wanted
        else:
            created = {"default_version": new_catalog.version} if new_catalog.version else {}
            edits.append(((), {"metadata": {**created, "extra_folders": wanted}}))
    if meta_changes:
        edits.append((("metadata",), meta_changes))
    while True:
        text = yamledit.apply_edits(user_text, edits)
        try:
            load_text(text, "merged catalog")  # never write what does not validate
            break
        except CatalogValidationError as err:
            # a new or updated preset that clashes with one the user kept (the same file path
            # with another URL or size, as in catalogs of earlier images) is left out, reported,
            # and everything else is still merged (issue 11)
            culprits = _clashing(err, changes)
            if not culprits:
                raise
            for preset_id in culprits:
                changes.pop(preset_id)
                for bucket in (result.added, result.updated):
                    if preset_id in bucket:
                        bucket.remove(preset_id)
                result.conflicts.append(preset_id)
    result.text = text
    result.changed = text != user_text
    return result


def _clashing(err: CatalogValidationError, changes: dict[str, Any]) -> set[str]:
    """The presets being merged in that a validation error names (as subject or as 'also in')."""
    found: set[str] = set()
    for issue in err.issues:
        if not issue.is_error:
            continue
        named = {issue.preset, *re.findall(r"also in ([A-Z0-9_]+)", issue.message)}
        found |= {pid for pid in named if pid in changes}
    return found


def _version_of(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        root = read_plain(text)
    except CatalogError:
        return None
    metadata = root.get("metadata") if isinstance(root, dict) else None
    value = metadata.get("version") if hasattr(metadata, "get") else None
    return str(value) if value is not None else None


def _document_keys(text: str) -> list[str]:
    try:
        root = read_plain(text)
    except CatalogError:
        return []
    return list(root) if isinstance(root, dict) else []


def base_path(settings: Any) -> Path:
    return Path(settings.state_dir) / BASE_NAME


def _apply(settings: Any, new_text: str, *, dry_run: bool, force: bool, what: str) -> MergeResult:
    target = Path(settings.presets_file)
    base_file = base_path(settings)
    with _locked(target):
        user_text = _read(target)
        base_text = base_file.read_text(encoding="utf-8") if base_file.is_file() else None
        new_version = _version_of(new_text)
        base_version = _version_of(base_text)
        if not force and base_text is not None and version_key(new_version) < version_key(base_version):
            result = MergeResult(user_text, False, from_version=base_version, to_version=new_version)
            log.info("%s: version %s is older than %s; nothing merged", what, new_version, base_version)
            return result
        result = merge_text(user_text, new_text, base_text)
        if dry_run:
            return result
        if result.changed:
            write_atomic(target, result.text)
        write_atomic(base_file, new_text)
    return result


def seed(settings: Any) -> MergeResult | None:
    """Start-up step: first start copies the default; a newer image merges its default in."""
    target = Path(settings.presets_file)
    default_text = DEFAULT_PATH.read_text(encoding="utf-8")
    base_file = base_path(settings)
    if not target.exists():
        with _locked(target):
            if not target.exists():
                write_atomic(target, default_text)
                write_atomic(base_file, default_text)
                log.info("presets: wrote the default catalog %s to %s", _version_of(default_text), target)
                return None
    if base_file.is_file() and base_file.read_text(encoding="utf-8") == default_text:
        return None
    try:
        result = _apply(settings, default_text, dry_run=False, force=False, what="image default")
    except CatalogError as err:
        log.error("presets: could not merge the new default catalog into %s: %s", target, err)
        return None
    if result.changed:
        log.info("presets: %s", result.summary().replace("\n", ";"))
    return result


def _fetch(settings: Any, url: str) -> str:
    """Download a catalog through presets.download (the one place bytes are fetched)."""
    from presets.download import FileRequest, fetch_file

    dest = Path(settings.state_dir) / "presets.update.yaml"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        fetch_file(settings, FileRequest(url=url, dest=dest))
        return _read(dest)
    finally:
        dest.unlink(missing_ok=True)


def update_catalog(settings: Any, source: str | None = None, *, dry_run: bool = False,
                   force: bool = False) -> MergeResult:
    """``comfypod presets update [URL|FILE]``: fetch a newer catalog and merge it in.

    With no source, PRESETS_UPDATE_URL: there is no built-in address, so a catalog (whose URLs
    the pod will download) only ever comes from a place the user named."""
    source = source or getattr(settings, "presets_update_url", "")
    if not source:
        raise CatalogError("no catalog to update from: give a URL or file "
                           "(comfypod presets update URL|FILE) or set PRESETS_UPDATE_URL")
    if re.match(r"^[a-z][a-z0-9+.-]*://", source, re.I):
        text = _fetch(settings, source)
    else:
        text = _read(Path(source))
    load_text(text, source.rsplit("/", 1)[-1] or "new catalog")
    return _apply(settings, text, dry_run=dry_run, force=force, what=source)
