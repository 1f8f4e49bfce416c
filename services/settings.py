"""The pod's settings: the only module that reads the environment.

``load_settings(environ)`` turns environment variables into one frozen :class:`Settings`.
A bad value raises :class:`SettingsError` with one line naming the variable and what is allowed.
Every variable maps one to one to a lower-case field of the same name (see ``VARIABLES``).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import converters
from services.secret import Secret

# Old variable names from the reference image, still accepted: old name -> new name.
ALIASES: dict[str, str] = {
    "ENABLE_UNIFIED_DASHBOARD": "ENABLE_ADMIN",
    "ENABLE_PRESET_MANAGER": "ENABLE_ADMIN",
}

SAGE_MODES = ("auto", "on", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _bool(name: str, value: str) -> bool:
    return converters.boolean(name, value)


def _str(name: str, value: str) -> str:
    return value


def _secret(name: str, value: str) -> Secret:
    return Secret(value.strip())


def _int(lo: int, hi: int) -> Callable[[str, str], int]:
    return lambda name, value: converters.integer(name, value, minimum=lo, maximum=hi)


def _choice(*allowed: str) -> Callable[[str, str], str]:
    return lambda name, value: converters.choice(name, value, allowed)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its converter, default (a raw string) and one-line help."""

    name: str
    convert: Callable[[str, str], Any]
    default: str | None
    help: str

    @property
    def field(self) -> str:
        return self.name.lower()


def _default_run_dir() -> str:
    return str(Path(tempfile.gettempdir()) / f"comfypod-{os.getuid()}")


# The table of every variable the pod takes. README's table is generated from this.
VARIABLES: tuple[Variable, ...] = (
    Variable("WORKSPACE", converters.path, "/workspace", "the persistent volume (RunPod serverless: /runpod-volume)"),
    Variable("APP_DIR", converters.path, "/app", "where the image keeps ComfyPod (supervisor.d/, nginx/, presets/)"),
    Variable("RUN_DIR", converters.path, None, "runtime files: sockets, pid files, rendered configs (default: a folder in /tmp)"),
    Variable("COMFYUI_DIR", converters.path, None, "ComfyUI's source folder (default: APP_DIR/ComfyUI)"),
    Variable("COMFYUI_PYTHON", converters.path, None, "the interpreter that runs ComfyUI (default: this one)"),
    Variable("COMFYUI_ARGS", converters.arguments, "", "extra arguments appended to ComfyUI's command line"),
    Variable("PRESET_DOWNLOAD", converters.id_list, "", "video preset ids to install at start, comma separated"),
    Variable("IMAGE_PRESET_DOWNLOAD", converters.id_list, "", "image preset ids to install at start"),
    Variable("AUDIO_PRESET_DOWNLOAD", converters.id_list, "", "audio preset ids to install at start"),
    Variable("PRESETS_UPDATE_URL", converters.url, "", "catalog that `comfypod presets update` merges when given no URL or file (default: none)"),
    Variable("ACCESS_PASSWORD", _secret, "", "the one login for every port (default: generated, printed once)"),
    Variable("HF_TOKEN", _secret, "", "Hugging Face token, sent only to Hugging Face hosts"),
    Variable("CIVITAI_TOKEN", _secret, "", "Civitai token, sent only to civitai.com"),
    Variable("PUBLIC_KEY", _str, "", "SSH public key(s) allowed to log in as root"),
    Variable("TIME_ZONE", converters.timezone, "Etc/UTC", "IANA time zone for logs and file times"),
    Variable("ENABLE_COMFYUI", _bool, "true", "run ComfyUI"),
    Variable("ENABLE_ADMIN", _bool, "true", "run the admin web app (aliases: ENABLE_UNIFIED_DASHBOARD, ENABLE_PRESET_MANAGER)"),
    Variable("ENABLE_DOWNLOADER", _bool, "true", "run the model download worker"),
    Variable("ENABLE_NGINX", _bool, "true", "run nginx, the one public front door"),
    Variable("ENABLE_CODE_SERVER", _bool, "true", "run code-server (VS Code in the browser)"),
    Variable("ENABLE_JUPYTER", _bool, "true", "run JupyterLab"),
    Variable("ENABLE_SSH", _bool, "true", "run sshd (only when PUBLIC_KEY is set)"),
    Variable("LISTEN_ADDRESS", converters.host, "0.0.0.0", "address nginx listens on for the public ports"),
    Variable("TRUSTED_PROXIES", converters.networks, "", "addresses or CIDR blocks of proxies in front of the pod whose X-Forwarded-For names the real client (the login throttle counts per client)"),
    Variable("COMFYUI_PORT", converters.port, "3000", "public port of ComfyUI"),
    Variable("ADMIN_PORT", converters.port, "8082", "public port of the admin"),
    Variable("CODE_SERVER_PORT", converters.port, "8081", "public port of code-server"),
    Variable("JUPYTER_PORT", converters.port, "8888", "public port of JupyterLab"),
    Variable("SSH_PORT", converters.port, "22", "port sshd listens on"),
    Variable("COMFYUI_INTERNAL_PORT", converters.port, "18188", "loopback port ComfyUI listens on"),
    Variable("ADMIN_INTERNAL_PORT", converters.port, "18082", "loopback port gunicorn listens on"),
    Variable("CODE_SERVER_INTERNAL_PORT", converters.port, "18081", "loopback port code-server listens on"),
    Variable("JUPYTER_INTERNAL_PORT", converters.port, "18888", "loopback port JupyterLab listens on"),
    Variable("SAGE_ATTENTION", _choice(*SAGE_MODES), "auto", "SageAttention: auto (only where its self-test passed), on, off"),
    Variable("COMFYUI_HEALTH_FAILURES", _int(1, 100), "3", "failed /system_stats probes (5 s apart) before a hung ComfyUI is restarted"),
    Variable("COMFYUI_HEALTH_GRACE", _int(0, 3600), "90", "seconds after ComfyUI starts before the health probe may restart it"),
    Variable("DOWNLOAD_CONCURRENCY", _int(1, 16), "3", "files downloaded at once"),
    Variable("DOWNLOAD_CONNECTIONS", _int(1, 32), "8", "ranged connections per large file"),
    Variable("ADMIN_WORKERS", _int(1, 16), "2", "gunicorn worker processes for the admin"),
    Variable("LOG_LEVEL", _choice(*LOG_LEVELS), "info", "log level of ComfyPod's own programs"),
    Variable("LINK_SUPERVISOR_CONFIG", _bool, "true", "link the rendered supervisord.conf where supervisorctl looks by default"),
)

_BY_FIELD = {v.field: v for v in VARIABLES}


@dataclass(frozen=True)
class Settings:
    workspace: Path
    app_dir: Path
    run_dir: Path
    comfyui_dir: Path
    comfyui_python: Path
    comfyui_args: tuple[str, ...]
    preset_download: tuple[str, ...]
    image_preset_download: tuple[str, ...]
    audio_preset_download: tuple[str, ...]
    presets_update_url: str
    access_password: Secret
    hf_token: Secret
    civitai_token: Secret
    public_key: str
    time_zone: str
    enable_comfyui: bool
    enable_admin: bool
    enable_downloader: bool
    enable_nginx: bool
    enable_code_server: bool
    enable_jupyter: bool
    enable_ssh: bool
    listen_address: str
    trusted_proxies: tuple[str, ...]
    comfyui_port: int
    admin_port: int
    code_server_port: int
    jupyter_port: int
    ssh_port: int
    comfyui_internal_port: int
    admin_internal_port: int
    code_server_internal_port: int
    jupyter_internal_port: int
    sage_attention: str
    comfyui_health_failures: int
    comfyui_health_grace: int
    download_concurrency: int
    download_connections: int
    admin_workers: int
    log_level: str
    link_supervisor_config: bool
    notices: tuple[str, ...] = ()
    search_path: str = os.defpath  # the PATH this pod was started with (to find binaries)

    # ---- derived locations (no I/O) -------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.workspace / "models"

    @property
    def output_dir(self) -> Path:
        return self.workspace / "output"

    @property
    def input_dir(self) -> Path:
        return self.workspace / "input"

    @property
    def workflows_dir(self) -> Path:
        return self.workspace / "workflows"

    @property
    def custom_nodes_dir(self) -> Path:
        return self.workspace / "custom_nodes"

    @property
    def config_dir(self) -> Path:
        return self.workspace / "config"

    @property
    def logs_dir(self) -> Path:
        return self.workspace / "logs"

    @property
    def state_dir(self) -> Path:
        """Databases and generated secrets that must survive the container."""
        return self.workspace / "config" / "state"

    @property
    def presets_file(self) -> Path:
        return self.config_dir / "presets.yaml"

    @property
    def queue_db(self) -> Path:
        return self.state_dir / "downloads.sqlite3"

    @property
    def supervisord_conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def comfyui_url(self) -> str:
        return f"http://127.0.0.1:{self.comfyui_internal_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_internal_port}"

    @property
    def venv_bin(self) -> Path:
        return Path(sys.executable).parent

    def with_changes(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def environment(self) -> dict[str, str]:
        """Normalized values for child processes: every variable set, booleans as true/false."""
        env: dict[str, str] = {}
        for var in VARIABLES:
            value = getattr(self, var.field)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, Secret):
                text = value.reveal()
            elif isinstance(value, tuple):
                text = shlex.join(value) if var.name == "COMFYUI_ARGS" else ",".join(value)
            else:
                text = str(value)
            env[var.name] = text
        env["COMFYPOD_BIN"] = str(self.venv_bin / "comfypod")
        env["VENV_BIN"] = str(self.venv_bin)
        env["HF_HOME"] = str(self.workspace / ".cache" / "huggingface")
        env["PIP_CACHE_DIR"] = str(self.workspace / ".cache" / "pip")
        env["TZ"] = self.time_zone
        return env


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every variable from ``environ`` (default: ``os.environ``) into a frozen Settings."""
    env = dict(os.environ if environ is None else environ)
    notices: list[str] = []
    for old, new in ALIASES.items():
        if old in env:
            if new in env:
                notices.append(f"{old} is ignored because {new} is set")
            else:
                env[new] = env[old]
                notices.append(f"{old} is an old name: read it as {new}={env[old]}")
    values: dict[str, Any] = {}
    for var in VARIABLES:
        raw = env.get(var.name)
        if raw is None or (raw.strip() == "" and var.default not in (None, "")):
            raw = var.default
        values[var.field] = None if raw is None else var.convert(var.name, raw)
    if values["run_dir"] is None:
        values["run_dir"] = Path(_default_run_dir())
    if values["comfyui_dir"] is None:
        values["comfyui_dir"] = values["app_dir"] / "ComfyUI"
    if values["comfyui_python"] is None:
        values["comfyui_python"] = Path(sys.executable)
    _check_ports(values)
    return Settings(**values, notices=tuple(notices), search_path=env.get("PATH", os.defpath))


def _check_ports(values: dict[str, Any]) -> None:
    seen: dict[int, str] = {}
    for var in VARIABLES:
        if not var.name.endswith("_PORT"):
            continue
        port = values[var.field]
        if port in seen:
            raise converters.SettingsError(
                f"{var.name}={port} is not valid: expected a port not already used by {seen[port]}"
            )
        seen[port] = var.name


def process_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment this process got, to hand on to child processes."""
    return dict(os.environ if environ is None else environ)


def variable(field: str) -> Variable:
    return _BY_FIELD[field]
