"""Checks a parsed catalog: JSON Schema (presets/schema.json) plus semantic rules.

Pure: takes the round-trip data ruamel.yaml produced (it knows each node's line and column)
and returns :class:`Issue` objects; nothing here reads files other than the packaged schema.
Every issue names the preset, the field and the line:column it points at.

Semantic rules: paths stay inside models/ (no ``..``, not absolute) and start with a known
model folder; URLs are https (plain http only for loopback hosts) and carry no password; a
path shared by several presets is one file (same URL, same size and sha256); sizes parse;
``source`` agrees with the URL; categories and ``replaced_by`` name things that exist.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema

from presets.sources import classify_source, normalize_url, url_problem
from services.errors import CatalogError
from services.paths import MODEL_FOLDERS

SCHEMA_PATH = Path(__file__).with_name("schema.json")

# Guards against hostile input (alias bombs, deep nesting) before anything walks the data.
MAX_NODES = 200_000
MAX_DEPTH = 64

_SIZE_RE = re.compile(r"^~?\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B|[KMGT])$")
_UNITS = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}
_MODEL_SUFFIXES = frozenset({".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".sft"})


@dataclass(frozen=True)
class Issue:
    """One finding: ``str(issue)`` is ``file:line:col: preset ID, field F: message``."""

    message: str
    preset: str | None = None
    field: str | None = None
    line: int | None = None
    column: int | None = None
    severity: str = "error"
    file: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def where(self) -> str:
        name = self.file or "presets.yaml"
        if self.line is None:
            return name
        return f"{name}:{self.line}:{self.column or 1}"

    def __str__(self) -> str:
        subject = []
        if self.preset:
            subject.append(f"preset {self.preset}")
        if self.field:
            subject.append(f"field {self.field}")
        head = ", ".join(subject)
        kind = "" if self.is_error else "warning: "
        return f"{self.where()}: {kind}{head + ': ' if head else ''}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "preset": self.preset,
            "field": self.field,
            "message": self.message,
        }


class CatalogValidationError(CatalogError):
    """The catalog has errors; ``issues`` holds every one, the message shows the first."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = list(issues)
        errors = [i for i in self.issues if i.is_error] or self.issues
        message = str(errors[0]) if errors else "the catalog is not valid"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        super().__init__(message)


# ---- sizes -------------------------------------------------------------------------------


def parse_size(value: Any) -> tuple[int, bool] | None:
    """``(bytes, exact)`` for a catalog size, or None when it does not parse.

    An integer is exact. A string like ``4.8GB`` or ``~4.8GB`` is an estimate; its units are
    read as powers of 1024 (the reference catalog's own "9.31GB (9536MB)" shows it means GiB).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, True) if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _SIZE_RE.match(value.strip())
    if not match:
        return None
    number = float(match.group(1))
    if not math.isfinite(number):
        return None
    return int(number * 1024 ** _UNITS[match.group(2)[0]]), False


def format_size(size: float | None, *, approx: bool = False) -> str:
    """Human size with binary units (``1.4 GiB``); ``?`` when unknown."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            text = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            return ("~" if approx else "") + text
        value /= 1024
    return "?"  # pragma: no cover


# ---- plain data with limits ----------------------------------------------------------------


class _TooBig(Exception):
    pass


KeyProblem = tuple[tuple[Any, ...], str, tuple[int, int] | None]


def to_plain(node: Any) -> tuple[Any, list[KeyProblem]]:
    """Copy ruamel's round-trip data into plain dict/list/str/int/float/bool/None.

    Returns the copy and ``(path, problem, (line, col))`` for each key that is not text. Raises
    :class:`CatalogValidationError` for cycles, alias bombs and nesting deeper than MAX_DEPTH.
    """
    problems: list[KeyProblem] = []
    count = [0]
    on_stack: set[int] = set()

    def walk(value: Any, path: tuple[Any, ...]) -> Any:
        count[0] += 1
        if count[0] > MAX_NODES or len(path) > MAX_DEPTH:
            raise _TooBig
        if isinstance(value, Mapping):
            if id(value) in on_stack:
                raise _TooBig
            on_stack.add(id(value))
            out: dict[str, Any] = {}
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, str | int | float):
                    where = None
                    with contextlib.suppress(AttributeError, KeyError, TypeError):
                        line, col = value.lc.key(key)
                        where = (line + 1, col + 1)
                    kind = "a list" if isinstance(key, tuple) else type(key).__name__
                    problems.append((path, f"a key must be text, not {kind}", where))
                    key = repr(key)
                elif not isinstance(key, str):
                    key = str(key)
                out[str(key)] = walk(item, (*path, str(key)))
            on_stack.discard(id(value))
            return out
        if isinstance(value, list | tuple):
            if id(value) in on_stack:
                raise _TooBig
            on_stack.add(id(value))
            seq = [walk(item, (*path, index)) for index, item in enumerate(value)]
            on_stack.discard(id(value))
            return seq
        if isinstance(value, bool) or value is None:
            return value
        if type(value).__name__ == "ScalarBoolean":
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, datetime.datetime | datetime.date):
            return value.isoformat()
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        return str(value)

    try:
        return walk(node, ()), problems
    except (_TooBig, RecursionError):
        raise CatalogValidationError(
            [Issue(f"the document is too large or too deeply nested (limits: {MAX_NODES} values, "
                   f"depth {MAX_DEPTH}, no recursive aliases)", line=1, column=1)]
        ) from None


# ---- positions ---------------------------------------------------------------------------


def position(root: Any, path: Sequence[Any], *, key: bool = False) -> tuple[int | None, int | None]:
    """1-based (line, column) of ``path`` inside ruamel round-trip data.

    ``key=True`` points at the last mapping key rather than its value. Falls back to the
    nearest ancestor that has position information.
    """
    best: tuple[int | None, int | None] = (None, None)
    node = root
    lc = getattr(root, "lc", None)
    if lc is not None and lc.line is not None:
        best = (lc.line + 1, lc.col + 1)
    for index, step in enumerate(path):
        last = index == len(path) - 1
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, Mapping):
                real = _real_key(node, step)
                if real is _MISSING:
                    break
                where = lc.key(real) if (last and key) else lc.value(real)
                node = node[real]
            elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
                where = lc.item(step)
                node = node[step]
            else:
                break
        except (AttributeError, KeyError, TypeError, IndexError):
            break
        if where and where[0] is not None:
            best = (where[0] + 1, where[1] + 1)
    return best


_MISSING = object()


def _real_key(node: Mapping[Any, Any], step: Any) -> Any:
    if step in node:
        return step
    for candidate in node:
        if str(candidate) == str(step):
            return candidate
    return _MISSING


def field_name(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# ---- schema ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=2)
def _validator(preset_only: bool) -> jsonschema.protocols.Validator:
    full = schema()
    if preset_only:
        target = {"$ref": "#/$defs/preset", "$defs": full["$defs"]}
    else:
        target = full
    cls = jsonschema.validators.validator_for(full)
    cls.check_schema(full)
    return cls(target)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_message(error: jsonschema.ValidationError) -> tuple[str, list[Any], bool]:
    """A one-line message, the path it points at, and whether it points at a key."""
    path = list(error.absolute_path)
    validator = error.validator
    if validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed]
        if extras:
            known = ", ".join(sorted(allowed))
            return f"unknown field {extras[0]!r} (known: {known})", [*path, extras[0]], True
    if validator == "propertyNames" or "propertyNames" in error.schema_path:
        name = error.instance
        canon = re.sub(r"[^A-Z0-9]+", "_", str(name).upper()).strip("_")
        return (
            f"preset id {_short(name)} must be UPPER_SNAKE_CASE such as {canon or 'MY_PRESET'}",
            [*path, name],
            True,
        )
    if validator == "required":
        return error.message.replace("is a required property", "is missing"), path, bool(path)
    if validator == "oneOf" and path and path[-1] in ("size", "download_size"):
        return (
            f"{_short(error.instance)} is not a size: use a number of bytes or an estimate like ~4.5GB",
            path,
            False,
        )
    if validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{_short(error.instance)} is not one of: {allowed}", path, False
    if validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{_short(error.instance)} is not {'an' if str(wanted)[0] in 'aeiou' else 'a'} {wanted}", path, False
    if validator == "pattern":
        return f"{_short(error.instance)} does not match {error.validator_value}", path, False
    if validator == "uniqueItems":
        return "has repeated items", path, False
    if validator == "minItems":
        return f"needs at least {error.validator_value} item(s)", path, False
    message = error.message.replace("\n", " ")
    if len(message) > 160:
        message = message[:157] + "..."
    return message, path, False


def _schema_issues(plain: Any, root: Any, *, prefix: tuple[Any, ...], preset_only: bool,
                   filename: str | None) -> list[Issue]:
    issues = []
    for error in _validator(preset_only).iter_errors(plain):
        message, path, at_key = _schema_message(error)
        full = [*prefix, *path]
        issues.append(_issue(message, full, root, filename, key=at_key))
    issues.sort(key=lambda i: (i.line or 0, i.column or 0))
    return issues


def _issue(message: str, path: Sequence[Any], root: Any, filename: str | None, *,
           key: bool = False, severity: str = "error") -> Issue:
    path = list(path)
    preset = None
    field_parts = path
    if len(path) >= 2 and path[0] == "presets":
        preset = str(path[1])
        field_parts = path[2:]
    elif path and path[0] == "preset":  # per-preset layout: the document is one preset
        preset = str(path[1]) if len(path) > 1 else None
        field_parts = path[2:]
        path = path[2:]
    line, column = position(root, path, key=key)
    return Issue(message, preset, field_name(field_parts) or None, line, column, severity, filename)


def _key_issue(message: str, path: Sequence[Any], where: tuple[int, int] | None, root: Any,
               filename: str | None) -> Issue:
    issue = _issue(message, path, root, filename)
    if where is None:
        return issue
    return Issue(message, issue.preset, issue.field, where[0], where[1], issue.severity, filename)


# ---- semantic rules ----------------------------------------------------------------------


def path_problem(path: str, folders: Iterable[str]) -> str | None:
    """Why ``path`` cannot be a models-relative file path, or None."""
    if "\x00" in path or "\\" in path:
        return "must not contain backslashes or NUL bytes"
    if path != path.strip():
        return "must not start or end with spaces"
    pure = PurePosixPath(path)
    if path.startswith("/") or pure.is_absolute():
        return "must be relative to workspace/models, not absolute"
    parts = path.split("/")
    if any(p in ("..", ".", "") for p in parts):
        return "must not contain '..', '.' or empty parts"
    if len(parts) < 2:
        return "must start with a model folder, like checkpoints/model.safetensors"
    folders = set(folders)
    if parts[0] not in folders:
        return (f"folder {parts[0]!r} is not a ComfyUI model folder "
                f"(add it to metadata.extra_folders if a custom node reads it)")
    return None


@dataclass
class _FileSeen:
    preset: str
    index: int
    url: str
    size: tuple[int, bool] | None
    sha256: str | None
    line: int | None
    file: str | None = None


def semantic_issues(plain: Mapping[str, Any], root: Any, *, filename: str | None = None,
                    skip: Iterable[str] = (), extra_ids: Iterable[str] = ()) -> list[Issue]:
    """The rules JSON Schema cannot express, for a whole catalog document."""
    issues: list[Issue] = []
    skip = set(skip)
    metadata = plain.get("metadata") if isinstance(plain.get("metadata"), Mapping) else {}
    extra = metadata.get("extra_folders") if isinstance(metadata.get("extra_folders"), list) else []
    folders = set(MODEL_FOLDERS) | {f for f in extra if isinstance(f, str)}
    categories = plain.get("categories") if isinstance(plain.get("categories"), Mapping) else None
    presets = plain.get("presets") if isinstance(plain.get("presets"), Mapping) else {}
    ids = set(presets) | set(extra_ids)
    seen: dict[str, _FileSeen] = {}
    for preset_id, preset in presets.items():
        if preset_id in skip or not isinstance(preset, Mapping):
            continue
        base = ("presets", preset_id)
        issues += preset_issues(preset, root, base, folders=folders, filename=filename,
                                categories=categories, ids=ids, seen=seen)
    return issues


def preset_issues(preset: Mapping[str, Any], root: Any, base: tuple[Any, ...], *,
                  folders: Iterable[str], filename: str | None,
                  categories: Mapping[str, Any] | None, ids: Iterable[str],
                  seen: dict[str, _FileSeen]) -> list[Issue]:
    """Semantic rules for one preset whose shape already passed the schema."""
    issues: list[Issue] = []
    preset_id = str(base[1])

    def add(message: str, *path: Any, severity: str = "error", key: bool = False) -> None:
        issues.append(_issue(message, [*base, *path], root, filename, severity=severity, key=key))

    category = preset.get("category")
    if categories is not None and isinstance(category, str):
        declared = categories.get(category)
        if not isinstance(declared, Mapping):
            known = ", ".join(sorted(categories)) or "none"
            add(f"category {category!r} is not declared under categories (declared: {known})", "category")
        elif declared.get("type") and declared.get("type") != preset.get("type"):
            add(f"category {category!r} holds {declared.get('type')} presets, but this preset's "
                f"type is {preset.get('type')}", "category")
    replaced_by = preset.get("replaced_by")
    if isinstance(replaced_by, str) and replaced_by not in set(ids):
        add(f"replaced_by names {replaced_by!r}, which is not a preset in this catalog", "replaced_by")

    own_paths: dict[str, int] = {}
    files = preset.get("files")
    for index, item in enumerate(files if isinstance(files, list) else []):
        if not isinstance(item, Mapping):
            continue
        path, url = item.get("path"), item.get("url")
        if isinstance(path, str):
            problem = path_problem(path, folders)
            if problem:
                add(f"{path!r} {problem}", "files", index, "path")
            elif path in own_paths:
                add(f"{path!r} is listed twice in this preset (also files[{own_paths[path]}])",
                    "files", index, "path")
            own_paths.setdefault(path, index)
        if not isinstance(url, str):
            continue
        problem = url_problem(url)
        if problem:
            add(f"{_short(url)} {problem}", "files", index, "url")
            continue
        fixed = normalize_url(url)
        if fixed != url.strip():
            add(f"{_short(url)} opens a web page, not the file: read as {fixed}",
                "files", index, "url", severity="warning")
        size = parse_size(item["size"]) if "size" in item else None
        if "size" in item and size is None:
            add(f"{_short(item['size'])} is not a size", "files", index, "size")
        sha = item.get("sha256")
        checksum = item.get("checksum")
        if isinstance(checksum, Mapping) and checksum.get("algorithm") == "sha256":
            value = str(checksum.get("value", "")).lower()
            if sha and value != str(sha).lower():
                add("checksum.value and sha256 disagree", "files", index, "checksum")
            elif not re.fullmatch(r"[0-9a-f]{64}", value):
                add("checksum.value is not a sha256 hex digest", "files", index, "checksum")
            sha = sha or value
        _source_issues(item, fixed, add, index)
        _suffix_issues(path, fixed, add, index)
        if isinstance(path, str):
            sha_l = str(sha).lower() if sha else None
            rel = [*base, "files", index][2:] if base[0] == "preset" else [*base, "files", index]
            line = position(root, rel)[0]
            prior = seen.get(path)
            if prior is None:
                seen[path] = _FileSeen(preset_id, index, fixed, size, sha_l, line, filename)
            elif prior.preset != preset_id:
                _shared_path_issues(prior, fixed, size, sha_l, path, add, index)
    return issues


def _source_issues(item: Mapping[str, Any], url: str, add: Any, index: int) -> None:
    source = item.get("source")
    if not isinstance(source, Mapping):
        return
    actual = classify_source(url)
    if source.get("type") != actual["type"]:
        add(f"source.type is {source.get('type')!r} but the URL is a {actual['type']} link",
            "files", index, "source", "type")
        return
    if actual["type"] == "huggingface":
        repo = source.get("repo")
        if repo and repo != actual["repo"]:
            add(f"source.repo is {repo!r} but the URL points into {actual['repo']!r}",
                "files", index, "source", "repo")
        revision = source.get("revision")
        if revision and revision != actual["revision"]:
            add(f"source.revision is {revision!r} but the URL asks for {actual['revision']!r}",
                "files", index, "source", "revision")


def _suffix_issues(path: Any, url: str, add: Any, index: int) -> None:
    if not isinstance(path, str):
        return
    url_suffix = PurePosixPath(url.split("?", 1)[0]).suffix.lower()
    path_suffix = PurePosixPath(path).suffix.lower()
    if url_suffix in _MODEL_SUFFIXES and path_suffix != url_suffix:
        add(f"the URL serves a {url_suffix} file but the path ends in {path_suffix or 'nothing'}: "
            f"ComfyUI picks the loader by extension", "files", index, "path", severity="warning")


def _shared_path_issues(prior: _FileSeen, url: str, size: tuple[int, bool] | None,
                        sha: str | None, path: str, add: Any, index: int) -> None:
    if prior.file and prior.line:
        where = f"{prior.preset} ({prior.file}:{prior.line})"
    else:
        where = f"{prior.preset} (line {prior.line})" if prior.line else prior.preset
    if url != prior.url:
        add(f"{path!r} is also in {where} with another URL: a shared path must be one file",
            "files", index, "url")
        return
    if sha and prior.sha256 and sha != prior.sha256:
        add(f"{path!r} is also in {where} with another sha256", "files", index, "sha256")
    if size and prior.size and size[0] != prior.size[0]:
        exact = size[1] and prior.size[1]
        add(f"{path!r} is also in {where} with another size", "files", index, "size",
            severity="error" if exact else "warning")


# ---- entry points ------------------------------------------------------------------------


def validate_document(root: Any, *, filename: str | None = None) -> tuple[Any, list[Issue]]:
    """Validate a whole catalog document; returns ``(plain_data, issues)`` sorted by position."""
    if root is None:
        return None, [Issue("the file is empty: expected a mapping with a 'presets' key", file=filename,
                            line=1, column=1)]
    plain, key_problems = to_plain(root)
    issues = [_key_issue(problem, path, where, root, filename) for path, problem, where in key_problems]
    if not isinstance(plain, Mapping):
        line, col = position(root, [])
        issues.append(Issue(f"expected a mapping with a 'presets' key, found {type(plain).__name__}",
                            file=filename, line=line or 1, column=col or 1))
        return plain, issues
    schema_issues = _schema_issues(plain, root, prefix=(), preset_only=False, filename=filename)
    issues += schema_issues
    bad = {i.preset for i in schema_issues if i.preset is not None}
    if not any(i.preset is None for i in schema_issues):
        issues += semantic_issues(plain, root, filename=filename, skip=bad)
    issues.sort(key=lambda i: (i.line or 0, i.column or 0))
    return plain, issues


def validate_preset_document(root: Any, preset_id: str, *, filename: str | None = None,
                             folders: Iterable[str] = MODEL_FOLDERS,
                             seen: dict[str, _FileSeen] | None = None,
                             ids: Iterable[str] = ()) -> tuple[Any, list[Issue]]:
    """Validate one preset stored as its own file (the per-preset layout)."""
    if root is None:
        return None, [Issue("the file is empty", preset_id, file=filename, line=1, column=1)]
    plain, key_problems = to_plain(root)
    base = ("preset", preset_id)
    issues = [_key_issue(problem, [*base, *path], where, root, filename) for path, problem, where in key_problems]
    schema_issues = _schema_issues(plain, root, prefix=base, preset_only=True, filename=filename)
    issues += schema_issues
    if not schema_issues and isinstance(plain, Mapping):
        issues += preset_issues(plain, root, base, folders=folders, filename=filename,
                                categories=None, ids=set(ids) | {preset_id},
                                seen=seen if seen is not None else {})
    return plain, issues


def raise_for(issues: Sequence[Issue]) -> None:
    """Raise :class:`CatalogValidationError` when ``issues`` holds an error."""
    if any(i.is_error for i in issues):
        raise CatalogValidationError(issues)
