"""The Settings page and ``/api/settings``: SageAttention mode, presets.yaml editor, tokens, API token.

The SageAttention mode chosen here is kept in ``<workspace>/config/state/sage_attention``
(``services.launcher.SAGE_STATE_FILE``): one word (``auto``, ``on`` or ``off``) and a newline.
When that file exists it wins over the SAGE_ATTENTION variable; the launcher reads it at each
start of ComfyUI, so a change is applied by restarting the ``comfyui`` program (done here).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, render_template, request

from admin.actions import attempt
from admin.context import InputError, current_settings
from admin.payload import json_object
from admin.services import restart_later
from services import credentials, launcher
from services.credentials import write_private
from services.errors import CatalogError
from services.settings import SAGE_MODES, Settings

log = logging.getLogger("comfypod.admin.settings")

bp = Blueprint("settings", __name__, url_prefix="/settings")
api = Blueprint("settings_api", __name__, url_prefix="/api/settings")

TOKEN_LABELS = {"hf_token": "Hugging Face", "civitai_token": "Civitai"}


# ---- SageAttention ---------------------------------------------------------------------------


def sage_file(settings: Settings) -> Path:
    return settings.state_dir / launcher.SAGE_STATE_FILE


def sage_mode(settings: Settings) -> dict[str, str]:
    """{"mode": auto|on|off, "source": "admin" (the state file) or "environment"}, as the launcher reads it."""
    mode, source = launcher.sage_mode(settings)
    return {"mode": mode, "source": "environment" if source == "SAGE_ATTENTION" else "admin"}


def save_sage_mode(settings: Settings, mode: str, restart: bool = True) -> str:
    mode = (mode or "").strip().lower()
    if mode not in SAGE_MODES:
        raise InputError(f"SageAttention mode {mode!r} is not valid: one of {', '.join(SAGE_MODES)}")
    write_private(sage_file(settings), mode + "\n")
    log.info("SageAttention mode set to %s", mode)
    if restart:
        _restart_comfyui(settings)
        return f"SageAttention {mode}: ComfyUI is restarting to apply it"
    return f"SageAttention {mode}: applies at ComfyUI's next start"


def _restart_comfyui(settings: Settings) -> None:
    restart_later(settings.supervisor_socket, "comfyui", delay=0)


# ---- presets.yaml ----------------------------------------------------------------------------


def catalog_text(settings: Settings) -> str:
    path = settings.presets_file
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    from presets.catalog import DEFAULT_PATH

    return DEFAULT_PATH.read_text(encoding="utf-8")


def check_catalog(settings: Settings, text: str, save: bool) -> dict[str, Any]:
    """Validate (and, when ``save`` and valid, write) the catalog text.

    Returns {"ok", "saved", "presets", "errors": [{"line", "column", "message", "text"}]}.
    """
    from presets import catalog as catalog_module

    text = text.replace("\r\n", "\n")
    try:
        if save:
            loaded = catalog_module.save_text(settings.presets_file, text)
        else:
            loaded = catalog_module.load_text(text, settings.presets_file.name)
    except CatalogError as err:
        issues = getattr(err, "issues", None)
        errors = [_issue(i) for i in issues if i.is_error] if issues else [{"line": None, "column": None,
                                                                            "message": str(err), "text": str(err)}]
        return {"ok": False, "saved": False, "presets": None, "errors": errors}
    return {"ok": True, "saved": save, "presets": len(loaded.presets), "errors": []}


def _issue(issue: Any) -> dict[str, Any]:
    subject = ", ".join(x for x in (f"preset {issue.preset}" if issue.preset else "",
                                    f"field {issue.field}" if issue.field else "") if x)
    message = f"{subject}: {issue.message}" if subject else issue.message
    return {"line": issue.line, "column": issue.column, "message": message, "text": str(issue)}


# ---- tokens ----------------------------------------------------------------------------------


def mask(value: str) -> str:
    """Enough to recognise a token, never enough to use it."""
    if not value:
        return ""
    if len(value) < 12:
        return "•" * 8
    return f"{value[:3]}…{value[-4:]}"


def token_state(settings: Settings) -> dict[str, dict[str, Any]]:
    stored = credentials.stored_tokens(settings)
    result = {}
    for name, label in TOKEN_LABELS.items():
        from_env = getattr(settings, name)
        value = from_env if from_env else stored[name]
        result[name] = {
            "label": label,
            "set": bool(value),
            "source": "environment" if from_env else ("admin" if stored[name] else None),
            "masked": mask(value.reveal()),
        }
    return result


def save_tokens(settings: Settings, values: dict[str, Any]) -> str:
    changed = []
    for name, value in values.items():
        if name not in TOKEN_LABELS or value is None:
            continue
        if not isinstance(value, str) or len(value) > 4096 or any(c.isspace() for c in value.strip()):
            raise InputError(f"{TOKEN_LABELS[name]} token is not valid: one word without spaces")
        credentials.save_token(settings, name, value.strip())
        changed.append(f"{TOKEN_LABELS[name]} token {'saved' if value.strip() else 'removed'}")
    return "; ".join(changed) or "nothing changed"


# ---- pages -----------------------------------------------------------------------------------


def _page_context(settings: Settings) -> dict[str, Any]:
    from admin.context import catalog_store

    try:
        store_error = catalog_store().error
    except CatalogError as err:
        store_error = str(err)
    return {
        "sage": sage_mode(settings),
        "sage_modes": SAGE_MODES,
        "tokens": token_state(settings),
        "catalog_path": settings.presets_file,
        "catalog_error": store_error,
        "api_masked": mask(credentials.api_token(settings).reveal()),
    }


@bp.get("")
def index():
    settings = current_settings()
    try:
        text, text_error = catalog_text(settings), None
    except (OSError, ImportError) as err:
        text, text_error = "", f"cannot read the catalog: {err}"
    return render_template("settings/index.html", catalog_text=text, text_error=text_error, **_page_context(settings))


@bp.post("/sage-attention")
def sage_post():
    settings = current_settings()
    message, error = attempt(lambda: save_sage_mode(settings, request.form.get("mode", "")), InputError)
    return render_template("settings/_sage.html", sage=sage_mode(settings), sage_modes=SAGE_MODES,
                           message=message, error=error)


@bp.post("/presets-yaml")
def catalog_post():
    settings = current_settings()
    save = request.form.get("action", "save") == "save"
    result = check_catalog(settings, request.form.get("text", ""), save=save)
    return render_template("settings/_catalog_result.html", result=result, save=save)


@bp.post("/tokens")
def tokens_post():
    settings = current_settings()
    values = {name: request.form.get(name) for name in TOKEN_LABELS if request.form.get(name)}
    for name in TOKEN_LABELS:
        if request.form.get(f"clear_{name}"):
            values[name] = ""
    message, error = attempt(lambda: save_tokens(settings, values), InputError)
    return render_template("settings/_tokens.html", tokens=token_state(settings), message=message, error=error)


@bp.get("/_api-token")
def api_token_fragment():
    token = credentials.api_token(current_settings()).reveal()
    return render_template("settings/_api_token.html", token=token, reveal=bool(request.args.get("reveal")),
                           masked=mask(token))


@bp.post("/api-token/rotate")
def api_token_rotate():
    token = credentials.rotate_api_token(current_settings()).reveal()
    return render_template("settings/_api_token.html", token=token, reveal=True, masked=mask(token),
                           message="New API token made: the old one no longer works.")


# ---- JSON API --------------------------------------------------------------------------------


@api.get("")
def api_get():
    """Current settings (tokens masked).
    ---
    get:
      summary: SageAttention mode, token state and catalog state
      tags: [settings]
      responses:
        200:
          description: Settings
          content:
            application/json:
              schema:
                type: object
                properties:
                  sage_attention:
                    type: object
                    properties:
                      mode: {type: string, enum: [auto, 'on', 'off']}
                      source: {type: string}
                  tokens: {type: object}
                  catalog:
                    type: object
                    properties:
                      path: {type: string}
                      error: {type: string, nullable: true}
    """
    settings = current_settings()
    context = _page_context(settings)
    return {
        "sage_attention": context["sage"],
        "tokens": {name: {k: v for k, v in item.items() if k != "label"} for name, item in context["tokens"].items()},
        "catalog": {"path": str(context["catalog_path"]), "error": context["catalog_error"]},
    }


@api.put("/sage-attention")
def api_sage():
    """Set the SageAttention mode and restart ComfyUI.
    ---
    put:
      summary: Set the SageAttention mode (auto, on, off)
      tags: [settings]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [mode]
              properties:
                mode: {type: string, enum: [auto, 'on', 'off']}
                restart: {type: boolean, default: true}
      responses:
        200:
          description: Saved
          content:
            application/json:
              schema:
                type: object
                properties:
                  mode: {type: string}
                  message: {type: string}
        400: {$ref: '#/components/responses/Error'}
    """
    body = json_object()
    restart = body.get("restart", True) is not False
    message = save_sage_mode(current_settings(), str(body.get("mode", "")), restart=restart)
    return {"mode": sage_mode(current_settings())["mode"], "message": message}


@api.get("/presets-yaml")
def api_catalog_get():
    """The catalog file's text.
    ---
    get:
      summary: Read presets.yaml
      tags: [settings]
      responses:
        200:
          description: The text
          content:
            application/json:
              schema:
                type: object
                properties:
                  path: {type: string}
                  text: {type: string}
    """
    settings = current_settings()
    return {"path": str(settings.presets_file), "text": catalog_text(settings)}


@api.put("/presets-yaml")
def api_catalog_put():
    """Validate and save presets.yaml.
    ---
    put:
      summary: Replace presets.yaml (validated first; nothing is written when it has errors)
      tags: [settings]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [text]
              properties:
                text: {type: string}
                validate_only: {type: boolean, default: false}
      responses:
        200:
          description: Valid (and saved unless validate_only)
          content:
            application/json:
              schema: {$ref: '#/components/schemas/CatalogCheck'}
        422:
          description: Not valid; errors carry line and column
          content:
            application/json:
              schema: {$ref: '#/components/schemas/CatalogCheck'}
    """
    body = json_object()
    text = body.get("text")
    if not isinstance(text, str):
        raise InputError("the body needs a 'text' string")
    result = check_catalog(current_settings(), text, save=not body.get("validate_only", False))
    return result, 200 if result["ok"] else 422


@api.put("/tokens")
def api_tokens():
    """Save or clear the Hugging Face and Civitai tokens.
    ---
    put:
      summary: Save tokens (an empty string removes one); they are never returned in full
      tags: [settings]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              properties:
                hf_token: {type: string}
                civitai_token: {type: string}
      responses:
        200:
          description: Saved
          content:
            application/json:
              schema:
                type: object
                properties:
                  message: {type: string}
                  tokens: {type: object}
        400: {$ref: '#/components/responses/Error'}
    """
    body = json_object()
    message = save_tokens(current_settings(), {k: body.get(k) for k in TOKEN_LABELS if k in body})
    state = token_state(current_settings())
    return {"message": message, "tokens": {n: {k: v for k, v in i.items() if k != "label"} for n, i in state.items()}}


@api.get("/api-token")
def api_token_get():
    """The API token (for scripts: send it as `Authorization: Bearer <token>`).
    ---
    get:
      summary: Show the API token
      tags: [settings]
      responses:
        200:
          description: The token
          content:
            application/json:
              schema:
                type: object
                properties:
                  token: {type: string}
    """
    return {"token": credentials.api_token(current_settings()).reveal()}


@api.post("/api-token/rotate")
def api_token_rotate_api():
    """Make a new API token; the old one stops working at once.
    ---
    post:
      summary: Rotate the API token
      tags: [settings]
      responses:
        200:
          description: The new token
          content:
            application/json:
              schema:
                type: object
                properties:
                  token: {type: string}
    """
    return {"token": credentials.rotate_api_token(current_settings()).reveal()}
