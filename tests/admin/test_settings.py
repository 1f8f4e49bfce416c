"""Settings: SageAttention mode file, the presets.yaml editor, download tokens, the API token."""

from __future__ import annotations

import stat

import pytest

import admin.settings as settings_area
from admin.settings import mask, sage_mode
from services import credentials


@pytest.fixture(autouse=True)
def _small(small_catalog):
    """Every page here reads the catalog: keep it small so the tests stay fast."""


@pytest.fixture
def restarts(monkeypatch):
    calls = []
    monkeypatch.setattr(settings_area, "_restart_comfyui", lambda s: calls.append(s))
    return calls


def test_sage_mode_defaults_to_the_environment(make_settings):
    settings = make_settings(SAGE_ATTENTION="off")
    assert sage_mode(settings) == {"mode": "off", "source": "environment"}


def test_sage_mode_saved_in_state_file_and_comfyui_restarted(admin_client, settings, restarts):
    response = admin_client.post("/settings/sage-attention", data={"mode": "on"}, headers=admin_client.csrf_headers)
    assert response.status_code == 200 and "ComfyUI is restarting" in response.get_data(as_text=True)
    path = settings.state_dir / "sage_attention"
    assert path.read_text() == "on\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sage_mode(settings) == {"mode": "on", "source": "admin"}
    assert len(restarts) == 1


def test_sage_mode_api(admin_app, api_headers, settings, restarts):
    client = admin_app.test_client()
    response = client.put("/api/settings/sage-attention", json={"mode": "off", "restart": False}, headers=api_headers)
    assert response.get_json()["mode"] == "off" and restarts == []
    bad = client.put("/api/settings/sage-attention", json={"mode": "fast"}, headers=api_headers)
    assert bad.status_code == 400 and "not valid" in bad.get_json()["error"]
    assert client.get("/api/settings", headers=api_headers).get_json()["sage_attention"] == {"mode": "off",
                                                                                              "source": "admin"}


def test_catalog_editor_shows_the_file(admin_client, small_catalog):
    html = admin_client.get("/settings").get_data(as_text=True)
    assert "# a small catalog for admin tests" in html and "IMG_A:" in html


def test_catalog_validate_does_not_write(admin_client, settings, small_catalog):
    text = small_catalog.replace("name: Image A", "name: Image A2")
    html = admin_client.post("/settings/presets-yaml", data={"text": text, "action": "validate"},
                             headers=admin_client.csrf_headers).get_data(as_text=True)
    assert "Valid: 3 presets" in html
    assert settings.presets_file.read_text() == small_catalog


def test_catalog_save_valid_keeps_comments(admin_client, settings, small_catalog):
    text = small_catalog.replace("name: Image A", "name: Image A2  # renamed")
    html = admin_client.post("/settings/presets-yaml", data={"text": text, "action": "save"},
                             headers=admin_client.csrf_headers).get_data(as_text=True)
    assert "Saved: 3 presets" in html
    assert settings.presets_file.read_text() == text


def test_catalog_errors_have_line_numbers_and_nothing_is_written(admin_client, settings, small_catalog):
    lines = small_catalog.splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines) if "https://example.com/a.safetensors" in line) + 1
    text = small_catalog.replace("https://example.com/a.safetensors", "ftp://example.com/a.safetensors")
    html = admin_client.post("/settings/presets-yaml", data={"text": text, "action": "save"},
                             headers=admin_client.csrf_headers).get_data(as_text=True)
    assert "Not saved" in html
    assert f'data-line="{number}"' in html and f"line {number}" in html
    assert settings.presets_file.read_text() == small_catalog


def test_catalog_yaml_syntax_error_via_api(admin_app, api_headers, settings, small_catalog):
    client = admin_app.test_client()
    broken = {"text": "presets:\n  A: [unclosed\n"}
    response = client.put("/api/settings/presets-yaml", json=broken, headers=api_headers)
    assert response.status_code == 422
    body = response.get_json()
    assert body["ok"] is False and body["errors"][0]["line"] is not None
    assert settings.presets_file.read_text() == small_catalog
    current = client.get("/api/settings/presets-yaml", headers=api_headers).get_json()
    assert current["text"] == small_catalog


def test_tokens_saved_masked_and_never_shown_in_full(admin_app, admin_client, api_headers, settings):
    secret = "hf_abcdefghijklmnopqrstuvwxyz0123"
    html = admin_client.post("/settings/tokens", data={"hf_token": secret}, headers=admin_client.csrf_headers)
    html = html.get_data(as_text=True)
    assert "Hugging Face token saved" in html and secret not in html and mask(secret) in html
    assert credentials.stored_tokens(settings)["hf_token"].reveal() == secret
    assert stat.S_IMODE((settings.state_dir / "tokens.json").stat().st_mode) == 0o600
    assert secret not in admin_client.get("/settings").get_data(as_text=True)
    api = admin_app.test_client().get("/api/settings", headers=api_headers).get_json()
    assert api["tokens"]["hf_token"] == {"set": True, "source": "admin", "masked": "hf_…0123"}
    assert secret not in str(api)
    cleared = admin_client.post("/settings/tokens", data={"clear_hf_token": "1"}, headers=admin_client.csrf_headers)
    assert "removed" in cleared.get_data(as_text=True)
    assert not credentials.stored_tokens(settings)["hf_token"]


def test_token_from_environment_is_reported_not_shown(make_settings, admin_app):
    from tests.plugins.admin import login_client

    settings = make_settings(CIVITAI_TOKEN="civitai-secret-value-123")
    admin_app.extensions["comfypod.settings"] = settings
    client = login_client(admin_app, settings.access_password.reveal())
    html = client.get("/settings").get_data(as_text=True)
    assert "from the environment" in html and "civitai-secret-value-123" not in html


def test_bad_token_refused(admin_app, api_headers):
    response = admin_app.test_client().put("/api/settings/tokens", json={"hf_token": "two words"}, headers=api_headers)
    assert response.status_code == 400


def test_api_token_show_and_rotate(admin_client, settings):
    token = credentials.api_token(settings).reveal()
    page = admin_client.get("/settings").get_data(as_text=True)
    assert token not in page and mask(token) in page
    assert token in admin_client.get("/settings/_api-token?reveal=1").get_data(as_text=True)
    rotated = admin_client.post("/settings/api-token/rotate", headers=admin_client.csrf_headers).get_data(as_text=True)
    new = credentials.api_token(settings).reveal()
    assert new != token and new in rotated


def test_api_token_api(admin_app, api_headers, settings):
    client = admin_app.test_client()
    assert client.get("/api/settings/api-token", headers=api_headers).get_json()["token"] == \
        credentials.api_token(settings).reveal()
    new = client.post("/api/settings/api-token/rotate", headers=api_headers).get_json()["token"]
    assert new == credentials.api_token(settings).reveal()
    assert client.get("/api/settings", headers=api_headers).status_code == 401


@pytest.mark.parametrize("value, shown", [("", ""), ("short", "••••••••"), ("hf_1234567890abcd", "hf_…abcd")])
def test_mask(value, shown):
    assert mask(value) == shown
