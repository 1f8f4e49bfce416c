"""Comment-keeping edits of a YAML document's mappings, as text in, text out.

ruamel.yaml's round-trip dump keeps most comments but re-wraps long lines and may move
comments next to the node it changed. So an edit here is made on ruamel's data, the whole
document is dumped, and only the lines of the edited entry are taken from that dump and
spliced into the original text. Every other byte of the original stays as it was.
No file I/O: callers (presets.catalog) read, validate and write.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml import main as ruamel_main
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from services.errors import CatalogError


class EditError(CatalogError):
    """An edit cannot be made (missing key, flow-style mapping, unreadable document)."""


def new_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.allow_duplicate_keys = False
    return yaml


def parse(text: str) -> Any:
    """Round-trip parse; ruamel's warnings are not errors of ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return new_yaml().load(text)


def fast_available() -> bool:
    """True when ruamel's C parser (ruamel.yaml.clib) is installed."""
    return ruamel_main.CParser is not None


def parse_plain(text: str) -> Any:
    """Plain data (no comments, no positions), with the C parser when it is installed:
    about seven times faster than :func:`parse`, same YAML 1.2 rules."""
    yaml = YAML(typ="safe", pure=not fast_available())
    yaml.allow_duplicate_keys = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return yaml.load(text)


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _is_filler(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#") or stripped in ("---", "...")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _get(root: Any, path: Sequence[Any]) -> Any:
    node = root
    for step in path:
        node = node[step]
    return node


def _mapping_end(root: Any, path: Sequence[Any], total: int) -> int:
    """First line (0-based) after the block-style mapping at ``path``."""
    for depth in range(len(path), 0, -1):
        parent = _get(root, path[: depth - 1])
        key = path[depth - 1]
        if not isinstance(parent, CommentedMap):
            continue
        keys = list(parent.keys())
        index = keys.index(key)
        if index + 1 < len(keys):
            return parent.lc.key(keys[index + 1])[0]
    return total


def entry_span(root: Any, lines: list[str], path: Sequence[Any], key: Any) -> tuple[int, int]:
    """Lines ``[start, end)`` of ``key`` in the block mapping at ``path``: its key line to its last
    content line (trailing blank and comment lines belong to what follows)."""
    mapping = _get(root, path)
    if not isinstance(mapping, CommentedMap) or key not in mapping:
        raise EditError(f"{'.'.join(map(str, [*path, key]))} is not in the document")
    if mapping.fa.flow_style():
        raise EditError(f"{'.'.join(map(str, path)) or 'the document'} is written in flow style")
    keys = list(mapping.keys())
    index = keys.index(key)
    start = mapping.lc.key(key)[0]
    if index + 1 < len(keys):
        end = mapping.lc.key(keys[index + 1])[0]
    else:
        end = _mapping_end(root, path, len(lines))
    while end > start + 1 and _is_filler(lines[end - 1]):
        end -= 1
    return start, end


def entry_extent(root: Any, lines: list[str], path: Sequence[Any], key: Any) -> int:
    """End of ``key``'s entry including the comment lines right after it that are indented
    deeper than its key (they are about the entry): where a following entry may be inserted."""
    start, end = entry_span(root, lines, path, key)
    key_indent = _indent_of(lines[start])
    while end < len(lines):
        line = lines[end]
        if line.strip().startswith("#") and _indent_of(line) > key_indent:
            end += 1
        else:
            break
    return end


def _detect_indent(root: Any, lines: list[str]) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation as ruamel's ``YAML.indent`` takes it."""
    mapping_indent, sequence, offset = 2, 2, 0
    found_map = found_seq = False
    stack: list[Any] = [root]
    while stack and not (found_map and found_seq):
        node = stack.pop()
        if isinstance(node, CommentedMap) and not node.fa.flow_style():
            for key, value in node.items():
                key_col = node.lc.key(key)[1]
                if isinstance(value, CommentedMap) and value and not value.fa.flow_style() and not found_map:
                    first = next(iter(value))
                    child_line, child_col = value.lc.key(first)
                    if child_line > node.lc.key(key)[0]:
                        mapping_indent = max(1, child_col - key_col)
                        found_map = True
                if isinstance(value, CommentedSeq) and value and not value.fa.flow_style() and not found_seq:
                    item_line, item_col = value.lc.item(0)
                    text = lines[item_line] if item_line < len(lines) else ""
                    dash = text.find("-")
                    if 0 <= dash < item_col and item_line > node.lc.key(key)[0]:
                        offset = max(0, dash - key_col)
                        sequence = max(offset + 2, item_col - key_col)
                        found_seq = True
                if isinstance(value, CommentedMap | CommentedSeq):
                    stack.append(value)
        elif isinstance(node, CommentedSeq):
            stack.extend(v for v in node if isinstance(v, CommentedMap | CommentedSeq))
    return mapping_indent, sequence, offset


def _dump(root: Any, indent: tuple[int, int, int]) -> str:
    yaml = new_yaml()
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    stream = io.StringIO()
    yaml.dump(root, stream)
    return stream.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _assign(target: CommentedMap, key: Any, value: Any) -> None:
    """Set ``target[key] = value`` reusing existing nodes, so their comments survive."""
    old = target.get(key)
    if isinstance(old, CommentedMap) and isinstance(value, Mapping):
        for stale in [k for k in old if k not in value]:
            del old[stale]
        for sub_key, sub_value in value.items():
            _assign(old, sub_key, sub_value)
        return
    if isinstance(old, CommentedSeq) and isinstance(value, list | tuple) and len(old) == len(value):
        for index, item in enumerate(value):
            current = old[index]
            if isinstance(current, CommentedMap) and isinstance(item, Mapping):
                for stale in [k for k in current if k not in item]:
                    del current[stale]
                for sub_key, sub_value in item.items():
                    _assign(current, sub_key, sub_value)
            elif _plain(current) != _plain(item):
                old[index] = _to_node(item)
        return
    if key in target and _plain(old) == _plain(value) and isinstance(old, bool) == isinstance(value, bool):
        return  # unchanged: keep the node, its quoting and its comments
    target[key] = _to_node(value)


def _to_node(value: Any) -> Any:
    if isinstance(value, CommentedMap | CommentedSeq):
        return value
    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _to_node(item)
        return node
    if isinstance(value, list | tuple):
        return CommentedSeq(_to_node(v) for v in value)
    return value


def _block(lines: list[str], root: Any, path: Sequence[Any], key: Any, newline: str) -> list[str]:
    start, end = entry_span(root, lines, path, key)
    return [line.rstrip("\r\n") + newline for line in lines[start:end]]


def _check(result: str, edits: Sequence[tuple[tuple[Any, ...], Mapping[Any, Any]]]) -> bool:
    """Whether ``result`` holds every edited value (a guard on the splice)."""
    try:
        root = parse_plain(result) if fast_available() else parse(result)
        for path, values in edits:
            mapping = _get(root, path)
            if not all(_plain(mapping[k]) == _plain(v) for k, v in values.items()):
                return False
        return True
    except (YAMLError, KeyError, TypeError, IndexError, ValueError):
        return False


def _full_dump(root: Any, text: str, indent: tuple[int, int, int] | None = None) -> str:
    if indent is None:
        indent = _detect_indent(parse(text), text.splitlines(keepends=True))
    return _dump(root, indent)


def set_entries(text: str, path: Sequence[Any], values: Mapping[Any, Any]) -> str:
    """Set several keys of the block mapping at ``path`` in one pass.

    Existing keys are changed in place (their lines replaced); new keys are appended after
    the mapping's last entry, in the order given. Everything else keeps its bytes.
    """
    return apply_edits(text, [(tuple(path), values)])


def apply_edits(text: str, edits: Sequence[tuple[tuple[Any, ...], Mapping[Any, Any]]]) -> str:
    """:func:`set_entries` for several mappings at once (one parse of the whole document)."""
    edits = [(tuple(path), values) for path, values in edits if values]
    if not edits:
        return text
    root = parse(text)
    lines = text.splitlines(keepends=True)
    newline = _newline(text)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline
    indent = _detect_indent(root, lines)
    mappings = []
    for path, _ in edits:
        mapping = _get(root, path) if root is not None else None
        if not isinstance(mapping, CommentedMap):
            raise EditError(f"{'.'.join(map(str, path)) or 'the document'} is not a mapping")
        mappings.append(mapping)
    if any(not m or m.fa.flow_style() for m in mappings):
        return _dump_with(text, edits, indent)
    operations: list[tuple[int, int, int, list[str]]] = []  # (position, order, end, lines)
    plans = []
    for (path, values), mapping in zip(edits, mappings, strict=True):
        spans = {key: entry_span(root, lines, path, key) for key in values if key in mapping}
        insert_at = entry_extent(root, lines, path, list(mapping.keys())[-1])
        plans.append((path, values, mapping, spans, insert_at))
    # Dump only the edited entries, nested as deep as the original: same indentation, a
    # small text to parse again.
    mini = CommentedMap()
    for path, values, mapping, _, _ in plans:
        for key, value in values.items():
            _assign(mapping, key, value)
        holder = mini
        for step in path:
            if step not in holder:
                holder[step] = CommentedMap()
            holder = holder[step]
        for key in values:
            holder[key] = mapping[key]
            if key in mapping.ca.items:
                holder.ca.items[key] = mapping.ca.items[key]
    dumped = _dump(mini, indent)
    dumped_root = parse(dumped)
    dumped_lines = dumped.splitlines(keepends=True)
    for path, values, _, spans, insert_at in plans:
        blocks = {key: _block(dumped_lines, dumped_root, path, key, newline) for key in values}
        added = [line for key in values if key not in spans for line in blocks[key]]
        if added:
            operations.append((insert_at, 1, insert_at, added))
        for key, (start, end) in spans.items():
            operations.append((start, 0, end, blocks[key]))
    out = list(lines)
    for start, _, end, block in sorted(operations, key=lambda op: (op[0], op[1]), reverse=True):
        out[start:end] = block
    result = "".join(out)
    if not _check(result, edits):
        # A layout the splice cannot follow: fall back to ruamel's own round-trip dump.
        result = _dump_with(text, edits, indent)
    return result


def _dump_with(text: str, edits: Sequence[tuple[tuple[Any, ...], Mapping[Any, Any]]],
               indent: tuple[int, int, int]) -> str:
    root = parse(text)
    for path, values in edits:
        target = _get(root, path)
        for key, value in values.items():
            _assign(target, key, value)
    return _full_dump(root, text, indent)


def set_entry(text: str, path: Sequence[Any], key: Any, value: Any) -> str:
    """Set ``key`` to ``value`` in the block mapping at ``path`` (appended when new)."""
    return set_entries(text, path, {key: value})


def delete_entry(text: str, path: Sequence[Any], key: Any) -> str:
    """Remove ``key`` from the block mapping at ``path``, with the comment lines right above it."""
    root = parse(text)
    lines = text.splitlines(keepends=True)
    mapping = _get(root, path) if root is not None else None
    if not isinstance(mapping, CommentedMap) or key not in mapping:
        raise EditError(f"{'.'.join(map(str, [*path, key]))} is not in the document")
    if len(mapping) == 1 or mapping.fa.flow_style():
        del mapping[key]
        return _full_dump(root, text)
    start, _ = entry_span(root, lines, path, key)
    end = entry_extent(root, lines, path, key)
    key_indent = _indent_of(lines[start])
    while start > 0:
        above = lines[start - 1]
        if above.strip().startswith("#") and _indent_of(above) == key_indent:
            start -= 1
        else:
            break
    del lines[start:end]
    result = "".join(lines)
    check = parse(result)
    if key in _get(check, path):
        raise EditError(f"could not remove {key}")  # pragma: no cover
    return result
