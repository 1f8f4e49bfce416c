"""Logging setup for ComfyPod's own programs, with a filter that masks secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

# Query parameters and headers that carry credentials.
_PATTERNS = (
    re.compile(r"(?i)((?:token|api_key|apikey|password|access_token|key)=)[^&\s\"']+"),
    re.compile(r"(?i)(authorization:\s*(?:bearer|basic)\s+)\S+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/=]{8,}"),
    re.compile(r"\b(hf_)[A-Za-z0-9]{10,}"),
)
MASK = "***"


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with known secret values and credential patterns replaced by ***."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class SecretFilter(logging.Filter):
    """Masks secret values and credential-looking patterns in every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message, self.secrets)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


def setup_logging(level: str = "info", secrets: Iterable[str] = (), stream=None) -> None:
    """Configure the root logger once: one line per record, secrets masked."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def settings_secrets(settings) -> list[str]:
    """The secret values a Settings object holds, for SecretFilter."""
    return [
        s.reveal()
        for s in (settings.access_password, settings.hf_token, settings.civitai_token)
        if s
    ]
