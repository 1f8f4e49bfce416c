"""The Services page and /api/services against a real supervisord on the test's socket."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from services.supervisor import Supervisor
from tests.support.supervisord import running_supervisord

SLEEP = f'{sys.executable} -c "import time; print(\'hello from %(program_name)s\', flush=True); time.sleep(600)"'
# ignores SIGTERM, as a ComfyUI busy in a CUDA call can: supervisord kills it after stopwaitsecs
STUBBORN = (f'{sys.executable} -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
            f'print(\'ignoring TERM\', flush=True); time.sleep(600)"')


PROGRAMS = f"""
[program:comfyui]
command={SLEEP}
startsecs=0
stdout_logfile=%(here)s/comfyui.log
[program:admin]
command={SLEEP}
startsecs=0
autorestart=true
stdout_logfile=%(here)s/admin.log
[program:jupyter]
command={SLEEP}
autostart=false
startsecs=0
stopwaitsecs=2
[program:stubborn]
command={STUBBORN}
autostart=false
startsecs=0
stopwaitsecs=7
"""


def _admin_running(client: Supervisor) -> bool:
    return client.wait_for(["comfyui", "admin"], timeout=0.5).get("admin") == "RUNNING"


@pytest.fixture
def supervisord(settings, tmp_path: Path):
    sock = settings.supervisor_socket
    sock.parent.mkdir(parents=True, exist_ok=True)
    with running_supervisord(sock, tmp_path, PROGRAMS, ready=_admin_running) as client:
        yield client


def test_list_programs(admin_client, supervisord, api_headers, admin_app):
    data = admin_app.test_client().get("/api/services", headers=api_headers).get_json()
    by_name = {p["name"]: p for p in data["programs"]}
    assert by_name["comfyui"]["state"] == "RUNNING" and by_name["comfyui"]["title"] == "ComfyUI"
    assert by_name["jupyter"]["state"] == "STOPPED"
    html = admin_client.get("/services").get_data(as_text=True)
    assert 'id="program-comfyui"' in html and "running" in html


def test_start_stop_restart_via_api(admin_app, supervisord, api_headers):
    client = admin_app.test_client()
    started = client.post("/api/services/jupyter/start", headers=api_headers).get_json()
    assert started["program"]["state"] == "RUNNING"
    stopped = client.post("/api/services/jupyter/stop", headers=api_headers).get_json()
    assert stopped["program"]["state"] == "STOPPED"
    pid = supervisord.state("comfyui").pid
    restarted = client.post("/api/services/comfyui/restart", headers=api_headers).get_json()
    assert restarted["message"] == "comfyui restarted"
    assert restarted["program"]["pid"] != pid and restarted["program"]["state"] == "RUNNING"


def test_a_stop_slower_than_a_quick_answer_still_reports_stopped(admin_app, supervisord, api_headers):
    """A program that needs its whole stopwaitsecs (7 s here, 30 s for ComfyUI) to stop is
    reported STOPPED, not as an unreachable supervisord."""
    client = admin_app.test_client()
    assert client.post("/api/services/stubborn/start", headers=api_headers).get_json()["program"]["state"] == "RUNNING"
    deadline = time.monotonic() + 10
    while "ignoring TERM" not in supervisord.tail("stubborn") and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = client.post("/api/services/stubborn/stop", headers=api_headers)
    assert stopped.status_code == 200, stopped.get_json()
    assert stopped.get_json()["program"]["state"] == "STOPPED"


def test_page_action_returns_table_with_message(admin_client, supervisord):
    response = admin_client.post("/services/jupyter/start", headers=admin_client.csrf_headers)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "jupyter started" in html and 'hx-swap-oob="true"' in html
    assert supervisord.state("jupyter").running


def test_admin_cannot_be_stopped_but_restarts_after_answering(admin_app, supervisord, api_headers):
    client = admin_app.test_client()
    refused = client.post("/api/services/admin/stop", headers=api_headers)
    assert refused.status_code == 503 and "cannot be stopped" in refused.get_json()["error"]
    pid = supervisord.state("admin").pid
    answer = client.post("/api/services/admin/restart", headers=api_headers)
    assert answer.status_code == 200 and "restarts in a moment" in answer.get_json()["message"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        state = supervisord.state("admin")
        if state.running and state.pid != pid:
            break
        time.sleep(0.1)
    assert supervisord.state("admin").pid != pid


def test_unknown_program_and_action(admin_app, supervisord, api_headers):
    client = admin_app.test_client()
    assert client.post("/api/services/nope/start", headers=api_headers).status_code == 404
    assert client.post("/api/services/comfyui/explode", headers=api_headers).status_code == 404
    assert client.get("/api/services/..%2F..%2Fetc/log", headers=api_headers).status_code == 404


def test_log_tail(admin_app, admin_client, supervisord, api_headers):
    deadline = time.monotonic() + 10
    text = ""
    while "hello from comfyui" not in text and time.monotonic() < deadline:
        text = admin_app.test_client().get("/api/services/comfyui/log", headers=api_headers).get_json()["text"]
        time.sleep(0.1)
    assert "hello from comfyui" in text
    assert "hello from comfyui" in admin_client.get("/services/comfyui/_log").get_data(as_text=True)


def test_supervisord_down_shows_error(admin_app, admin_client, api_headers):
    response = admin_app.test_client().get("/api/services", headers=api_headers)
    assert response.status_code == 503 and "not reachable" in response.get_json()["error"]
    html = admin_client.get("/services/_table").get_data(as_text=True)
    assert "alert error" in html and "not reachable" in html
    assert admin_client.get("/services").status_code == 200
