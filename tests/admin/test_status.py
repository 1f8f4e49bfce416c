"""admin/status.py: the start-up page nginx shows in place of a service that does not answer."""

from __future__ import annotations

import pytest

from admin import create_app, status
from services import credentials
from services.errors import ServiceError
from services.supervisor import ProgramState


class FakeSupervisor:
    def __init__(self, state: str = "STARTING", log: str = "", spawn_error: str = "", down: bool = False):
        self.state_name = state
        self.log = log
        self.spawn_error = spawn_error
        self.down = down
        self.tails = 0

    def state(self, name: str) -> ProgramState:
        if self.down:
            raise ServiceError("supervisord is not reachable")
        return ProgramState(name, self.state_name, 0, 0, "", 0, self.spawn_error, "")

    def tail(self, name: str, length: int = 8192) -> str:
        self.tails += 1
        return self.log


@pytest.fixture
def status_app(settings):
    credentials.ensure_credentials(settings)
    app = create_app(settings)
    app.config.update(TESTING=True)
    return app


@pytest.fixture
def fake(monkeypatch):
    holder = FakeSupervisor()
    monkeypatch.setattr(status, "supervisor", lambda: holder)
    return holder


def log_in(client) -> None:
    with client.session_transaction() as session:
        session["_user_id"] = "admin"
        session["_fresh"] = True


@pytest.mark.parametrize(
    ("state", "words", "refresh"),
    [
        ("STARTING", "ComfyUI is starting", 3),
        ("RUNNING", "ComfyUI is starting", 3),
        ("BACKOFF", "ComfyUI is restarting", 3),
        ("STOPPING", "ComfyUI is restarting", 3),
        ("STOPPED", "ComfyUI is stopped", 5),
        ("EXITED", "ComfyUI is stopped", 5),
        ("FATAL", "ComfyUI could not start", 15),
    ],
)
def test_page_is_a_self_refreshing_503(status_app, fake, state, words, refresh):
    fake.state_name = state
    response = status_app.test_client().get("/_status/comfyui")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(refresh)
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert words in html
    assert f'<meta http-equiv="refresh" content="{refresh}">' in html


def test_anonymous_sees_no_log_of_a_fatal_program(status_app, fake):
    fake.state_name = "FATAL"
    fake.log = "Traceback: secret-looking line\n"
    html = status_app.test_client().get("/_status/comfyui").get_data(as_text=True)
    assert "secret-looking line" not in html
    assert "Log in" in html and "/_auth/login" in html
    assert fake.tails == 0


def test_logged_in_user_sees_the_last_log_lines_masked(status_app, fake, settings):
    fake.state_name = "FATAL"
    lines = [f"line {i}" for i in range(100)]
    lines.append(f"crash with password {settings.access_password.reveal()} and ?token=abcdef123")
    fake.log = "\n".join(lines) + "\n"
    client = status_app.test_client()
    log_in(client)
    html = client.get("/_status/comfyui").get_data(as_text=True)
    assert 'id="log-tail"' in html
    assert "line 99" in html and "line 10\n" not in html
    assert settings.access_password.reveal() not in html
    assert "abcdef123" not in html


def test_log_is_html_escaped(status_app, fake):
    fake.state_name = "FATAL"
    fake.log = "<script>alert(1)</script>\n"
    client = status_app.test_client()
    log_in(client)
    html = client.get("/_status/comfyui").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_no_log_while_merely_starting(status_app, fake):
    fake.state_name = "STARTING"
    fake.log = "loading custom nodes\n"
    client = status_app.test_client()
    log_in(client)
    assert "loading custom nodes" not in client.get("/_status/comfyui").get_data(as_text=True)
    assert fake.tails == 0


def test_supervisord_down_reads_as_starting(status_app, fake):
    fake.down = True
    response = status_app.test_client().get("/_status/jupyter")
    assert response.status_code == 503
    assert "JupyterLab is starting" in response.get_data(as_text=True)


def test_disabled_program_says_off(make_settings, monkeypatch):
    settings = make_settings(ENABLE_CODE_SERVER="false")
    credentials.ensure_credentials(settings)
    app = create_app(settings)
    monkeypatch.setattr(status, "supervisor", lambda: FakeSupervisor("STOPPED"))
    html = app.test_client().get("/_status/code-server").get_data(as_text=True)
    assert "code-server is turned off" in html
    assert "ENABLE_CODE_SERVER=false" in html


def test_json_for_scripts(status_app, fake):
    fake.state_name = "BACKOFF"
    response = status_app.test_client().get("/_status/comfyui", headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.get_json()["phase"] == "restarting"
    assert response.get_json()["retry_after"] == 3


def test_unknown_program_is_404(status_app, fake):
    assert status_app.test_client().get("/_status/nope").status_code == 404


def test_login_link_returns_to_the_original_url(status_app, fake):
    fake.state_name = "FATAL"
    html = (
        status_app.test_client()
        .get("/_status/comfyui", headers={"X-Original-URI": "/view?filename=a.png&type=output"})
        .get_data(as_text=True)
    )
    assert "/_auth/login?next=/view?filename%3Da.png%26type%3Doutput" in html.replace("&amp;", "&")


def test_describe_is_pure(settings):
    view = status.describe(settings, "comfyui", "FATAL", "spawn error: no such file")
    assert view.phase == "failed"
    assert "spawn error" in view.detail
