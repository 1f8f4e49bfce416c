"""Where a model file comes from: URL normalization, source classification, token by host.

Pure code, no I/O. Hugging Face ``/blob/`` links (an HTML page) become ``/resolve/`` links
(the file); a Civitai model page with a version becomes the download API URL; a token is
chosen by the URL's exact host, so an HF token never leaves for another host.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from services.urls import LOOPBACK_NAMES, is_loopback_host, url_problem  # noqa: F401 - the catalog's URL rules

HF_HOSTS = frozenset({"huggingface.co", "hf.co"})
CIVITAI_HOSTS = frozenset({"civitai.com"})

_HF_REPO_TYPES = {"datasets": "dataset", "spaces": "space"}


def _host(url: str) -> str:
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return host.lower().rstrip(".")


def _hf_parts(url: str, *, any_host: bool = False) -> dict[str, Any] | None:
    """Split a Hugging Face file URL into repo type, repo, kind (resolve/blob), revision, file.

    ``any_host=True`` also accepts the same path layout on other hosts (hub mirrors, tests).
    """
    parts = urlsplit(url)
    if not any_host and (parts.hostname or "").lower() not in HF_HOSTS:
        return None
    segments = [unquote(s) for s in parts.path.split("/") if s]
    repo_type = "model"
    if segments and segments[0] in _HF_REPO_TYPES:
        repo_type = _HF_REPO_TYPES[segments[0]]
        segments = segments[1:]
    if len(segments) < 5 or segments[2] not in ("resolve", "blob", "raw"):
        return None
    return {
        "repo_type": repo_type,
        "repo": f"{segments[0]}/{segments[1]}",
        "kind": segments[2],
        "revision": segments[3],
        "file": "/".join(segments[4:]),
    }


def _hf_url(info: dict[str, Any], query: str = "", scheme: str = "https", netloc: str = "huggingface.co") -> str:
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[info["repo_type"]]
    path = "/" + prefix + info["repo"] + "/resolve/" + quote(info["revision"], safe="") + "/"
    path += quote(info["file"], safe="/")
    return urlunsplit((scheme, netloc, path, query, ""))


def _civitai_version(url: str) -> str | None:
    """The model version id of a Civitai link, where the link names one."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    if host not in CIVITAI_HOSTS:
        return None
    segments = [s for s in parts.path.split("/") if s]
    if segments[:3] == ["api", "download", "models"] and len(segments) >= 4 and segments[3].isdigit():
        return segments[3]
    if segments[:1] == ["models"]:
        version = parse_qs(parts.query).get("modelVersionId", [""])[0]
        if version.isdigit():
            return version
    return None


def normalize_url(url: str) -> str:
    """The URL that fetches the file itself.

    - ``https://huggingface.co/<repo>/blob/<rev>/<file>`` (and ``hf.co``) -> ``.../resolve/...``
    - ``https://civitai.com/models/<id>/<name>?modelVersionId=<v>`` -> ``https://civitai.com/api/download/models/<v>``
    - anything else: returned with surrounding spaces removed.
    """
    text = url.strip()
    try:
        info = _hf_parts(text)
        if info is not None:
            query = urlsplit(text).query
            return _hf_url(info, query)
        version = _civitai_version(text)
        if version is not None and "/api/download/" not in urlsplit(text).path:
            return f"https://civitai.com/api/download/models/{version}"
    except ValueError:
        return text
    return text


def classify_source(url: str) -> dict[str, Any]:
    """Describe where ``url`` points: a Hugging Face repo file, a Civitai version, or a direct host.

    Returns ``{"type": "huggingface", "repo", "revision", "file", "repo_type"}``,
    ``{"type": "civitai", "model_version_id"}`` (None when the link names no version),
    or ``{"type": "direct", "host"}``.
    """
    text = url.strip()
    try:
        info = _hf_parts(text)
    except ValueError:
        info = None
    if info is not None:
        return {
            "type": "huggingface",
            "repo": info["repo"],
            "revision": info["revision"],
            "file": info["file"],
            "repo_type": info["repo_type"],
        }
    host = _host(text)
    bare = host[4:] if host.startswith("www.") else host
    if bare in CIVITAI_HOSTS:
        try:
            version = _civitai_version(text)
        except ValueError:
            version = None
        return {"type": "civitai", "model_version_id": version}
    return {"type": "direct", "host": host}


def hub_file(url: str) -> dict[str, Any] | None:
    """Repo, revision and file of a hub-style ``/<org>/<repo>/resolve/<rev>/<file>`` URL on any
    host (Hugging Face, a mirror of it, a test server), or None."""
    try:
        info = _hf_parts(url.strip(), any_host=True)
    except ValueError:
        return None
    return info if info is not None and info["kind"] == "resolve" else None


def pinned_url(url: str, revision: str) -> str:
    """The hub-style ``url`` with its revision replaced (a commit hash pins the file)."""
    text = url.strip()
    info = hub_file(text)
    if info is None:
        return url
    info["revision"] = revision
    parts = urlsplit(text)
    return _hf_url(info, parts.query, parts.scheme, parts.netloc)


def token_for(url: str, settings: Any) -> str | None:
    """The token to send with ``url``, or None.

    HF_TOKEN only to https://huggingface.co and https://hf.co; CIVITAI_TOKEN only to
    https://civitai.com. Redirect targets (CDN hosts) never get a token: the downloader
    asks again for every URL it follows.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme != "https":
        return None
    host = (parts.hostname or "").lower().rstrip(".")
    if host in HF_HOSTS:
        secret = settings.hf_token
    elif host in CIVITAI_HOSTS:
        secret = settings.civitai_token
    else:
        return None
    value = secret.reveal() if hasattr(secret, "reveal") else str(secret or "")
    return value or None


