"""nginx in front of the real mesh (`comfypod up`): one login for every port, tokens for
scripts, websockets, start-up pages, and nothing but nginx listening on a public address."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest
import requests
import websocket

pytestmark = pytest.mark.e2e

SERVICES = ("admin", "comfyui", "code-server")
# What each service's own page says once nginx lets the request through.
LANDING = {"admin": "ComfyPod", "comfyui": "fake ComfyUI", "code-server": "code-server stand-in"}
TINY_PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}


def ws_url(http_url: str, path: str) -> str:
    return "ws" + http_url.removeprefix("http") + path


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


def open_ws(url: str, **kwargs) -> websocket.WebSocket:
    return websocket.create_connection(url, timeout=15, **kwargs)


def ws_status(url: str, **kwargs) -> int:
    """The HTTP status a websocket handshake was refused with (101 when it was accepted)."""
    try:
        open_ws(url, **kwargs).close()
    except websocket.WebSocketBadStatusException as err:
        return err.status_code
    return 101


def receive_json(sock: websocket.WebSocket, want, timeout: float = 20.0) -> list[dict]:
    """Read text frames until ``want(message)`` is true; return every message read."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sock.recv()
        if isinstance(frame, bytes):
            continue
        message = json.loads(frame)
        seen.append(message)
        if want(message):
            return seen
    raise AssertionError(f"no wanted message in {timeout}s; got {[m.get('type') for m in seen]}")


def wait_page(session: requests.Session, url: str, status: int, text: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        response = session.get(url, allow_redirects=False, timeout=10)
        if response.status_code == status and text in response.text:
            return response
        last = (response.status_code, response.text[:300])
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} with {text!r} in {timeout}s; last {last}")


def check_rendered_config_passes_nginx_t(mesh):
    conf = mesh.settings.run_dir / "nginx.conf"
    result = subprocess.run(
        ["nginx", "-e", "stderr", "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def check_one_login_opens_every_port(mesh):
    for service in SERVICES:
        base = mesh.url(service)
        # anonymous: a page is sent to the login page on its own port, with the way back
        response = requests.get(base + "/", allow_redirects=False, timeout=10)
        assert response.status_code == 302, (service, response.status_code, response.text[:200])
        location = response.headers["Location"]
        assert location.startswith("/_auth/login?"), location
        assert parse_qs(urlsplit(location).query)["next"] == ["/"]
        # the login page itself is served on every port, styled from that same port
        page = requests.get(base + "/_auth/login", timeout=10)
        assert page.status_code == 200 and 'name="password"' in page.text
        for href in re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text):
            css = requests.get(base + href, timeout=10)
            assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css"), (service, href)

    with mesh.login("comfyui") as session:
        for service in SERVICES:
            wait_page(session, mesh.url(service) + "/", 200, LANDING[service])


def check_next_keeps_the_whole_query_string(mesh):
    target = "/view?filename=a b.png&type=output&subfolder="
    response = requests.get(mesh.url("comfyui") + target, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query, keep_blank_values=True)
    assert query["next"] == ["/view?filename=a%20b.png&type=output&subfolder="]


def check_scripts_get_401_not_a_login_page(mesh):
    comfyui = mesh.url("comfyui")
    assert requests.get(comfyui + "/api/system_stats", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert requests.get(comfyui + "/", headers=wrong, allow_redirects=False, timeout=10).status_code == 401
    assert requests.get(comfyui + "/?token=nope", allow_redirects=False, timeout=10).status_code == 401
    good = {"Authorization": f"Bearer {mesh.api_token}"}
    for service in SERVICES:
        response = requests.get(mesh.url(service) + "/", headers=good, timeout=10)
        assert response.status_code == 200, service
    stats = requests.get(comfyui + "/api/system_stats", headers=good, timeout=10)
    assert stats.status_code == 200 and "system" in stats.json()
    response = requests.get(comfyui + "/api/system_stats", params={"token": mesh.api_token}, timeout=10)
    assert response.status_code == 200


def check_comfyui_websocket(mesh):
    comfyui = mesh.url("comfyui")
    client_id = uuid.uuid4().hex
    # anonymous, wrong token: refused at the handshake with a plain 401
    assert ws_status(ws_url(comfyui, f"/ws?clientId={client_id}")) == 401
    assert ws_status(ws_url(comfyui, f"/ws?clientId={client_id}&token=wrong")) == 401
    # ?token= for clients that cannot set headers
    sock = open_ws(ws_url(comfyui, f"/ws?clientId={client_id}&token={mesh.api_token}"))
    try:
        first = receive_json(sock, lambda m: m["type"] == "status")
        assert first[-1]["data"]["sid"] == client_id
        queued = requests.post(
            comfyui + "/api/prompt",
            json={"prompt": TINY_PROMPT, "client_id": client_id},
            headers={"Authorization": f"Bearer {mesh.api_token}"},
            timeout=10,
        )
        assert queued.status_code == 200, queued.text
        prompt_id = queued.json()["prompt_id"]
        seen = receive_json(sock, lambda m: m["type"] == "execution_success")
        assert seen[-1]["data"]["prompt_id"] == prompt_id
        assert {"execution_start", "executing"} <= {m["type"] for m in seen}
    finally:
        sock.close()
    # a browser session's cookie opens it too
    with mesh.login("comfyui") as session:
        sock = open_ws(ws_url(comfyui, "/ws"), header=[f"Cookie: {cookie_header(session)}"])
        try:
            assert receive_json(sock, lambda m: m["type"] == "status")
        finally:
            sock.close()


def check_code_server_websocket(mesh):
    with mesh.login("code-server") as session:
        sock = open_ws(ws_url(mesh.url("code-server"), "/ws"), header=[f"Cookie: {cookie_header(session)}"])
        try:
            sock.send("hello")
            assert sock.recv() == "echo:hello"
        finally:
            sock.close()


def check_big_upload_streams_through(mesh):
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB: far over nginx's default 1 MiB limit
    response = requests.post(
        mesh.url("comfyui") + "/api/upload/image",
        files={"image": ("big.png", data, "image/png")},
        data={"overwrite": "true"},
        headers={"Authorization": f"Bearer {mesh.api_token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:300]
    assert (mesh.settings.input_dir / "big.png").stat().st_size == len(data)


def check_logs_hold_no_token(mesh):
    mesh.stop()  # nginx flushes its buffered access log on the way out
    token = mesh.api_token
    for name in ("nginx.log", "nginx-access.log"):
        path = mesh.settings.logs_dir / name
        assert path.exists(), name
        assert token not in path.read_text(errors="replace"), name
    assert "/ws" in (mesh.settings.logs_dir / "nginx-access.log").read_text()


def login_as(mesh, forwarded_for: str, password: str) -> int:
    """Status of a login through nginx by a client claiming ``X-Forwarded-For: forwarded_for``."""
    from tests.plugins.mesh import _csrf_from

    headers = {"X-Forwarded-For": forwarded_for}
    with requests.Session() as session:
        page = session.get(f"{mesh.url('admin')}/_auth/login", headers=headers, timeout=10)
        answer = session.post(f"{mesh.url('admin')}/_auth/login", headers=headers, allow_redirects=False,
                              data={"password": password, "csrf_token": _csrf_from(page.text), "next": "/"},
                              timeout=20)
    return answer.status_code


def check_forwarded_for_is_ignored_without_trusted_proxies(mesh):
    """Without TRUSTED_PROXIES a client cannot dodge the login throttle with a made-up header:
    every failure counts against the address nginx sees. (Leaves 127.0.0.1 throttled: run last.)"""
    statuses = [login_as(mesh, f"203.0.113.{n}", "wrong") for n in range(1, 7)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429, statuses


def check_trusted_proxy_counts_each_client(mesh):
    """TRUSTED_PROXIES=127.0.0.1: behind that proxy each X-Forwarded-For client has its own count,
    so one client's failures do not lock the owner out (one shared proxy address on RunPod)."""
    statuses = [login_as(mesh, "203.0.113.9", "wrong") for _ in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 429, statuses
    assert login_as(mesh, "198.51.100.4", mesh.password) == 302
    assert login_as(mesh, "203.0.113.9", mesh.password) == 429


def test_front_door(mesh):
    """One mesh, every check in turn (a mesh takes seconds to start and stop)."""
    check_rendered_config_passes_nginx_t(mesh)
    check_one_login_opens_every_port(mesh)
    check_next_keeps_the_whole_query_string(mesh)
    check_scripts_get_401_not_a_login_page(mesh)
    check_comfyui_websocket(mesh)
    check_code_server_websocket(mesh)
    check_big_upload_streams_through(mesh)
    check_forwarded_for_is_ignored_without_trusted_proxies(mesh)
    check_logs_hold_no_token(mesh)


def test_start_up_pages(mesh_factory):
    mesh = mesh_factory(FAKE_COMFYUI_STARTUP_DELAY="8", TRUSTED_PROXIES="127.0.0.1")
    check_trusted_proxy_counts_each_client(mesh)
    comfyui = mesh.url("comfyui") + "/"
    with mesh.login("comfyui") as session:
        # stopped by hand: the port stays up and says so
        mesh.supervisor.stop("comfyui")
        page = wait_page(session, comfyui, 503, "ComfyUI is stopped")
        assert 'http-equiv="refresh"' in page.text
        # the start-up page is no way around the login
        assert requests.get(comfyui, allow_redirects=False, timeout=10).status_code == 302

        # started again, its process runs but does not listen for 8 s: a self-refreshing 503
        mesh.supervisor.start("comfyui", wait=False)
        page = wait_page(session, comfyui, 503, "ComfyUI is starting")
        assert page.headers["Retry-After"] == "3"
        assert '<meta http-equiv="refresh" content="3">' in page.text
        wait_page(session, comfyui, 200, "fake ComfyUI")

        mesh.supervisor.stop("code-server")
        wait_page(session, mesh.url("code-server") + "/", 503, "code-server is stopped")

        # the admin itself is down: nginx's own static page, on every port
        mesh.supervisor.stop("admin")
        for service in ("comfyui", "admin", "code-server"):
            page = wait_page(session, mesh.url(service) + "/", 503, "ComfyPod is starting")
            assert 'http-equiv="refresh"' in page.text
        anonymous = requests.get(comfyui, allow_redirects=False, timeout=10)
        assert anonymous.status_code == 503 and "fake ComfyUI" not in anonymous.text

        # back up: the same session cookie works again
        mesh.supervisor.start("admin")
        wait_page(session, mesh.url("admin") + "/", 200, LANDING["admin"])
        wait_page(session, mesh.url("code-server") + "/", 503, "code-server is stopped")


def execute(sock: websocket.WebSocket, code: str) -> str:
    """Run ``code`` on a Jupyter kernel's channels websocket; return its text/plain result."""
    msg_id = uuid.uuid4().hex
    sock.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "session": uuid.uuid4().hex,
                    "username": "test",
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
                "buffers": [],
            }
        )
    )
    found = receive_json(
        sock,
        lambda m: m.get("msg_type") in ("execute_result", "error") and m["parent_header"].get("msg_id") == msg_id,
        timeout=60,
    )
    result = found[-1]
    assert result["msg_type"] == "execute_result", result["content"]
    return result["content"]["data"]["text/plain"]


def public_listeners(mesh) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every socket in the mesh's process tree that listens on
    something other than loopback."""
    root = psutil.Process(mesh.process.pid)
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = proc.name()
            connections = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for conn in connections:
            listening = conn.status == psutil.CONN_LISTEN or (conn.type == 2 and not conn.raddr)  # SOCK_DGRAM
            if listening and not ipaddress.ip_address(conn.laddr.ip).is_loopback:
                found.append((name, conn.laddr.ip, conn.laddr.port))
    return found


def test_jupyter_kernel_behind_nginx_and_only_nginx_listens_publicly(mesh_factory):
    mesh = mesh_factory(LISTEN_ADDRESS="0.0.0.0", ENABLE_JUPYTER="true", timeout=90)
    jupyter = mesh.url("jupyter")
    with mesh.login("jupyter") as session:
        lab = wait_page(session, jupyter + "/lab", 200, "JupyterLab", timeout=60)
        assert "jupyter-config-data" in lab.text
        kernel = session.post(jupyter + "/api/kernels", json={"name": "python3"}, timeout=30)
        assert kernel.status_code == 201, kernel.text
        kernel_id = kernel.json()["id"]
        sock = open_ws(
            ws_url(jupyter, f"/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"),
            header=[f"Cookie: {cookie_header(session)}"],
        )
        try:
            assert execute(sock, "1+1") == "2"
            # a kernel is running now: its ports are part of the picture below
            listeners = public_listeners(mesh)
        finally:
            sock.close()
        terminal = session.post(jupyter + "/api/terminals", timeout=30)
        assert terminal.status_code == 200, terminal.text
        name = terminal.json()["name"]
        term = open_ws(ws_url(jupyter, f"/terminals/websocket/{name}"), header=[f"Cookie: {cookie_header(session)}"])
        try:
            term.send(json.dumps(["stdin", "echo hi-$((40+2))\r"]))
            deadline, output = time.monotonic() + 30, ""
            while "hi-42" not in output and time.monotonic() < deadline:
                kind, *rest = json.loads(term.recv())
                if kind == "stdout":
                    output += rest[0]
            assert "hi-42" in output
        finally:
            term.close()
        session.delete(jupyter + f"/api/kernels/{kernel_id}", timeout=30)
        session.delete(jupyter + f"/api/terminals/{name}", timeout=30)

    # anonymous on Jupyter's port: login, never Jupyter
    page = requests.get(jupyter + "/lab", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and page.headers["Location"].startswith("/_auth/login?next=")
    assert requests.get(jupyter + "/api/kernels", allow_redirects=False, timeout=10).status_code == 401
    assert ws_status(ws_url(jupyter, f"/api/kernels/{kernel_id}/channels")) == 401

    names = {name for name, _ip, _port in listeners}
    ports = {port for _name, _ip, port in listeners}
    assert names <= {"nginx", "sshd"}, listeners
    s = mesh.settings
    assert {s.comfyui_port, s.admin_port, s.code_server_port, s.jupyter_port} <= ports, listeners
