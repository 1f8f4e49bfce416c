"""Home: the page, latest outputs (the gallery's scan and thumbnails), and /api/dashboard."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def outputs(settings):
    folder = settings.output_dir
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["a.png", "b.mp4", "sub/c.webp", "notes.txt"]):
        path = folder / name
        path.write_bytes(b"data" * (i + 1))
        os.utime(path, (1000 + i, 1000 + i))
    return folder


def test_home_page(admin_client):
    html = admin_client.get("/").get_data(as_text=True)
    for element in ('id="services-table"', 'id="system-cards"', 'id="jobs"', 'id="outputs"'):
        assert element in html


def test_latest_outputs_newest_first(admin_client, admin_app, outputs):
    html = admin_client.get("/_outputs").get_data(as_text=True)
    assert html.index("sub/c.webp") < html.index("b.mp4") < html.index("a.png")
    assert "notes.txt" not in html
    if "gallery.thumb" in admin_app.view_functions:
        assert 'src="/gallery/thumb/sub/c.webp"' in html


def test_no_outputs(admin_client):
    assert "Nothing yet" in admin_client.get("/_outputs").get_data(as_text=True)


def test_dashboard_api(admin_app, api_headers, outputs):
    data = admin_app.test_client().get("/api/dashboard", headers=api_headers).get_json()
    assert data["services"] == [] and "not reachable" in data["services_error"]
    assert [o["path"] for o in data["outputs"]] == ["sub/c.webp", "b.mp4", "a.png"]
    assert "system" in data and isinstance(data["downloads"], list)
