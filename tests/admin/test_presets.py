"""Presets: filters, installed state, VRAM fit, install/remove through the queue, job control."""

from __future__ import annotations

import pytest

import admin.presets as presets_area


@pytest.fixture
def catalog(small_catalog, settings, monkeypatch):
    monkeypatch.setattr(presets_area, "largest_vram_gb", lambda: 24.0)
    root = settings.models_dir
    for rel, size in {"loras/a.safetensors": 1000, "vae/shared.safetensors": 300}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)
    return small_catalog


def _get(client, headers, query=""):
    return client.get(f"/api/presets{query}", headers=headers).get_json()


def test_list_with_state_size_and_fit(admin_app, api_headers, catalog):
    data = _get(admin_app.test_client(), api_headers)
    rows = {p["id"]: p for p in data["presets"]}
    assert list(rows) == ["IMG_A", "VID_B", "AUD_C"] and data["total"] == 3
    assert rows["IMG_A"]["state"] == "installed" and rows["IMG_A"]["fits"] == "yes"
    assert rows["VID_B"]["state"] == "partial" and rows["VID_B"]["fits"] == "no"
    assert rows["VID_B"]["size"] == 2300 and rows["VID_B"]["size_exact"] is True
    assert rows["VID_B"]["bytes_missing"] == 2000
    assert rows["AUD_C"]["state"] == "installed" and rows["AUD_C"]["fits"] == "unknown"
    assert data["counts"] == {"installed": 2, "partial": 1, "missing": 0, "damaged": 0}
    assert data["vram_gb"] == 24.0 and "music" in data["tags"]


@pytest.mark.parametrize(
    "query, ids",
    [("?type=video", ["VID_B"]), ("?tag=fast", ["IMG_A"]), ("?q=music", ["AUD_C"]),
     ("?state=installed", ["IMG_A", "AUD_C"]), ("?state=not-installed", ["VID_B"]),
     ("?type=image&tag=wan", []), ("?type=bogus", ["IMG_A", "VID_B", "AUD_C"])],
)
def test_filters(admin_app, api_headers, catalog, query, ids):
    assert sorted(p["id"] for p in _get(admin_app.test_client(), api_headers, query)["presets"]) == sorted(ids)


def test_page_and_list_fragment(admin_client, catalog):
    html = admin_client.get("/presets").get_data(as_text=True)
    assert 'id="preset-IMG_A"' in html and "too big for this GPU" in html and "GPU 24 GB VRAM" in html
    response = admin_client.get("/presets/_list?type=audio&q=")
    fragment = response.get_data(as_text=True)
    assert 'id="preset-AUD_C"' in fragment and 'id="preset-IMG_A"' not in fragment
    assert response.headers["HX-Replace-Url"] == "/presets?type=audio"


def test_one_preset(admin_app, api_headers, catalog):
    data = admin_app.test_client().get("/api/presets/vid_b", headers=api_headers).get_json()
    assert data["preset"]["id"] == "VID_B" and data["status"]["state"] == "partial" and data["fits"] == "no"
    missing = admin_app.test_client().get("/api/presets/VID_C", headers=api_headers)
    assert missing.status_code == 422 and "VID_B" in missing.get_json()["error"]


def test_install_from_page_queues_and_shows_progress(admin_client, catalog):
    response = admin_client.post("/presets/VID_B/install", headers=admin_client.csrf_headers)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "queued (job" in html
    assert response.headers["HX-Trigger"] == "jobs-changed"
    assert 'data-state="queued"' in html and "Install" not in html.split('class="foot"')[1]
    jobs = admin_client.get("/presets/_jobs").get_data(as_text=True)
    assert "Video B" in jobs and 'id="progress-VID_B" hx-swap-oob="true"' in jobs
    compact = admin_client.get("/presets/_jobs?compact=1").get_data(as_text=True)
    assert "hx-swap-oob" not in compact


def test_install_api_reuses_the_unfinished_job(admin_app, api_headers, catalog):
    client = admin_app.test_client()
    first = client.post("/api/presets/VID_B/install", headers=api_headers)
    assert first.status_code == 202
    again = client.post("/api/presets/install", json={"ids": ["vid_b"]}, headers=api_headers).get_json()
    assert again["jobs"] == first.get_json()["jobs"]
    listed = client.get("/api/presets/jobs", headers=api_headers).get_json()
    assert [j["preset_id"] for j in listed["active"]] == ["VID_B"]
    row = {p["id"]: p for p in _get(client, api_headers)["presets"]}["VID_B"]
    assert row["job"]["state"] == "queued"


def test_install_errors_shown_on_the_card(admin_client, admin_app, api_headers, catalog):
    html = admin_client.post("/presets/NOPE/install", headers=admin_client.csrf_headers).get_data(as_text=True)
    assert "unknown preset" in html
    bad = admin_app.test_client().post("/api/presets/install", json={"ids": "IMG_A"}, headers=api_headers)
    assert bad.status_code == 400


def test_job_control(admin_app, api_headers, catalog):
    client = admin_app.test_client()
    job_id = client.post("/api/presets/VID_B/install", headers=api_headers).get_json()["jobs"][0]
    assert client.post(f"/api/presets/jobs/{job_id}/pause", headers=api_headers).get_json()["state"] == "paused"
    assert client.post(f"/api/presets/jobs/{job_id}/pause", headers=api_headers).status_code == 409
    assert client.post(f"/api/presets/jobs/{job_id}/resume", headers=api_headers).get_json()["state"] == "queued"
    assert client.post(f"/api/presets/jobs/{job_id}/cancel", headers=api_headers).get_json()["state"] == "cancelled"
    assert client.post(f"/api/presets/jobs/{job_id}/retry", headers=api_headers).get_json()["state"] == "queued"
    assert client.post(f"/api/presets/jobs/{job_id}/explode", headers=api_headers).status_code == 404
    assert client.post("/api/presets/jobs/999/cancel", headers=api_headers).status_code == 404
    assert client.get("/api/presets/jobs/999", headers=api_headers).status_code == 404


def test_job_control_from_page(admin_client, catalog):
    admin_client.post("/presets/VID_B/install", headers=admin_client.csrf_headers)
    html = admin_client.post("/presets/jobs/1/pause", headers=admin_client.csrf_headers).get_data(as_text=True)
    assert 'data-state="paused"' in html and "Resume" in html
    html = admin_client.post("/presets/jobs/1/pause", headers=admin_client.csrf_headers).get_data(as_text=True)
    assert "alert error" in html and "cannot pause" in html


def test_remove_keeps_files_other_installed_presets_need(admin_app, api_headers, catalog, settings):
    client = admin_app.test_client()
    assert client.post("/api/presets/VID_B/remove", headers=api_headers).get_json() == {"removed": []}
    assert (settings.models_dir / "vae/shared.safetensors").exists()  # AUD_C is installed and needs it
    assert client.post("/api/presets/IMG_A/remove", headers=api_headers).get_json() == {
        "removed": ["loras/a.safetensors"]}
    assert not (settings.models_dir / "loras/a.safetensors").exists()


def test_remove_from_page(admin_client, catalog):
    html = admin_client.post("/presets/IMG_A/remove", headers=admin_client.csrf_headers).get_data(as_text=True)
    assert "removed 1 file" in html and 'data-role="state">missing' in html


def test_just_finished_job_refreshes_the_list(admin_client, admin_app, catalog):
    from admin.context import job_queue

    admin_client.post("/presets/IMG_A/install", headers=admin_client.csrf_headers)
    with admin_app.app_context():
        queue = job_queue()
        job = queue.active()[0]
        queue.cancel(job.id)  # as the worker would, in another process
        presets_area.changed()  # (what JOBS_SECONDS of waiting would do)
    assert admin_client.get("/presets/_jobs").headers.get("HX-Trigger") == "presets-changed"


@pytest.mark.parametrize("needed, have, verdict", [(8, 24, "yes"), (24, 24, "yes"), (48, 24, "no"),
                                                   (None, 24, "unknown"), (8, None, "unknown")])
def test_fits(needed, have, verdict):
    assert presets_area.fits(needed, have) == verdict
