"""/api/openapi.json: a valid OpenAPI 3 document listing every API route and method."""

from __future__ import annotations

import pytest

from admin.api import openapi_path


@pytest.fixture
def spec(admin_app, api_headers):
    response = admin_app.test_client().get("/api/openapi.json", headers=api_headers)
    assert response.status_code == 200
    return response.get_json()


def test_spec_is_valid_openapi(spec):
    import openapi_spec_validator as validator
    validator.validate(spec)


def test_every_api_route_and_method_is_documented(admin_app, spec):
    for rule in admin_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = openapi_path(rule.rule)
        assert path in spec["paths"], path
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = spec["paths"][path][method.lower()]
            assert operation.get("summary"), (method, path)
            assert "401" in operation["responses"]


def test_admin_area_operations_come_from_docstrings(admin_app):
    """Every view of the admin's own areas documents itself (YAML after ---), not a fallback."""
    from apispec.yaml_utils import load_operations_from_docstring

    own = ("auth_api", "dashboard_api", "system_api", "presets_api", "models_api", "services_api", "logs_api",
           "settings_api", "api")
    for rule in admin_app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in own:
            operations = load_operations_from_docstring(admin_app.view_functions[rule.endpoint].__doc__ or "")
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                assert method.lower() in operations, f"{rule.endpoint} {method} has no OpenAPI docstring"


def test_path_parameters_declared(spec):
    for path, operations in spec["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for method, operation in operations.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == declared, (method, path)


@pytest.mark.parametrize("rule, path", [("/api/presets/jobs/<int:job_id>", "/api/presets/jobs/{job_id}"),
                                        ("/api/models/files/<path:rel>", "/api/models/files/{rel}"),
                                        ("/api/logs/<name>", "/api/logs/{name}")])
def test_openapi_path(rule, path):
    assert openapi_path(rule) == path


def test_spec_needs_login(anon_client):
    assert anon_client.get("/api/openapi.json").status_code == 401
