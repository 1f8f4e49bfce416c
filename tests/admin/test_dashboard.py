"""Home: the page, latest outputs, serving an output file, and /api/dashboard."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def outputs(settings):
    folder = settings.output_dir
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["a.png", "b.txt", "sub/c.webp"]):
        path = folder / name
        path.write_bytes(b"data" * (i + 1))
        os.utime(path, (1000 + i, 1000 + i))
    return folder


def test_home_page(admin_client):
    html = admin_client.get("/").get_data(as_text=True)
    for element in ('id="services-table"', 'id="system-cards"', 'id="jobs"', 'id="outputs"'):
        assert element in html


def test_latest_outputs_newest_first(admin_client, outputs):
    html = admin_client.get("/_outputs").get_data(as_text=True)
    assert html.index("sub/c.webp") < html.index("b.txt") < html.index("a.png")
    assert '<img src="/output/sub/c.webp"' in html


def test_output_file(admin_client, outputs):
    with admin_client.get("/output/sub/c.webp") as response:
        assert response.status_code == 200 and response.data == b"data" * 3


@pytest.mark.parametrize("rel", ["../config/state/api_token", "%2e%2e/config/state/api_token", "sub", "nope.png"])
def test_output_file_refuses_escape_and_missing(admin_client, outputs, rel):
    assert admin_client.get(f"/output/{rel}").status_code == 404


def test_dashboard_api(admin_app, api_headers, outputs):
    data = admin_app.test_client().get("/api/dashboard", headers=api_headers).get_json()
    assert data["services"] == [] and "not reachable" in data["services_error"]
    assert [o["path"] for o in data["outputs"]] == ["sub/c.webp", "b.txt", "a.png"]
    assert "system" in data and isinstance(data["downloads"], list)
