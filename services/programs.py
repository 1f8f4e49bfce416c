"""The supervisord programs: their names, the binary each needs, and how the thin ones start.

``PROGRAMS`` is the one table of programs; program ``X`` has ``supervisor.d/X.conf``,
``logs/X.log``, ``ENABLE_X`` and ``settings.enable_x``. ``missing_binaries`` tells which enabled
programs cannot start here (say code-server on a laptop) so start-up turns them off with one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from services.settings import Settings


@dataclass(frozen=True)
class Program:
    name: str
    title: str
    find: Callable[[Settings], str | None]  # returns None when the program can run, else why not
    toggle: str = ""  # the ENABLE_* suffix when it differs from the name (sshd: ENABLE_SSH)

    @property
    def enable_field(self) -> str:
        return "enable_" + (self.toggle or self.name).replace("-", "_")

    @property
    def enable_variable(self) -> str:
        return self.enable_field.upper()


def _which(binary: str, hint: str) -> Callable[[Settings], str | None]:
    def find(settings: Settings) -> str | None:
        if shutil.which(binary, path=_search_path(settings)):
            return None
        return f"{binary} is not installed ({hint})"

    return find


def _search_path(settings: Settings) -> str:
    return os.pathsep.join([str(settings.venv_bin), settings.search_path, "/usr/sbin", "/usr/local/sbin"])


def _find_comfyui(settings: Settings) -> str | None:
    if (settings.comfyui_dir / "main.py").is_file():
        return None
    return f"ComfyUI is not installed in {settings.comfyui_dir} (run `make comfyui` or set COMFYUI_DIR)"


def _find_sshd(settings: Settings) -> str | None:
    if not settings.public_key.strip():
        return "PUBLIC_KEY is not set, so nobody could log in over SSH"
    return _which("sshd", "apt-get install openssh-server")(settings)


PROGRAMS: tuple[Program, ...] = (
    Program("comfyui", "ComfyUI", _find_comfyui),
    Program("admin", "Admin", _which("gunicorn", "pip install gunicorn")),
    Program("downloader", "Download worker", _which("comfypod", "pip install the comfypod package")),
    Program("nginx", "nginx", _which("nginx", "apt-get install nginx")),
    Program("code-server", "code-server", _which("code-server", "see https://coder.com/docs/code-server/install")),
    Program("jupyter", "JupyterLab", _which("jupyter-lab", "pip install jupyterlab")),
    Program("sshd", "SSH", _find_sshd, toggle="ssh"),
)

PROGRAM_NAMES = tuple(p.name for p in PROGRAMS)


def program(name: str) -> Program:
    for item in PROGRAMS:
        if item.name == name:
            return item
    raise KeyError(name)


def missing_binaries(settings: Settings) -> dict[str, str]:
    """Enabled programs that cannot run here, with the reason (one line each)."""
    missing = {}
    for item in PROGRAMS:
        if getattr(settings, item.enable_field):
            reason = item.find(settings)
            if reason:
                missing[item.name] = reason
    return missing


def disable_missing(settings: Settings) -> tuple[Settings, dict[str, str]]:
    missing = missing_binaries(settings)
    changes = {program(name).enable_field: False for name in missing}
    return settings.with_changes(**changes), missing


# ---- thin launchers: prepare, then exec the real binary -----------------------------------


def _exec(argv: list[str], settings: Settings, cwd: Path | None = None) -> None:
    binary = shutil.which(argv[0], path=_search_path(settings)) or argv[0]
    if cwd:
        os.chdir(cwd)
    os.execvp(binary, [binary, *argv[1:]])


def jupyter_argv(settings: Settings) -> list[str]:
    return [
        "jupyter-lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={settings.jupyter_internal_port}",
        f"--ServerApp.root_dir={settings.workspace}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.trust_xheaders=True",
        "--ServerApp.allow_origin=*",
        "--ServerApp.port_retries=0",
    ]


def code_server_argv(settings: Settings) -> list[str]:
    return [
        "code-server",
        "--bind-addr",
        f"127.0.0.1:{settings.code_server_internal_port}",
        "--auth",
        "none",
        "--disable-telemetry",
        "--disable-update-check",
        "--user-data-dir",
        str(settings.workspace / ".cache" / "code-server"),
        str(settings.workspace),
    ]


def sshd_config(settings: Settings) -> str:
    ssh_dir = settings.config_dir / "ssh"
    return "\n".join(
        [
            f"Port {settings.ssh_port}",
            f"HostKey {ssh_dir}/ssh_host_ed25519_key",
            f"HostKey {ssh_dir}/ssh_host_rsa_key",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"AuthorizedKeysFile {ssh_dir}/authorized_keys",
            f"PidFile {settings.run_dir}/sshd.pid",
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def prepare_sshd(settings: Settings) -> Path:
    """Host keys kept on the volume (stable fingerprints), authorized_keys from PUBLIC_KEY."""
    from services.credentials import write_private

    ssh_dir = settings.config_dir / "ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    for kind in ("ed25519", "rsa"):
        key = ssh_dir / f"ssh_host_{kind}_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    write_private(ssh_dir / "authorized_keys", settings.public_key.strip() + "\n")
    conf = settings.run_dir / "sshd_config"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(sshd_config(settings))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    return conf


def public_ports(settings: Settings) -> set[int]:
    return {settings.comfyui_port, settings.admin_port, settings.code_server_port, settings.jupyter_port}


def stale_nginx(settings: Settings) -> list[int]:
    """Pids of nginx workers a killed master left behind on this pod's public ports.

    nginx workers outlive a master killed with SIGKILL (the OOM killer, a chaos test) and keep
    the listening sockets, so a new master can never bind them (issue 11). A worker whose parent
    is no longer an nginx master is such an orphan.
    """
    import psutil

    ports = public_ports(settings)
    found: list[int] = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "nginx":
            continue
        try:
            if "worker process" not in " ".join(proc.cmdline()):
                continue
            parent = proc.parent()
            if parent is not None and "nginx: master" in " ".join(parent.cmdline()):
                continue  # a live master's worker
            # each worker holds the listening sockets it inherited (a shared socket is listed
            # under one pid only by psutil.net_connections, so ask every process)
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port in ports for c in proc.net_connections("tcp")):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return sorted(found)


def clear_stale_nginx(settings: Settings, timeout: float = 5.0) -> list[int]:
    """Kill the orphaned nginx workers holding this pod's ports; return their pids."""
    import signal
    import time

    import psutil

    pids = stale_nginx(settings)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return pids


def _settings() -> Settings:
    from services.cli import get_settings

    return get_settings(click.get_current_context())


@click.command("jupyter")
def jupyter_command() -> None:
    """Run JupyterLab on loopback (auth is nginx's job)."""
    settings = _settings()
    _exec(jupyter_argv(settings), settings, cwd=settings.workspace)


@click.command("code-server")
def code_server_command() -> None:
    """Run code-server on loopback (auth is nginx's job)."""
    settings = _settings()
    _exec(code_server_argv(settings), settings, cwd=settings.workspace)


@click.command("sshd")
def sshd_command() -> None:
    """Prepare keys and run sshd in the foreground."""
    settings = _settings()
    conf = prepare_sshd(settings)
    _exec(["sshd", "-D", "-e", "-f", str(conf)], settings)


@click.command("nginx")
def nginx_command() -> None:
    """Clear nginx workers orphaned by a killed master, then run nginx in the foreground."""
    settings = _settings()
    cleared = clear_stale_nginx(settings)
    if cleared:
        click.echo(f"nginx: killed {len(cleared)} worker(s) left by a killed master: {cleared}", err=True)
    _exec(["nginx", "-e", "stderr", "-c", str(settings.run_dir / "nginx.conf")], settings)
