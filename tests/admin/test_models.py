"""Models: files by folder with owners and unknown files, delete (inside models/ only), add by URL."""

from __future__ import annotations

import pytest


@pytest.fixture
def models(settings, small_catalog):
    root = settings.models_dir
    for rel, size in {"loras/a.safetensors": 1000, "vae/shared.safetensors": 300, "loras/mine.safetensors": 7,
                      "checkpoints/b.safetensors.part": 50, "checkpoints/b.safetensors.lock": 0,
                      "loras/sub/deep.safetensors": 3}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    return root


def _files(data):
    return {f["path"]: f for folder in data["folders"] for f in folder["files"]}


def test_inventory(admin_app, api_headers, models):
    data = admin_app.test_client().get("/api/models", headers=api_headers).get_json()
    files = _files(data)
    assert set(files) == {"loras/a.safetensors", "vae/shared.safetensors", "loras/mine.safetensors",
                          "checkpoints/b.safetensors.part", "loras/sub/deep.safetensors"}
    assert files["loras/a.safetensors"]["presets"] == ["IMG_A"] and files["loras/a.safetensors"]["size"] == 1000
    assert files["vae/shared.safetensors"]["presets"] == ["VID_B", "AUD_C"]
    assert files["loras/mine.safetensors"]["unknown"] is True
    assert files["checkpoints/b.safetensors.part"]["partial"] is True
    assert files["checkpoints/b.safetensors.part"]["presets"] == ["VID_B"]
    assert data["unknown"] == 2 and data["total_size"] == 1000 + 300 + 7 + 50 + 3
    assert [f["name"] for f in data["folders"]] == ["checkpoints", "loras", "vae"]


def test_page(admin_client, models):
    html = admin_client.get("/models").get_data(as_text=True)
    assert "mine.safetensors" in html and "unknown" in html and "IMG_A" in html and "downloading" in html


def test_delete_from_page(admin_client, models):
    response = admin_client.post("/models/delete", data={"path": "loras/mine.safetensors"},
                                 headers=admin_client.csrf_headers)
    assert "Deleted loras/mine.safetensors" in response.get_data(as_text=True)
    assert not (models / "loras" / "mine.safetensors").exists()


def test_delete_api(admin_app, api_headers, models):
    client = admin_app.test_client()
    assert client.delete("/api/models/files/loras/sub/deep.safetensors", headers=api_headers).get_json() == {
        "deleted": "loras/sub/deep.safetensors"}
    assert not (models / "loras/sub/deep.safetensors").exists()
    assert client.delete("/api/models/files/loras/sub/deep.safetensors", headers=api_headers).status_code == 404


@pytest.mark.parametrize("rel", ["../config/state/api_token", "loras/../../config/state/api_token", "loras",
                                 "/etc/passwd", "loras\\mine.safetensors"])
def test_delete_refuses_outside_or_folders(admin_client, models, settings, rel):
    response = admin_client.post("/models/delete", data={"path": rel}, headers=admin_client.csrf_headers)
    assert "alert error" in response.get_data(as_text=True) or response.status_code == 404
    assert (settings.state_dir / "api_token").exists()
    assert (models / "loras").is_dir() and (models / "loras" / "mine.safetensors").exists()


def test_delete_refuses_symlink_escape(admin_app, api_headers, models, settings):
    (models / "loras" / "link.safetensors").symlink_to(settings.state_dir / "api_token")
    response = admin_app.test_client().delete("/api/models/files/loras/link.safetensors", headers=api_headers)
    assert response.status_code == 400
    assert (settings.state_dir / "api_token").exists()


def test_delete_part_of_running_download_refused(admin_app, api_headers, models):
    import fcntl

    with open(models / "checkpoints" / "b.safetensors.lock", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        response = admin_app.test_client().delete("/api/models/files/checkpoints/b.safetensors.part",
                                                  headers=api_headers)
        assert response.status_code == 409
    assert admin_app.test_client().delete("/api/models/files/checkpoints/b.safetensors.part",
                                          headers=api_headers).status_code == 200


def test_add_by_url_queues_a_job(admin_app, api_headers, models, settings):
    client = admin_app.test_client()
    response = client.post("/api/models/add", json={"url": "https://huggingface.co/o/r/blob/main/x.safetensors",
                                                    "folder": "loras"}, headers=api_headers)
    assert response.status_code == 202
    job = client.get(f"/api/presets/jobs/{response.get_json()['job']}", headers=api_headers).get_json()
    assert job["kind"] == "file" and job["files"][0]["path"] == "loras/x.safetensors"
    assert job["files"][0]["url"] == "https://huggingface.co/o/r/resolve/main/x.safetensors"


@pytest.mark.parametrize("body", [{"url": "ftp://x/y", "folder": "loras"},
                                  {"url": "https://example.com/x.safetensors", "folder": "../../etc"},
                                  {"url": "https://example.com/x.safetensors", "folder": "loras", "filename": "../x"}])
def test_add_by_url_refuses_bad_input(admin_app, api_headers, models, body):
    response = admin_app.test_client().post("/api/models/add", json=body, headers=api_headers)
    assert response.status_code == 400, response.get_json()


def test_add_from_page_shows_result(admin_client, models):
    html = admin_client.post("/models/add", data={"url": "https://example.com/m/x.safetensors", "folder": "vae"},
                             headers=admin_client.csrf_headers).get_data(as_text=True)
    assert "Queued as job" in html
    bad = admin_client.post("/models/add", data={"url": "nope", "folder": "vae"}, headers=admin_client.csrf_headers)
    assert "alert error" in bad.get_data(as_text=True)
