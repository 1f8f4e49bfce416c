"""Shared helpers of the reliability suite (issue 11).

``record_figures(concern, **numbers)`` merges the figures a test measured into
``artifacts/reliability.json`` (docs/reliability.md quotes them) and prints them.
"""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "artifacts" / "reliability.json"


def record_figures(concern: str, **numbers: object) -> dict[str, object]:
    """Merge ``numbers`` under ``concern`` in artifacts/reliability.json; return the entry."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    entry = {**numbers, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with open(FIGURES.with_suffix(".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(FIGURES.read_text()) if FIGURES.is_file() else {}
        except ValueError:
            data = {}
        data[concern] = entry
        tmp = FIGURES.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(FIGURES)
    print(f"\n[reliability] {concern}: {json.dumps(numbers, sort_keys=True)}")
    return entry


@pytest.fixture
def figures():
    """``figures("chaos", kills=12, failures=0)``: record what this test measured."""
    return record_figures
