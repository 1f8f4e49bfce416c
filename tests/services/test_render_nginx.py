"""services.render.render_nginx: the rendered nginx.conf passes `nginx -t` and has one server
per enabled public port, each behind auth_request to the admin."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from services import render
from services.settings import Settings

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"



def write(settings: Settings, text: str | None = None) -> Path:
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    path = settings.run_dir / "nginx.conf"
    path.write_text(text if text is not None else render.render_nginx(settings))
    return path


def nginx_test(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([NGINX, "-e", "stderr", "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)


def servers(text: str) -> dict[int, str]:
    """Public port -> the text of its server block."""
    blocks = re.split(r"\n    server \{\n", text)[1:]
    result = {}
    for block in blocks:
        port = int(re.search(r"listen \S+:(\d+);", block).group(1))
        result[port] = block
    return result


def test_rendered_config_passes_nginx_t(settings):
    result = nginx_test(write(settings))
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_every_toggle_combination_passes_nginx_t(make_settings):
    settings = make_settings(
        ENABLE_JUPYTER="false", ENABLE_CODE_SERVER="false", LISTEN_ADDRESS="::", COMFYUI_PORT="3100"
    )
    result = nginx_test(write(settings))
    assert result.returncode == 0, result.stderr


def test_trusted_proxies_set_the_real_client_address(make_settings):
    settings = make_settings(TRUSTED_PROXIES="100.64.0.0/10, 10.0.0.7")
    text = render.render_nginx(settings)
    assert "set_real_ip_from 100.64.0.0/10;" in text and "set_real_ip_from 10.0.0.7/32;" in text
    assert "real_ip_header X-Forwarded-For;" in text and "real_ip_recursive on;" in text
    result = nginx_test(write(settings))
    assert result.returncode == 0, result.stderr
    assert "set_real_ip_from" not in render.render_nginx(make_settings())


def test_one_server_per_enabled_port(settings):
    text = render.render_nginx(settings)
    blocks = servers(text)
    expected = {
        settings.comfyui_port: settings.comfyui_internal_port,
        settings.admin_port: settings.admin_internal_port,
        settings.code_server_port: settings.code_server_internal_port,
        settings.jupyter_port: settings.jupyter_internal_port,
    }
    assert set(blocks) == set(expected)
    for public, internal in expected.items():
        block = blocks[public]
        assert f"listen {settings.listen_address}:{public};" in block
        assert f"proxy_pass http://127.0.0.1:{internal};" in block
        assert "auth_request /_auth/verify;" in block
        assert f"proxy_pass http://127.0.0.1:{settings.admin_internal_port}/_auth/verify;" in block
        assert "error_page 502 503 504 = @starting;" in block


def test_start_up_page_names_the_program_of_each_port(settings):
    blocks = servers(render.render_nginx(settings))
    assert "/_status/comfyui?" in blocks[settings.comfyui_port]
    assert "/_status/jupyter?" in blocks[settings.jupyter_port]
    assert "/_status/code-server?" in blocks[settings.code_server_port]
    assert "/_status/admin?" in blocks[settings.admin_port]


def test_disabled_service_has_no_server(make_settings):
    settings = make_settings(ENABLE_JUPYTER="false", ENABLE_CODE_SERVER="false")
    blocks = servers(render.render_nginx(settings))
    assert set(blocks) == {settings.comfyui_port, settings.admin_port}


def test_only_loopback_upstreams(settings):
    text = render.render_nginx(settings)
    upstreams = re.findall(r"proxy_pass http://([^/;:]+):", text)
    assert upstreams and set(upstreams) == {"127.0.0.1"}


def test_ipv6_listen_address_is_bracketed(make_settings):
    settings = make_settings(LISTEN_ADDRESS="::")
    assert f"listen [::]:{settings.comfyui_port};" in render.render_nginx(settings)


def test_paths_live_under_run_dir_and_logs(settings):
    text = render.render_nginx(settings)
    assert f"pid {settings.run_dir}/nginx.pid;" in text
    assert f"access_log {settings.logs_dir}/nginx-access.log" in text
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{kind}_temp_path {settings.run_dir}/" in text
    assert "daemon off;" in text


def test_access_log_never_records_the_query_string(settings):
    text = render.render_nginx(settings)
    log_format = text[text.index("log_format") : text.index("access_log")]
    for variable in ("$request ", "$request_uri", "$args", "$query_string", "$arg_"):
        assert variable not in log_format


def test_user_root_only_when_root(settings):
    template = render._environment(settings.app_dir / "nginx").get_template("nginx.conf.j2")
    assert "\nuser root;" in template.render(settings=settings, is_root=True)
    assert "\nuser " not in template.render(settings=settings, is_root=False)


def test_websockets_streams_and_uploads(settings):
    text = render.render_nginx(settings)
    assert "map $http_upgrade $connection_upgrade" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_http_version 1.1;" in text
    assert "proxy_buffering off;" in text
    assert "proxy_request_buffering off;" in text
    assert "client_max_body_size 0;" in text
    assert re.search(r"proxy_read_timeout (\d+)s;", text).group(1) == "86400"


def test_write_configs_writes_nginx_conf(settings):
    written = render.write_configs(settings)
    assert settings.run_dir / "nginx.conf" in written
    assert (settings.run_dir / "nginx.conf").read_text() == render.render_nginx(settings)
