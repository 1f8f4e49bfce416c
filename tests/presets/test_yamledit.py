"""presets.yamledit: text-splicing edits keep every byte outside the edited entry."""

from __future__ import annotations

import pytest

from presets import yamledit

DOC = """\
# head
top:
  a: 1      # one
  b:
    - x
    - y     # why
  # about c
  c: {k: v}
    # deeper comment after c

other: 2   # tail
"""


def test_entry_span_and_extent() -> None:
    root = yamledit.parse(DOC)
    lines = DOC.splitlines(keepends=True)
    assert yamledit.entry_span(root, lines, ("top",), "a") == (2, 3)
    assert yamledit.entry_span(root, lines, ("top",), "b") == (3, 6)  # "# about c" goes with c
    assert yamledit.entry_span(root, lines, ("top",), "c") == (7, 8)
    assert yamledit.entry_extent(root, lines, ("top",), "c") == 9
    with pytest.raises(yamledit.EditError):
        yamledit.entry_span(root, lines, ("top",), "zzz")
    with pytest.raises(yamledit.EditError, match="flow style"):
        yamledit.entry_span(root, lines, ("top", "c"), "k")


def test_set_entries_changes_only_those_lines() -> None:
    out = yamledit.set_entries(DOC, ("top",), {"a": 5, "b": ["x", "y", "z"], "d": {"new": True}})
    assert out.startswith("# head\ntop:\n  a: 5      # one\n")
    assert "  # about c\n  c: {k: v}\n    # deeper comment after c\n  d:\n    new: true\n\nother: 2   # tail\n" in out
    assert "    - z\n" in out
    assert yamledit.parse_plain(out)["top"] == {"a": 5, "b": ["x", "y", "z"], "c": {"k": "v"}, "d": {"new": True}}
    assert yamledit.set_entries(DOC, ("top",), {}) == DOC


def test_unchanged_values_keep_their_quotes() -> None:
    text = "m:\n  k:\n    s: 'quoted'\n    n: 1\n"
    out = yamledit.set_entry(text, ("m",), "k", {"s": "quoted", "n": 2})
    assert out == "m:\n  k:\n    s: 'quoted'\n    n: 2\n"


def test_flow_and_empty_mappings_fall_back_to_a_full_dump() -> None:
    out = yamledit.set_entry("m: {a: 1}  # c\n", ("m",), "b", 2)
    assert yamledit.parse_plain(out) == {"m": {"a": 1, "b": 2}}
    out = yamledit.set_entry("m: {}\n", ("m",), "a", {"x": 1})
    assert yamledit.parse_plain(out) == {"m": {"a": {"x": 1}}}
    with pytest.raises(yamledit.EditError):
        yamledit.set_entry("m: 3\n", ("m",), "a", 1)


def test_delete_entry_takes_its_comment_lines() -> None:
    out = yamledit.delete_entry(DOC, ("top",), "c")
    assert "about c" not in out and "deeper comment" not in out and "k: v" not in out
    assert out.startswith(DOC[: DOC.index("  # about c")])
    assert out.endswith("\nother: 2   # tail\n")
    single = yamledit.delete_entry("m:\n  only: 1\nz: 2\n", ("m",), "only")
    assert yamledit.parse_plain(single) == {"m": {}, "z": 2}
    with pytest.raises(yamledit.EditError):
        yamledit.delete_entry(DOC, ("top",), "nope")


def test_text_without_final_newline() -> None:
    out = yamledit.set_entry("m:\n  a: 1", ("m",), "b", 2)
    assert out == "m:\n  a: 1\n  b: 2\n"
