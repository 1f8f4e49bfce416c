"""``GET /api/openapi.json``: the OpenAPI document, built by apispec from the app's url_map.

Each API view's docstring carries its operation as YAML after a ``---`` line; a route without
one still appears (summary from the first docstring line), so the document never misses a route.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from apispec import APISpec
from apispec.yaml_utils import load_operations_from_docstring
from flask import Blueprint, Flask, current_app

api = Blueprint("api", __name__, url_prefix="/api")

_CONVERTER = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")
_IGNORED_METHODS = {"HEAD", "OPTIONS"}

COMPONENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "kind": {"type": "string"}},
        "required": ["error"],
    },
    "Program": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "title": {"type": "string"},
            "state": {"type": "string"},
            "running": {"type": "boolean"},
            "pid": {"type": "integer"},
            "uptime": {"type": "integer", "description": "seconds"},
            "description": {"type": "string"},
            "exit_status": {"type": "integer"},
            "spawn_error": {"type": "string"},
        },
    },
    "JobFile": {
        "type": "object",
        "properties": {
            "path": {"type": "string"},
            "url": {"type": "string"},
            "state": {"type": "string"},
            "bytes_done": {"type": "integer"},
            "bytes_total": {"type": "integer", "nullable": True},
            "error": {"type": "string", "nullable": True},
        },
    },
    "Job": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": ["preset", "file"]},
            "preset_id": {"type": "string", "nullable": True},
            "label": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["queued", "probing", "running", "paused", "done", "failed", "cancelled"],
            },
            "bytes_done": {"type": "integer"},
            "bytes_total": {"type": "integer", "nullable": True},
            "speed": {"type": "number", "nullable": True, "description": "bytes per second"},
            "eta_seconds": {"type": "number", "nullable": True},
            "error": {"type": "string", "nullable": True},
            "files": {"type": "array", "items": {"$ref": "#/components/schemas/JobFile"}},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
        },
    },
    "PresetRow": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "type": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "vram_gb": {"type": "number", "nullable": True},
            "size": {"type": "integer"},
            "size_exact": {"type": "boolean"},
            "state": {"type": "string", "enum": ["installed", "partial", "missing", "damaged"]},
            "fits": {"type": "string", "enum": ["yes", "no", "unknown"]},
            "job": {"allOf": [{"$ref": "#/components/schemas/Job"}], "nullable": True},
        },
    },
    "NodeJob": {
        "type": "object",
        "description": "the last custom node install or import",
        "properties": {
            "action": {"type": "string", "enum": ["install", "import"]},
            "target": {"type": "string"},
            "state": {"type": "string", "enum": ["running", "done", "failed"]},
            "message": {"type": "string"},
            "started": {"type": "number"},
            "finished": {"type": "number", "nullable": True},
        },
    },
    "ModelFile": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "relative to models/"},
            "name": {"type": "string"},
            "size": {"type": "integer"},
            "modified": {"type": "number"},
            "presets": {"type": "array", "items": {"type": "string"}},
            "unknown": {"type": "boolean"},
            "partial": {"type": "boolean"},
        },
    },
    "CatalogCheck": {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "saved": {"type": "boolean"},
            "presets": {"type": "integer", "nullable": True},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "line": {"type": "integer", "nullable": True},
                        "column": {"type": "integer", "nullable": True},
                        "message": {"type": "string"},
                        "text": {"type": "string"},
                    },
                },
            },
        },
    },
}



def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


COMPONENT_RESPONSES: dict[str, dict[str, Any]] = {
    "Error": _json_response("An error with a one-line message", {"$ref": "#/components/schemas/Error"}),
    "PresetsQueued": _json_response("Queued: the download job ids (none when already installed)", {
        "type": "object", "properties": {"jobs": {"type": "array", "items": {"type": "integer"}}},
    }),
    "NodeJobStarted": _json_response("Started: poll GET /api/nodes/job for the result", {
        "type": "object", "properties": {"job": {"$ref": "#/components/schemas/NodeJob"}},
    }),
}


def openapi_path(rule: str) -> str:
    """Flask's ``/jobs/<int:job_id>`` -> OpenAPI's ``/jobs/{job_id}``."""
    return _CONVERTER.sub(r"{\1}", rule)


def _fallback(view) -> dict[str, Any]:
    doc = (view.__doc__ or view.__name__).strip().splitlines()[0]
    return {"summary": doc, "responses": {"200": {"description": "OK"}}}


def _add_path_parameters(operation: dict[str, Any], rule) -> None:
    """Declare every path argument the docstring left out (an OpenAPI document must)."""
    parameters = operation.setdefault("parameters", [])
    declared = {p.get("name") for p in parameters if isinstance(p, dict) and p.get("in") == "path"}
    for name in sorted(rule.arguments):
        if name in declared:
            continue
        converter = type(rule._converters[name]).__name__
        kind = "integer" if converter == "IntegerConverter" else "number" if converter == "FloatConverter" else "string"
        parameters.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    if not parameters:
        del operation["parameters"]


def build_spec(app: Flask) -> dict[str, Any]:
    try:
        app_version = version("comfypod")
    except PackageNotFoundError:
        app_version = "0"
    spec = APISpec(
        title="ComfyPod admin API",
        version=app_version,
        openapi_version="3.0.3",
        info={
            "description": "Everything the admin pages do. Authenticate with `Authorization: Bearer <API token>` "
            "(Settings → API token) or a logged-in session (then send the CSRF token as X-CSRFToken)."
        },
        servers=[{"url": "/"}],
        security=[{"bearerAuth": []}, {"cookieAuth": []}],
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("cookieAuth", {"type": "apiKey", "in": "cookie", "name": "comfypod_session"})
    for name, schema in COMPONENT_SCHEMAS.items():
        spec.components.schema(name, schema)
    for name, response in COMPONENT_RESPONSES.items():
        spec.components.response(name, response)
    paths: dict[str, dict[str, Any]] = {}
    used_ids: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        view = app.view_functions[rule.endpoint]
        documented = load_operations_from_docstring(view.__doc__ or "")
        operations = paths.setdefault(openapi_path(rule.rule), {})
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            key = method.lower()
            operation = documented.get(key) or _fallback(view)
            _add_path_parameters(operation, rule)
            suffix = "" if len(rule.methods or ()) <= 3 else f"_{key}"
            operation_id = operation.get("operationId") or rule.endpoint.replace(".", "_") + suffix
            while operation_id in used_ids:  # one endpoint on two paths: ids must stay unique
                operation_id += "_"
            used_ids.add(operation_id)
            operation["operationId"] = operation_id
            operation.setdefault("tags", [rule.endpoint.split(".")[0].removesuffix("_api")])
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "Not logged in, or a wrong API token"})
            operations[key] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@api.get("/openapi.json")
def openapi():
    """The OpenAPI document of this API.
    ---
    get:
      summary: OpenAPI 3 document
      tags: [api]
      responses:
        200:
          description: The document
          content:
            application/json:
              schema: {type: object}
    """
    spec = current_app.extensions.get("comfypod.openapi")
    if spec is None:
        spec = current_app.extensions["comfypod.openapi"] = build_spec(current_app)
    return spec
