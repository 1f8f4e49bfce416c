"""create_app: settings, cookies, error pages, and the walk over every route of the URL map."""

from __future__ import annotations

import re

import pytest
from werkzeug.routing import Rule

from admin import AREAS, create_app
from admin.auth import PUBLIC_BLUEPRINTS, PUBLIC_ENDPOINTS
from admin.context import current_settings

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
DUMMY = {"int": "1", "path": "some/file.txt", "default": "x"}


def _url(rule: Rule) -> str:
    values = {}
    for name in rule.arguments:
        converter = type(rule._converters[name]).__name__.lower()
        kind = "int" if "integer" in converter else "path" if "path" in converter else "default"
        values[name] = DUMMY[kind]
    url = rule.rule
    for name, value in values.items():
        url = re.sub(rf"<(?:[^:>]+:)?{name}>", value, url)
    return url


def _routes(app) -> list[tuple[Rule, str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule, method, _url(rule)))
    return out


def _public(rule: Rule) -> bool:
    return rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint.split(".")[0] in PUBLIC_BLUEPRINTS


def test_settings_kept_on_the_app(admin_app, settings):
    assert admin_app.extensions["comfypod.settings"] is settings
    with admin_app.app_context():
        assert current_settings() is settings


def test_every_area_is_registered(admin_app):
    names = set(admin_app.blueprints)
    for area in AREAS:
        assert area in names or f"{area}_api" in names, area


def test_healthz_is_public(anon_client):
    response = anon_client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"ok": True}


def test_url_map_walk_refuses_anonymous(admin_app):
    """Every route but login, verify, static, /healthz and /_status refuses an anonymous request."""
    client = admin_app.test_client()
    checked = 0
    for rule, method, url in _routes(admin_app):
        if _public(rule):
            continue
        response = client.open(url, method=method)
        assert response.status_code in (302, 401), f"{method} {url} answered {response.status_code} anonymously"
        if response.status_code == 302:
            assert response.headers["Location"].startswith("/_auth/login"), (method, url)
        if url.startswith("/api/"):
            assert response.status_code == 401 and response.is_json, (method, url)
        checked += 1
    assert checked > 40


def test_url_map_walk_refuses_state_changes_without_csrf_or_token(admin_app, admin_client, api_headers, monkeypatch):
    """A logged-in session without a CSRF token is refused on every state-changing route, before the view
    runs; the same request with the API token (and no CSRF token) gets past the check."""
    called = []
    for endpoint in list(admin_app.view_functions):
        def spy(*args, _endpoint=endpoint, **kwargs):
            called.append(_endpoint)
            return "", 204

        admin_app.view_functions[endpoint] = spy
    changing = [(rule, method, url) for rule, method, url in _routes(admin_app) if method in STATE_CHANGING]
    assert len(changing) >= 15
    for rule, method, url in changing:
        response = admin_client.open(url, method=method)
        assert response.status_code == 400, f"{method} {url} without CSRF answered {response.status_code}"
        assert "CSRF" in response.get_data(as_text=True), (method, url)
        assert rule.endpoint not in called, f"{rule.endpoint} ran without a CSRF token"
        if _public(rule):
            continue  # the login form always needs its CSRF token
        anon = admin_app.test_client().open(url, method=method, headers=api_headers)
        assert anon.status_code == 204, f"{method} {url} with the API token answered {anon.status_code}"
        assert rule.endpoint in called
        wrong = admin_app.test_client().open(url, method=method, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, (method, url)


def test_public_endpoints_are_the_contracted_ones(admin_app):
    public = {rule.endpoint for rule in admin_app.url_map.iter_rules() if _public(rule)}
    assert {"auth.login", "auth.verify", "static", "healthz"} <= public
    assert all(e in PUBLIC_ENDPOINTS or e.startswith("status.") for e in public)


@pytest.mark.parametrize("proto, secure", [("http", False), ("https", True)])
def test_session_cookie_flags(admin_app, settings, proto, secure):
    client = admin_app.test_client()
    headers = {"X-Forwarded-Proto": proto, "X-Forwarded-For": "10.1.2.3"}
    page = client.get("/_auth/login", headers=headers).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        "/_auth/login",
        data={"password": settings.access_password.reveal(), "csrf_token": token},
        headers=headers,
    )
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "comfypod_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_api_errors_are_json_and_pages_are_html(admin_client):
    api = admin_client.get("/api/logs/nope.log")
    assert api.status_code == 404 and api.is_json and "error" in api.get_json()
    page = admin_client.get("/logs/nope.log/_tail")
    assert page.status_code == 404 and "text/html" in page.content_type


def test_create_app_without_settings_reads_the_environment(monkeypatch, settings):
    import admin

    monkeypatch.setattr(admin, "load_settings", lambda: settings)
    app = create_app()
    assert app.extensions["comfypod.settings"] is settings


def test_nav_shows_only_existing_pages(admin_client):
    html = admin_client.get("/").get_data(as_text=True)
    for href in ("/presets", "/models", "/services", "/logs", "/settings"):
        assert f'href="{href}"' in html
