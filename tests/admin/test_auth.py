"""Login, logout, the API token, nginx's /_auth/verify and the failed-login throttle."""

from __future__ import annotations

import re

import pytest

from admin.auth import safe_next
from services import credentials
from tests.plugins.admin import csrf_from


def _login(client, password: str, next_url: str = "/", headers=None):
    token = csrf_from(client.get("/_auth/login", headers=headers).get_data(as_text=True))
    return client.post("/_auth/login", data={"password": password, "csrf_token": token, "next": next_url},
                       headers=headers)


def test_anonymous_page_redirects_to_login_with_next(anon_client):
    response = anon_client.get("/presets?type=video")
    assert response.status_code == 302
    assert response.headers["Location"] == "/_auth/login?next=/presets?type%3Dvideo"


def test_login_page_renders(anon_client):
    html = anon_client.get("/_auth/login?next=/models").get_data(as_text=True)
    assert 'name="password"' in html and 'value="/models"' in html and 'name="csrf_token"' in html


def test_login_success_goes_to_next(anon_client, settings):
    response = _login(anon_client, settings.access_password.reveal(), "/models")
    assert response.status_code == 302 and response.headers["Location"] == "/models"
    assert anon_client.get("/models").status_code == 200


def test_wrong_password_refused(anon_client):
    response = _login(anon_client, "not-the-password")
    assert response.status_code == 401
    assert "Wrong password" in response.get_data(as_text=True)
    assert anon_client.get("/").status_code == 302


def test_login_needs_csrf_token(anon_client, settings):
    anon_client.get("/_auth/login")
    response = anon_client.post("/_auth/login", data={"password": settings.access_password.reveal()})
    assert response.status_code == 400
    assert anon_client.get("/").status_code == 302


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/models", "/models"),
        ("/presets?q=wan", "/presets?q=wan"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
        (None, "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("relative/path", "/"),
    ],
)
def test_safe_next(value, expected):
    assert safe_next(value) == expected


def test_open_redirect_refused(anon_client, settings):
    response = _login(anon_client, settings.access_password.reveal(), "//evil.example/")
    assert response.headers["Location"] == "/"


def test_logout(admin_client):
    response = admin_client.post("/_auth/logout", headers=admin_client.csrf_headers)
    assert response.status_code == 302 and response.headers["Location"].startswith("/_auth/login")
    assert admin_client.get("/").status_code == 302


def test_verify_is_401_without_credentials_and_never_redirects(anon_client):
    response = anon_client.get("/_auth/verify")
    assert response.status_code == 401
    assert "Location" not in response.headers


def test_verify_with_session(admin_client):
    assert admin_client.get("/_auth/verify").status_code == 204


def test_verify_with_bearer(anon_client, api_headers):
    assert anon_client.get("/_auth/verify", headers=api_headers).status_code == 204
    assert anon_client.get("/_auth/verify", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_verify_with_token_in_original_uri(anon_client, settings):
    token = credentials.api_token(settings).reveal()
    good = anon_client.get("/_auth/verify", headers={"X-Original-URI": f"/ws?clientId=1&token={token}"})
    assert good.status_code == 204
    bad = anon_client.get("/_auth/verify", headers={"X-Original-URI": "/ws?token=nope"})
    assert bad.status_code == 401


def test_api_with_bearer_and_query_token(anon_client, api_headers, settings):
    response = anon_client.get("/api/auth", headers=api_headers)
    assert response.status_code == 200 and response.get_json() == {"user": "admin", "via": "token"}
    token = credentials.api_token(settings).reveal()
    assert anon_client.get(f"/api/auth?token={token}").get_json()["via"] == "token"
    assert anon_client.get("/api/auth?token=wrong").status_code == 401


def test_token_requests_get_no_session_cookie(anon_client, api_headers):
    """A script using the API token is handed no session, even for a page that holds a CSRF token."""
    for path in ("/presets", "/api/system"):
        response = anon_client.get(path, headers=api_headers)
        assert response.status_code == 200 and "Set-Cookie" not in response.headers, path


def test_session_api_call_reports_session(admin_client):
    assert admin_client.get("/api/auth").get_json() == {"user": "admin", "via": "session"}


def test_htmx_call_without_session_gets_hx_redirect(anon_client):
    response = anon_client.get("/services/_table", headers={"HX-Request": "true",
                                                            "HX-Current-URL": "http://pod:8082/services?log=x"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/_auth/login?next=/services?log%3Dx"


def test_rotated_token_stops_working(admin_app, settings, api_headers):
    client = admin_app.test_client()
    assert client.get("/api/auth", headers=api_headers).status_code == 200
    credentials.rotate_api_token(settings)
    assert client.get("/api/auth", headers=api_headers).status_code == 401


def test_failed_logins_are_slowed_per_client(admin_app, settings):
    client = admin_app.test_client()
    limiter = admin_app.extensions["comfypod.login_limiter"]
    me = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(limiter.free):
        assert _login(client, "wrong", headers=me).status_code == 401
    blocked = _login(client, "wrong", headers=me)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    # now even the right password waits
    right = _login(client, settings.access_password.reveal(), headers=me)
    assert right.status_code == 429
    assert "Too many failed logins" in right.get_data(as_text=True)
    # another client is not affected
    other = admin_app.test_client()
    elsewhere = {"X-Forwarded-For": "198.51.100.2"}
    assert _login(other, settings.access_password.reveal(), headers=elsewhere).status_code == 302


def test_success_clears_failures(admin_app, settings):
    client = admin_app.test_client()
    limiter = admin_app.extensions["comfypod.login_limiter"]
    _login(client, "wrong")
    assert limiter.failures("127.0.0.1") == 1
    assert _login(client, settings.access_password.reveal()).status_code == 302
    assert limiter.failures("127.0.0.1") == 0


def test_password_never_in_page(anon_client, settings):
    html = _login(anon_client, "typed-secret-guess").get_data(as_text=True)
    assert "typed-secret-guess" not in html
    assert settings.access_password.reveal() not in html
    assert not re.search(r'value="typed', html)
