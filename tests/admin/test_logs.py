"""The Logs page: list, tail, and names that cannot leave workspace/logs."""

from __future__ import annotations

import pytest

from admin.logs import tail_file


@pytest.fixture
def logs(settings):
    folder = settings.logs_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comfyui.log").write_text("".join(f"line {i}\n" for i in range(5000)))
    (folder / "admin.log").write_text("admin started\n")
    (folder / "admin.log.1").write_text("older\n")
    (folder / "notes.txt").write_text("not a log\n")
    return folder


def test_list(admin_app, api_headers, logs):
    names = [f["name"] for f in admin_app.test_client().get("/api/logs", headers=api_headers).get_json()["logs"]]
    assert names == ["admin.log", "comfyui.log", "admin.log.1"]


def test_tail_cuts_at_a_line(admin_app, api_headers, logs):
    text = admin_app.test_client().get("/api/logs/comfyui.log?bytes=100", headers=api_headers).get_json()["text"]
    assert text.endswith("line 4999\n")
    assert text.startswith("line ") and len(text) <= 100


def test_page_and_fragment(admin_client, logs):
    html = admin_client.get("/logs").get_data(as_text=True)
    assert "comfyui.log" in html and "notes.txt" not in html
    assert "line 4999" in admin_client.get("/logs/comfyui.log/_tail").get_data(as_text=True)


@pytest.mark.parametrize("name", ["notes.txt", "..%2Fconfig%2Fstate%2Fapi_token", ".hidden.log", "missing.log",
                                  "a b.log", "x.log.1234"])
def test_bad_names_refused(admin_app, api_headers, logs, name):
    assert admin_app.test_client().get(f"/api/logs/{name}", headers=api_headers).status_code == 404


def test_symlink_out_of_logs_refused(admin_app, api_headers, logs, settings):
    (logs / "evil.log").symlink_to(settings.state_dir / "api_token")
    assert admin_app.test_client().get("/api/logs/evil.log", headers=api_headers).status_code == 404


def test_tail_file_small_and_empty(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"")
    assert tail_file(path) == ""
    path.write_bytes(b"one\ntwo\n\xff\n")
    assert tail_file(path, 1000) == "one\ntwo\n\ufffd\n"


def test_no_logs_folder(admin_client):
    assert "No log files yet" in admin_client.get("/logs").get_data(as_text=True)
