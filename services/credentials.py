"""Secrets kept on the volume: the admin password hash, the API token, the session key and
the HF/Civitai tokens entered in the admin. Every file is written atomically with mode 0600.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from services.errors import WorkspaceError
from services.files import write_atomic
from services.secret import Secret
from services.settings import Settings

log = logging.getLogger(__name__)

PASSWORD_FILE = "admin_password.hash"
API_TOKEN_FILE = "api_token"
SECRET_KEY_FILE = "session_key"
TOKENS_FILE = "tokens.json"
TOKEN_NAMES = ("hf_token", "civitai_token")


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), readable by the owner only."""
    try:
        write_atomic(path, data, mode=0o600)
    except OSError as err:
        raise WorkspaceError(f"cannot write {path}: {err.strerror}") from None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def ensure_credentials(settings: Settings) -> str | None:
    """Make sure a password hash, API token and session key exist.

    Returns the password only when one was generated now (to be printed once), else None.
    """
    state = settings.state_dir
    generated = None
    hash_file = state / PASSWORD_FILE
    current = _read(hash_file)
    wanted = settings.access_password.reveal()
    if wanted:
        if not current or not check_password_hash(current, wanted):
            write_private(hash_file, generate_password_hash(wanted))
    elif not current:
        generated = secrets.token_urlsafe(12)
        write_private(hash_file, generate_password_hash(generated))
    if not _read(state / API_TOKEN_FILE):
        write_private(state / API_TOKEN_FILE, secrets.token_urlsafe(32))
    if not _read(state / SECRET_KEY_FILE):
        write_private(state / SECRET_KEY_FILE, secrets.token_hex(32))
    return generated


def check_password(settings: Settings, password: str) -> bool:
    stored = _read(settings.state_dir / PASSWORD_FILE)
    return bool(stored) and bool(password) and check_password_hash(stored, password)


def reset_password(settings: Settings, password: str | None = None) -> str:
    """Store a new password (generated when None) and return it."""
    new = password or secrets.token_urlsafe(12)
    write_private(settings.state_dir / PASSWORD_FILE, generate_password_hash(new))
    return new


def api_token(settings: Settings) -> Secret:
    return Secret(_read(settings.state_dir / API_TOKEN_FILE) or "")


def check_api_token(settings: Settings, candidate: str) -> bool:
    token = api_token(settings).reveal()
    return bool(token) and bool(candidate) and hmac.compare_digest(token, candidate)


def rotate_api_token(settings: Settings) -> Secret:
    token = secrets.token_urlsafe(32)
    write_private(settings.state_dir / API_TOKEN_FILE, token)
    return Secret(token)


def session_key(settings: Settings) -> str:
    key = _read(settings.state_dir / SECRET_KEY_FILE)
    if not key:
        key = secrets.token_hex(32)
        write_private(settings.state_dir / SECRET_KEY_FILE, key)
    return key


def stored_tokens(settings: Settings) -> dict[str, Secret]:
    text = _read(settings.state_dir / TOKENS_FILE)
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON; ignoring stored tokens", settings.state_dir / TOKENS_FILE)
        data = {}
    return {name: Secret(str(data.get(name, ""))) for name in TOKEN_NAMES}


def save_token(settings: Settings, name: str, value: str) -> None:
    if name not in TOKEN_NAMES:
        raise ValueError(f"unknown token {name}")
    data = {k: v.reveal() for k, v in stored_tokens(settings).items() if v}
    if value:
        data[name] = value.strip()
    else:
        data.pop(name, None)
    write_private(settings.state_dir / TOKENS_FILE, json.dumps(data))


def effective_token(settings: Settings, name: str) -> Secret:
    """The token from the environment if set, else the one saved in the admin."""
    from_env: Secret = getattr(settings, name)
    return from_env if from_env else stored_tokens(settings)[name]
