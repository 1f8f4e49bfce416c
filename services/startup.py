"""`comfypod up`: settings → start-up steps → normalized environment → exec supervisord."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services import paths, programs, pyenv
from services.errors import ComfyPodError, ServiceError
from services.settings import Settings, process_environment

log = logging.getLogger("comfypod.up")


@dataclass(frozen=True)
class Step:
    target: str  # "module:function", called with the Settings
    essential: bool  # an essential step that fails stops start-up; others log and go on

    def load(self) -> Callable[[Settings], object] | None:
        module_name, attr = self.target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                log.warning("start-up step %s skipped: module not available", self.target)
                return None
            raise
        return getattr(module, attr)


STEPS: tuple[Step, ...] = (
    Step("services.startup:prepare_workspace", True),
    Step("services.credentials:ensure_credentials", True),
    Step("services.render:write_configs", True),
    Step("presets.catalog:seed_catalog", False),
    Step("services.pyenv:prepare_environment", False),
    Step("services.doctor:startup_step", True),
    Step("presets.install:queue_startup_presets", False),
)


def prepare_workspace(settings: Settings) -> list[Path]:
    created = paths.ensure_workspace(settings.workspace)
    if created:
        log.info("workspace %s: created %d missing folders", settings.workspace, len(created))
    return created


@dataclass
class Prepared:
    settings: Settings
    env: dict[str, str]
    generated_password: str | None
    disabled: dict[str, str]


def prepare(settings: Settings, base_env: dict[str, str] | None = None) -> Prepared:
    """Run every start-up step and build the environment supervisord will run with."""
    for notice in settings.notices:
        log.warning("%s", notice)
    settings, disabled = programs.disable_missing(settings)
    for name, reason in disabled.items():
        log.warning("%s is turned off: %s", name, reason)
    generated = None
    for step in STEPS:
        func = step.load()
        if func is None:
            continue
        try:
            result = func(settings)
        except ComfyPodError as err:
            if step.essential:
                raise
            log.error("start-up step %s failed: %s", step.target, err)
            continue
        except Exception:
            if step.essential:
                raise
            # an optional step (catalog, packages, queued presets) must never keep the pod down
            log.exception("start-up step %s failed; going on without it", step.target)
            continue
        if step.target.endswith(":ensure_credentials"):
            generated = result  # type: ignore[assignment]
    env = process_environment(base_env)
    env.update(settings.environment())
    env["PATH"] = os.pathsep.join([str(settings.venv_bin), settings.search_path, "/usr/sbin"])
    env.update(pyenv.environment(settings, env))  # one interpreter, constraints, the package layer
    env["PYTHONUNBUFFERED"] = "1"
    if settings.link_supervisor_config:
        link_default_config(settings)
    return Prepared(settings, env, generated, disabled)


def link_default_config(settings: Settings, prefix: Path | None = None) -> None:
    """Point ``<venv>/etc/supervisord.conf`` at the rendered file so plain supervisorctl finds it.

    supervisorctl looks for ``../etc/supervisord.conf`` beside its own ``bin/`` first; the image
    also links ``/etc/supervisord.conf`` to the same file.
    """
    link = Path(prefix or sys.prefix) / "etc" / "supervisord.conf"
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(settings.supervisord_conf)
    except OSError as err:
        log.warning("cannot link %s: %s (use `comfypod ctl`)", link, err.strerror)


def banner(prepared: Prepared, host: str = "localhost") -> str:
    s = prepared.settings
    lines = [f"ComfyPod is starting with workspace {s.workspace}"]
    if s.enable_nginx:
        lines.append(f"  admin:   http://{host}:{s.admin_port}/")
        if s.enable_comfyui:
            lines.append(f"  ComfyUI: http://{host}:{s.comfyui_port}/")
    elif s.enable_admin:
        lines.append(f"  admin:   http://127.0.0.1:{s.admin_internal_port}/ (nginx is off)")
    if prepared.generated_password:
        lines.append(f"  login:   password {prepared.generated_password}  (shown once; `comfypod password --reset`)")
    elif s.access_password:
        lines.append("  login:   the password in ACCESS_PASSWORD")
    else:
        lines.append("  login:   the password printed on first start (`comfypod password --reset` for a new one)")
    for name, reason in prepared.disabled.items():
        lines.append(f"  off:     {name}: {reason}")
    return "\n".join(lines)


def refuse_if_running(settings: Settings) -> None:
    """Stop a second ``comfypod up`` on the same RUN_DIR before it touches anything: it would
    rewrite the running mesh's configs, then fail on supervisord's own socket with a traceback."""
    from services.supervisor import Supervisor

    if not settings.supervisor_socket.exists():
        return
    try:
        pid = Supervisor(settings.supervisor_socket, timeout=3).pid()
    except ServiceError:
        return  # a socket left behind by a killed supervisord: start afresh
    raise ServiceError(
        f"ComfyPod is already running in {settings.run_dir} (supervisord pid {pid}): `comfypod status` "
        "shows it; stop it with Ctrl-C where it runs or `comfypod ctl shutdown`"
    )


def up(settings: Settings) -> None:
    """Prepare everything, print the banner, then replace this process with supervisord."""
    refuse_if_running(settings)
    prepared = prepare(settings)
    print(banner(prepared), flush=True)
    supervisord = str(prepared.settings.venv_bin / "supervisord")
    conf = str(prepared.settings.supervisord_conf)
    os.execve(supervisord, [supervisord, "-c", conf], prepared.env)


__all__ = ["STEPS", "Step", "prepare", "prepare_workspace", "up", "banner"]
