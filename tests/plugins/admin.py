"""Admin fixtures: a Flask app on a test workspace and test clients (anonymous, logged in, token).

    def test_page(admin_client):
        assert admin_client.get("/presets").status_code == 200
        admin_client.post("/services/comfyui/restart", headers=admin_client.csrf_headers)

    def test_api(admin_app, api_headers):
        admin_app.test_client().get("/api/system", headers=api_headers)
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from services import credentials, paths
from services.settings import Settings

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    if not match:
        raise AssertionError("no CSRF token in the page")
    return match.group(1) or match.group(2)


def make_admin_app(settings: Settings) -> Flask:
    from admin import create_app

    paths.ensure_workspace(settings.workspace)
    hash_file = settings.state_dir / credentials.PASSWORD_FILE
    if settings.access_password and not hash_file.exists():
        # a cheap hash keeps each test fast; ensure_credentials keeps it because it matches
        cheap = generate_password_hash(settings.access_password.reveal(), method="pbkdf2:sha256:1000")
        credentials.write_private(hash_file, cheap)
    credentials.ensure_credentials(settings)
    app = create_app(settings)
    app.config.update(TESTING=True, LOGIN_FAILURE_PAUSE=0)
    return app


def login_client(app: Flask, password: str) -> FlaskClient:
    """A test client logged in with ``password``; ``.csrf_token`` / ``.csrf_headers`` for POSTs."""
    client = app.test_client()
    token = csrf_from(client.get("/_auth/login").get_data(as_text=True))
    response = client.post("/_auth/login", data={"password": password, "csrf_token": token, "next": "/"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    page = client.get("/logs").get_data(as_text=True)
    client.csrf_token = csrf_from(page)  # type: ignore[attr-defined]
    client.csrf_headers = {"X-CSRFToken": client.csrf_token}  # type: ignore[attr-defined]
    return client


@pytest.fixture
def admin_app(settings: Settings) -> Flask:
    return make_admin_app(settings)


@pytest.fixture
def anon_client(admin_app: Flask) -> FlaskClient:
    return admin_app.test_client()


@pytest.fixture
def admin_client(admin_app: Flask, settings: Settings) -> FlaskClient:
    return login_client(admin_app, settings.access_password.reveal())


@pytest.fixture
def api_headers(admin_app: Flask, settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials.api_token(settings).reveal()}"}


SMALL_CATALOG = """\
# a small catalog for admin tests
metadata:
  version: 0.0.1
presets:
  IMG_A:
    name: Image A
    type: image
    description: A small image model.
    tags: [sdxl, fast]
    vram_gb: 8
    files:
      - path: loras/a.safetensors
        url: https://example.com/a.safetensors
        size: 1000
  VID_B:
    name: Video B
    type: video
    description: A big video model that needs a big GPU.
    tags: [wan, t2v]
    vram_gb: 80
    files:
      - path: checkpoints/b.safetensors
        url: https://example.com/b.safetensors
        size: 2000
      - path: vae/shared.safetensors
        url: https://example.com/shared.safetensors
        size: 300
  AUD_C:
    name: Audio C
    type: audio
    description: Music from text.
    tags: [music]
    files:
      - path: vae/shared.safetensors
        url: https://example.com/shared.safetensors
        size: 300
"""


@pytest.fixture
def small_catalog(settings: Settings) -> str:
    """Write a three-preset presets.yaml (IMG_A image 8 GB, VID_B video 80 GB, AUD_C audio; VID_B and
    AUD_C share vae/shared.safetensors) to the test workspace; return its text."""
    settings.presets_file.parent.mkdir(parents=True, exist_ok=True)
    settings.presets_file.write_text(SMALL_CATALOG)
    return SMALL_CATALOG
