"""admin/nodes.py: the Nodes page and /api/nodes (list with import status, install, remove,
restore, export, import)."""

from __future__ import annotations

import io
import json
import time

import pytest

from services import nodes, pyenv
from tests.plugins.admin import login_client, make_admin_app
from tests.support import pyenv_kit


def wait_job(client, headers=None, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get("/api/nodes/job", headers=headers or {}).get_json()["job"]
        if job and job["state"] != "running":
            return job
        time.sleep(0.1)
    raise AssertionError(f"job still running after {timeout}s: {job}")


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repos" / "ComfyUI-Admin"
    commit = pyenv_kit.make_node_repo(path, "NODE_CLASS_MAPPINGS = {}\n")
    return path, commit


def test_page_shows_nodes_with_import_status_and_requirements(admin_client, settings):
    for name in ("Broken", "Fine"):
        (settings.custom_nodes_dir / name).mkdir(parents=True)
    (settings.custom_nodes_dir / "Fine" / "requirements.txt").write_text("cpplain\n")
    (settings.logs_dir / "comfyui.log").write_text(
        "Cannot import /w/custom_nodes/Broken module for custom nodes: No module named 'cpmissing'\n"
        "Import times for custom nodes:\n   0.0 seconds (IMPORT FAILED): /w/custom_nodes/Broken\n"
        "   0.2 seconds: /w/custom_nodes/Fine\n")
    state = {"nodes": {"Fine": {"status": "refused", "message": "asks for torch==9, but the image pins torch==2"}},
             "versions": {"comfyui": "0.3.99", "torch": "2.7.1+cu128", "cuda": "12.8"}}
    pyenv.state_file(settings).write_text(json.dumps(state))
    page = admin_client.get("/nodes").get_data(as_text=True)
    assert 'id="node-Broken" data-import="failed"' in page
    assert "No module named &#39;cpmissing&#39;" in page
    assert 'id="node-Fine" data-import="ok" data-requirements="refused"' in page
    assert "asks for torch==9, but the image pins torch==2" in page
    assert "2.7.1+cu128 (CUDA 12.8)" in page and "0.3.99" in page
    assert 'href="/nodes"' in page  # in the navigation bar


def test_install_and_remove_from_the_page(admin_client, settings, repo):
    path, commit = repo
    answer = admin_client.post("/nodes/install", data={"url": f"file://{path}"}, headers=admin_client.csrf_headers)
    assert answer.status_code == 200
    job = wait_job(admin_client)
    assert job["state"] == "done", job
    assert job["message"].startswith(f"installed ComfyUI-Admin at {commit[:10]}")
    table = admin_client.get("/nodes/_table").get_data(as_text=True)
    assert 'id="node-ComfyUI-Admin"' in table and commit[:10] in table
    removed = admin_client.post("/nodes/ComfyUI-Admin/remove", headers=admin_client.csrf_headers)
    assert "ComfyUI-Admin removed" in removed.get_data(as_text=True)
    assert not (settings.custom_nodes_dir / "ComfyUI-Admin").exists()


def test_page_errors_stay_above_the_table(admin_client):
    answer = admin_client.post("/nodes/install", data={"url": "ftp://example.com/x"}, headers=admin_client.csrf_headers)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200 and 'id="nodes-table"' in text and "not allowed" in text
    answer = admin_client.post("/nodes/Nope/remove", headers=admin_client.csrf_headers)
    assert "no custom node named Nope" in answer.get_data(as_text=True)
    assert admin_client.post("/nodes/install", data={"url": "https://x/y"}).status_code in (400, 403)  # no CSRF


def test_restore_an_image_node(make_settings, tmp_path):
    settings = make_settings(APP_DIR=str(tmp_path / "app"))
    admin_client = login_client(make_admin_app(settings), settings.access_password.reveal())
    baked = nodes.baked_dir(settings) / "FromImage"
    baked.mkdir(parents=True)
    (baked / "__init__.py").write_text("")
    nodes.link_baked(settings)
    nodes.remove_node(settings, "FromImage")
    page = admin_client.get("/nodes").get_data(as_text=True)
    assert 'id="node-FromImage" data-hidden="true"' in page
    answer = admin_client.post("/nodes/FromImage/restore", headers=admin_client.csrf_headers)
    assert "FromImage restored from the image" in answer.get_data(as_text=True)
    assert (settings.custom_nodes_dir / "FromImage").is_symlink()


def test_api_install_list_export_remove_import(admin_app, api_headers, settings, repo):
    client = admin_app.test_client()
    path, commit = repo
    answer = client.post("/api/nodes", json={"url": f"{path}@main", "name": "Renamed"}, headers=api_headers)
    assert answer.status_code == 202 and answer.get_json()["job"]["target"] == "Renamed"
    assert wait_job(client, api_headers)["state"] == "done"
    listed = client.get("/api/nodes", headers=api_headers).get_json()
    assert [(n["name"], n["commit"], n["origin"]) for n in listed["nodes"]] == [("Renamed", commit, "user")]
    lock = client.get("/api/nodes/export", headers=api_headers)
    assert lock.headers["Content-Disposition"].startswith("attachment")
    data = lock.get_json()
    assert [(n["name"], n["url"], n["commit"]) for n in data["nodes"]] == [("Renamed", str(path), commit)]
    assert client.delete("/api/nodes/Renamed", headers=api_headers).get_json() == {"message": "Renamed removed"}
    answer = client.post("/api/nodes/import", json=data, headers=api_headers)
    assert answer.status_code == 202
    job = wait_job(client, api_headers)
    assert job["state"] == "done" and "Renamed: installed" in job["message"], job
    assert nodes.get_node(settings, "Renamed").commit == commit


def test_api_refuses_bad_input(admin_app, api_headers):
    client = admin_app.test_client()
    answer = client.post("/api/nodes", json={"url": "ext::sh -c id"}, headers=api_headers)
    assert answer.status_code == 400 and "not a usable git URL" in answer.get_json()["error"]
    assert client.post("/api/nodes", json={}, headers=api_headers).status_code == 400
    assert client.post("/api/nodes/import", json={"nodes": []}, headers=api_headers).status_code == 400
    assert client.delete("/api/nodes/..", headers=api_headers).status_code in (400, 404)
    assert client.get("/api/nodes").status_code == 401


def test_import_an_uploaded_lock_file(admin_client, settings, repo):
    path, commit = repo
    lock = {"format": "comfypod-nodes", "version": 1, "nodes": [{"name": "Up", "url": str(path), "commit": commit}]}
    upload = {"lock": (io.BytesIO(json.dumps(lock).encode()), "nodes.lock.json")}
    answer = admin_client.post("/nodes/import", data=upload, headers=admin_client.csrf_headers,
                               content_type="multipart/form-data")
    assert answer.status_code == 200
    assert wait_job(admin_client)["state"] == "done"
    assert nodes.get_node(settings, "Up").commit == commit


def test_openapi_documents_the_nodes_api(admin_app, api_headers):
    spec = admin_app.test_client().get("/api/openapi.json", headers=api_headers).get_json()
    assert {"get", "post"} <= set(spec["paths"]["/api/nodes"])
    assert "delete" in spec["paths"]["/api/nodes/{name}"]
    assert spec["paths"]["/api/nodes"]["post"]["tags"] == ["nodes"]


@pytest.mark.browser
def test_nodes_page_in_a_browser(browser_page, make_settings, tmp_path):
    """Install from the page, watch the job finish, see ComfyUI's verdict; screenshot nodes.png."""
    import threading

    from werkzeug.serving import make_server

    from tests.plugins.browser import login, screenshot

    settings = make_settings(APP_DIR=str(tmp_path / "app"))
    app = make_admin_app(settings)
    baked = nodes.baked_dir(settings) / "ComfyUI-Manager"
    baked.mkdir(parents=True)
    (baked / "__init__.py").write_text("")
    nodes.link_baked(settings)
    (settings.custom_nodes_dir / "Broken").mkdir()
    (settings.custom_nodes_dir / "Broken" / "requirements.txt").write_text("torch==2.4\n")
    pyenv.state_file(settings).write_text(json.dumps({
        "nodes": {"Broken": {"status": "refused", "message": "asks for torch==2.4, but the image pins "
                                                             "torch==2.7.1+cu128 (constraints file)"}},
        "versions": {"comfyui": "0.3.40", "frontend": "1.23.4", "torch": "2.7.1+cu128", "cuda": "12.8",
                     "python": "3.12.3", "interpreter": "/app/venv/bin/python"}}))
    (settings.logs_dir / "comfyui.log").write_text(
        "Cannot import /workspace/custom_nodes/Broken module for custom nodes: No module named 'torch_x'\n"
        "Import times for custom nodes:\n   0.0 seconds (IMPORT FAILED): /workspace/custom_nodes/Broken\n"
        "   0.3 seconds: /workspace/custom_nodes/ComfyUI-Manager\n")
    repo = tmp_path / "repos" / "ComfyUI-Hello"
    pyenv_kit.make_node_repo(repo)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        page = browser_page
        login(page, base, settings.access_password.reveal(), next_path="/nodes")
        assert page.locator("#node-Broken").get_attribute("data-import") == "failed"
        page.fill("input[name=url]", f"file://{repo}")
        page.click("form[hx-post$='/nodes/install'] button[type=submit]")
        page.wait_for_selector("[data-job=done]", timeout=20_000)
        assert page.locator("#node-ComfyUI-Hello").count() == 1
        screenshot(page, "nodes")
    finally:
        server.shutdown()
        thread.join(timeout=5)
