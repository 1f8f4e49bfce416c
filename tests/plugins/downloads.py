"""Download fixtures: ``range_server`` (see tests/support/range_server.py for the fault modes).

    url = range_server.add("/name.safetensors", data, throttle=1 << 20, errors=[500, 429])
    range_server.bytes_served("/name.safetensors")
    range_server.requests("/name.safetensors", method="GET")
    range_server.url("/name.safetensors", host="localhost")   # same server, another host name
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.range_server import RangeServer


@pytest.fixture
def range_server() -> Iterator[RangeServer]:
    server = RangeServer().start()
    try:
        yield server
    finally:
        server.stop()
