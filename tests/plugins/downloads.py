"""Download fixtures: ``range_server`` (see tests/support/range_server.py for the fault modes)
and ``write_catalog`` (a presets.yaml whose files live on the range server).

    url = range_server.add("/name.safetensors", data, throttle=1 << 20, errors=[500, 429])
    range_server.bytes_served("/name.safetensors")
    range_server.requests("/name.safetensors", method="GET")
    range_server.url("/name.safetensors", host="localhost")   # same server, another host name
    write_catalog(settings.presets_file, {"TEST": [("loras/a.safetensors", url, data), ...]})
    put(settings.models_dir, "loras/a.safetensors", 1000)   # a sparse file of that size (import it)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.range_server import RangeServer


@pytest.fixture
def range_server() -> Iterator[RangeServer]:
    server = RangeServer().start()
    try:
        yield server
    finally:
        server.stop()


def catalog_text(presets: dict[str, list[tuple[str, str, bytes | None]]], kind: str = "image") -> str:
    """A minimal valid catalog: preset id -> [(models-relative path, url, data or None)].

    With data, the exact size and sha256 are recorded; without, neither is.
    """
    lines = ["metadata:", "  version: 1.0.0", "presets:"]
    for preset_id, items in presets.items():
        lines += [f"  {preset_id}:", f"    name: {preset_id.title()}", f"    type: {kind}",
                  "    description: a test preset", "    files:"]
        for path, url, data in items:
            lines += [f"      - path: {path}", f"        url: {url}"]
            if data is not None:
                lines += [f"        size: {len(data)}", f"        sha256: {hashlib.sha256(data).hexdigest()}"]
    return "\n".join(lines) + "\n"


def write_test_catalog(path: Path, presets: dict[str, list[tuple[str, str, bytes | None]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(catalog_text(presets))
    return path


@pytest.fixture
def write_catalog():
    return write_test_catalog


def put(models: Path, rel: str, size: int) -> Path:
    """A sparse file of ``size`` bytes at ``models/rel`` (an installed model file, as far as sizes go)."""
    path = models / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def fast_options(**changes):
    """DownloadOptions for tests: small pieces and timeouts, no free-space margin."""
    from presets.download import DownloadOptions

    values = dict(
        connections=4, piece_size=256 * 1024, min_split=1 << 20, steal_min=64 * 1024, chunk=64 * 1024,
        checkpoint_bytes=64 * 1024, checkpoint_seconds=0.05, connect_timeout=2.0, stall_timeout=1.0,
        max_tries=4, backoff_base=0.01, backoff_max=0.05, retry_after_max=3.0, free_margin=0,
    )
    values.update(changes)
    return DownloadOptions(**values)


@pytest.fixture
def download_options():
    """``download_options(**changes)`` -> fast DownloadOptions for tests."""
    return fast_options
