"""Issue 11, traversal and uploads: every admin route that takes a file name or path is tried with
``../``, absolute paths, URL-encoded and double-encoded forms, NUL bytes, backslashes and
symlinks that point out of the workspace. Answers are 400 or 404 (path arguments) or at least
never a 500; nothing outside the workspace is read, written or deleted (canary files are
planted there and checked byte for byte); uploads are size-limited and type-checked.

Routes come from the app's url_map, field names from the OpenAPI document and from the admin's
own source, so a new route or form field is covered without editing this file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services import credentials
from services.errors import PathError
from services.paths import within
from tests.plugins.admin import SMALL_CATALOG, make_admin_app

ADMIN_SOURCE = Path(__file__).resolve().parents[2] / "admin"
CANARY_TEXT = "CANARY-7f3e9c-outside-the-workspace"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
    b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)
# Endpoints a traversal sweep must not call: they log the client out or replace the API token.
SKIP_ENDPOINTS = {"auth.logout", "auth.login", "settings.api_token_rotate", "settings_api.api_token_rotate_api"}
# Names any route might read a path from, besides those found in the source and the OpenAPI.
BASE_FIELDS = ("path", "paths", "rel", "rels", "name", "names", "file", "filename", "source", "folder")


def _payloads(outside: Path) -> list[str]:
    """Path values that try to leave the folder a route serves (raw, before URL encoding)."""
    names = ["canary.txt", "canary.png", "canary.json", "canary.log", "canary.safetensors"]
    out: list[str] = []
    for depth in (1, 2, 3, 5):
        up = "../" * depth
        out += [f"{up}outside/{n}" for n in names[:2]]
        out.append(f"{up}etc/passwd")
    out += [
        str(outside / "canary.txt"), "/etc/passwd", "//etc/passwd", "/proc/self/environ",
        "..", "../", "./../outside/canary.txt", "loras/../../../outside/canary.safetensors",
        "..\\..\\outside\\canary.txt", "....//....//outside/canary.txt",
        "canary.png\x00.png", "\x00", "evil.png\x00/../../outside/canary.png",
        # symlinks planted inside the workspace that point out of it
        "evil.png", "evil.json", "evil.log", "loras/evil.safetensors", "evil-dir/canary.png", "evil",
        "~/.ssh/id_rsa", "%2e%2e/%2e%2e/outside/canary.txt",
    ]
    return out


def _encodings(raw: str) -> list[str]:
    """One path segment value as a URL would carry it: plain, encoded, double-encoded."""
    once = quote(raw, safe="/")
    full = quote(raw, safe="")
    double = quote(full, safe="")
    return list(dict.fromkeys([once, full, double]))


def _plant(tmp_path: Path, workspace: Path) -> dict[Path, str]:
    """Canary files outside the workspace, and symlinks to them from every served folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    canaries = {}
    for name in ("canary.txt", "canary.png", "canary.json", "canary.log", "canary.safetensors"):
        path = outside / name
        path.write_text(f"{CANARY_TEXT} {name}\n")
        canaries[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    links = {
        "output/evil.png": outside / "canary.png",
        "output/evil-dir": outside,
        "input/evil.png": outside / "canary.png",
        "workflows/evil.json": outside / "canary.json",
        "logs/evil.log": outside / "canary.log",
        "models/loras/evil.safetensors": outside / "canary.safetensors",
        "models/checkpoints/evil-dir": outside,
        "custom_nodes/evil": outside,
        "config/evil.yaml": outside / "canary.txt",
    }
    for rel, target in links.items():
        link = workspace / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    # real files inside, so a route that works at all has something to find
    (workspace / "output" / "ok.png").write_bytes(PNG)
    (workspace / "models" / "loras" / "ok.safetensors").write_bytes(b"\0" * 64)
    (workspace / "logs" / "admin.log").write_text("a line\n")
    return canaries


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def _source_fields() -> set[str]:
    """Field names the admin reads from forms, query strings and JSON bodies (from its source)."""
    pattern = re.compile(r"\.(?:get|getlist)\(\s*\"([A-Za-z_][A-Za-z0-9_]*)\"")
    found: set[str] = set()
    for file in ADMIN_SOURCE.glob("*.py"):
        found |= set(pattern.findall(file.read_text()))
    return found - {"Authorization", "HX-Request", "X-Original-URI", "token", "next", "password"}


def _openapi_fields(spec: dict) -> set[str]:
    found: set[str] = set()
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            if not isinstance(op, dict):
                continue
            found |= {p["name"] for p in op.get("parameters", []) if p.get("in") in ("query", "formData")}
            for media in (op.get("requestBody") or {}).get("content", {}).values():
                found |= set((media.get("schema") or {}).get("properties", {}))
    return found


@pytest.fixture
def swept(tmp_path, settings):
    app = make_admin_app(settings)
    settings.presets_file.write_text(SMALL_CATALOG)  # a small catalog keeps 2,000 requests fast
    canaries = _plant(tmp_path, settings.workspace)
    token = credentials.api_token(settings).reveal()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return app, client, canaries, tmp_path / "outside"


def _no_leak(response, where: str) -> None:
    body = response.get_data()
    assert CANARY_TEXT.encode() not in body, f"{where}: a file outside the workspace was served"
    assert b"root:x:0:0" not in body, f"{where}: /etc/passwd was served"
    # 502/503: ComfyUI or supervisord is not running in this in-process app, which is an answer
    assert response.status_code not in (500, 501), f"{where}: {response.status_code} {body[:300]!r}"


PATH_ARGS = {"rel", "path", "filename", "name"}
PROGRAM_AREAS = {"services", "status"}  # there ``name`` is a supervisord program, not a file


def _core(payloads: list[str]) -> list[str]:
    """A few payloads of each kind, for arguments and fields that are not file paths."""
    keep = ("../../outside/canary.txt", "/etc/passwd", "..", "canary.png\x00.png", "..\\..\\outside\\canary.txt",
            "evil.png", "evil", "loras/evil.safetensors", "evil-dir/canary.png", "%2e%2e/%2e%2e/outside/canary.txt")
    return [p for p in payloads if p in keep or p.endswith("outside/canary.txt") and p.startswith("/")]


def test_traversal_on_every_route_that_takes_a_path(swept, figures) -> None:
    app, client, canaries, outside = swept
    before = _tree(outside)
    payloads = _payloads(outside)
    core = _core(payloads)
    spec = client.get("/api/openapi.json").get_json()
    fields = sorted(set(BASE_FIELDS) | _source_fields() | _openapi_fields(spec))
    tried = 0
    routes = 0
    wrong: list[str] = []
    spent: dict[str, float] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in SKIP_ENDPOINTS:
            continue
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        converters = {a: type(rule._converters[a]).__name__ for a in rule.arguments}
        args = [a for a, kind in converters.items() if kind != "IntegerConverter"]
        area = rule.endpoint.split(".")[0].removesuffix("_api")
        pathlike = any(converters[a] == "PathConverter" or a in PATH_ARGS and area not in PROGRAM_AREAS
                       for a in args)
        routes += 1
        started = time.perf_counter()
        for method in methods:
            if args:
                # a path argument: 400 or 404 whatever the encoding; other arguments: a 4xx
                for raw in payloads if pathlike else core:
                    for encoded in _encodings(raw) if pathlike else _encodings(raw)[:2]:
                        url = rule.rule
                        for name in rule.arguments:
                            value = encoded if name in args else "1"
                            url = re.sub(rf"<(?:[a-z]+:)?{name}>", lambda _m, v=value: v, url)
                        response = client.open(url, method=method, follow_redirects=True)  # merge_slashes: 308
                        tried += 1
                        where = f"{method} {url}"
                        _no_leak(response, where)
                        strict = pathlike and (rule.rule.startswith("/api/") or method == "GET")
                        # 502/503: supervisord or ComfyUI is not running beside this in-process app
                        allowed = {400, 404, 405, 502, 503} if strict else set(range(200, 500)) | {502, 503}
                        if raw == "evil" and rule.endpoint.startswith("nodes") and method != "GET":
                            allowed.add(200)  # custom_nodes/evil is a link: removing it leaves its target
                        if response.status_code not in allowed:
                            wrong.append(f"{where}: {response.status_code} {response.get_data()[:160]!r}")
            else:
                # the payload under every name a route may read, as a query string, a form and a
                # JSON body: no 500, nothing served or touched outside
                for raw in core:
                    values = {f: raw for f in fields}
                    if method == "GET":
                        _no_leak(client.get(rule.rule, query_string=values), f"GET {rule.rule}?…={raw!r}")
                        tried += 1
                        continue
                    _no_leak(client.open(rule.rule, method=method, data=values), f"{method} {rule.rule} form {raw!r}")
                    body = {**values, **{k: [raw] for k in ("paths", "rels", "names", "ids", "presets")}}
                    _no_leak(client.open(rule.rule, method=method, json=body), f"{method} {rule.rule} json {raw!r}")
                    tried += 2
        spent[rule.rule] = time.perf_counter() - started
    print("slowest routes:", sorted(spent.items(), key=lambda kv: -kv[1])[:8])
    assert not wrong, "\n".join(wrong[:40])
    after = _tree(outside)
    assert after == before, "something outside the workspace was written or deleted"
    for path, digest in canaries.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    figures("traversal", routes=routes, payloads=len(payloads), requests=tried, failures=0,
            canaries_intact=len(canaries))


def test_symlinked_outputs_are_never_listed_served_or_zipped(swept) -> None:
    _app, client, _canaries, _outside = swept
    for url in ("/api/gallery", "/gallery", "/api/models", "/models", "/api/logs", "/logs", "/api/workflows",
                "/workflows"):
        response = client.get(url)
        _no_leak(response, url)
    for url in ("/api/gallery/zip", "/gallery/zip"):
        response = client.post(url, json={"paths": ["evil.png", "evil-dir/canary.png", "ok.png"]})
        _no_leak(response, url)
        if response.status_code == 200:
            import zipfile

            with zipfile.ZipFile(io.BytesIO(response.get_data())) as archive:
                assert all("canary" not in n and "evil" not in n for n in archive.namelist())


def test_deletes_through_symlinks_keep_the_targets(swept) -> None:
    _app, client, canaries, outside = swept
    for url in ("/api/models/files/loras/evil.safetensors", "/api/gallery/items/evil.png",
                "/api/gallery/items/evil-dir/canary.png", "/api/models/files/checkpoints/evil-dir/canary.png"):
        response = client.delete(url)
        assert response.status_code in (400, 404), (url, response.status_code)
    for url, data in (("/models/delete", {"path": "loras/evil.safetensors"}),
                      ("/gallery/delete", {"path": "evil-dir/canary.png"}),
                      ("/workflows/delete", {"name": "evil.json", "source": "library"})):
        _no_leak(client.post(url, data=data), url)
    for path, digest in canaries.items():
        assert path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest


# ---- uploads ------------------------------------------------------------------------------------
def _upload_routes(app) -> tuple[list[str], list[str]]:
    """The POST routes that take a file, and every ``request.files`` field the admin reads."""
    pattern = re.compile(r"request\.files\.get\(\"([a-z_]+)\"\)")
    fields = sorted({f for file in ADMIN_SOURCE.glob("*.py") for f in pattern.findall(file.read_text())})
    routes = sorted(rule.rule for rule in app.url_map.iter_rules()
                    if "POST" in (rule.methods or ()) and ("upload" in rule.rule or "import" in rule.rule))
    return routes, fields


def _post_files(client, url: str, fields: list[str], data: bytes, name: str) -> int:
    """POST ``data`` as ``name`` under every file field at once; return the status."""
    boundary = "comfypod-reliability-boundary"
    safe = name.replace('"', "%22")
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{safe}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        for field in fields
    ) + f"--{boundary}--\r\n".encode()
    # a bytes body (not a dict of files) keeps the test client from spooling it to a temp file
    with client.post(url, data=body, content_type=f"multipart/form-data; boundary={boundary}") as response:
        _no_leak(response, f"POST {url} {name!r}")
        return response.status_code


def test_uploads_are_size_limited_and_type_checked(swept, figures) -> None:
    app, client, _canaries, outside = swept
    settings = app.extensions["comfypod.settings"]
    before = _tree(outside)
    routes, fields = _upload_routes(app)
    assert {"/workflows/upload", "/api/workflows/upload", "/nodes/import"} <= set(routes)
    tried = 0
    huge = b"{" + b" " * (70 * 1024 * 1024) + b"}"
    for url in routes:
        # far too big: refused before the app reads it (413), never stored
        assert _post_files(client, url, fields, huge, "big.json") in (400, 413), url
        # not the right type: a PNG named .json, an HTML page, a binary blob
        for data, name in ((PNG, "image.json"), (b"<html>hi</html>", "page.json"), (b"\xff\xfe\x00", "x.bin")):
            status = _post_files(client, url, fields, data, name)
            if url.startswith("/api/"):
                assert 400 <= status < 500, (url, name, status)
            tried += 1
        tried += 1
    # a good workflow under names that try to leave the folder lands inside it
    good = json.dumps({"1": {"class_type": "SaveImage", "inputs": {}}}).encode()
    for name in ("../../outside/x.json", "/etc/cron.d/x.json", "..\\..\\outside\\x.json", "x\x00.json"):
        status = _post_files(client, "/api/workflows/upload", fields, good, name)
        assert status < 400 or "\x00" in name and status == 400, (name, status)
        tried += 1
    del huge
    assert _tree(outside) == before
    for stored in settings.workflows_dir.rglob("*"):
        if not stored.is_symlink():
            assert stored.resolve().is_relative_to(settings.workflows_dir.resolve()), stored
    figures("uploads", upload_routes=len(routes), uploads_tried=tried, failures=0)


def test_issue_11_admin_refuses_bodies_over_its_limit(swept) -> None:
    """Regression (issue 11): MAX_CONTENT_LENGTH was None, so the admin read a body of any size
    into memory or a temp file before a route could refuse it."""
    from admin import MAX_BODY_BYTES

    app, client, _canaries, _outside = swept
    assert app.config["MAX_CONTENT_LENGTH"] == MAX_BODY_BYTES
    too_big = b"x" * (MAX_BODY_BYTES + 1)
    status = _post_files(client, "/api/workflows/upload", ["file"], too_big, "big.json")
    assert status == 413
    with client.put("/api/settings/presets-yaml", data=too_big, content_type="text/plain") as response:
        assert response.status_code in (400, 413)


# ---- the guard itself ---------------------------------------------------------------------------
_SEGMENTS = st.sampled_from(["..", ".", "", "a", "b.png", "...", "..\\", "%2e%2e", "\x00", "~", "/", "evil-dir",
                             "canary.png", "loras"])


@hsettings(max_examples=300, deadline=None, database=None)
@given(parts=st.lists(_SEGMENTS, max_size=8), text=st.text(max_size=20))
def test_within_never_returns_a_path_outside(tmp_path_factory, parts, text) -> None:
    base = tmp_path_factory.getbasetemp() / "within-prop"
    if not base.exists():
        (base / "inside").mkdir(parents=True)
        (base / "inside" / "evil-dir").symlink_to(base)
    root = (base / "inside").resolve()
    for candidate in ("/".join(parts), text, "/".join(parts) + text):
        try:
            result = within(base / "inside", candidate)
        except PathError:
            continue
        assert result == root or root in result.parents, (candidate, result)
