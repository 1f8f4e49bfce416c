"""Jinja filters for sizes, durations and ages."""

from __future__ import annotations

import time

import pytest

from admin.filters import ago, duration, filesize, percent


@pytest.mark.parametrize(
    "value, text",
    [(None, "?"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
     (int(4.8 * 1024**3), "4.8 GiB"), (2 * 1024**4, "2.0 TiB")],
)
def test_filesize(value, text):
    assert filesize(value) == text


@pytest.mark.parametrize(
    "value, text",
    [(None, "–"), (0, "0s"), (59, "59s"), (61, "1m 01s"), (3725, "1h 02m"), (3 * 86400 + 7200, "3d 2h")],
)
def test_duration(value, text):
    assert duration(value) == text


def test_ago_and_percent():
    assert ago(None) == "–"
    assert ago(time.time() - 5).endswith(" ago")
    assert percent(50, 200) == 25.0
    assert percent(5, 0) == 0.0 and percent(None, 10) == 0.0
    assert percent(300, 200) == 100.0
