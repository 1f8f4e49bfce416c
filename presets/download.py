"""The only place ComfyPod fetches bytes: probe, resumable ranged download, verify, rename.

A file is streamed into ``<dest>.part`` beside its destination; ``<dest>.lock`` (same folder)
is held with ``flock`` while the transfer runs and keeps its resume state (the remote file's
size and validators, and the byte intervals already written). A transfer:

1. resolves the URL with a one-byte ranged GET, following redirects itself so that a token is
   sent only to the host it belongs to (``presets.sources.token_for``), never to a redirect's
   other host; it learns size, ETag/Last-Modified, range support and Hugging Face's
   X-Linked-Etag (sha256) / X-Linked-Size / X-Repo-Commit;
2. drops the .part when the remote file changed (size or validator) and resumes otherwise;
3. fetches the missing intervals, one stream, or several ranged connections for a large file
   (pieces handed out in order; an idle connection splits the largest remaining piece), every
   resumed request carrying If-Range; a 200 to a ranged request, a 416, or a Content-Range that
   does not match restarts cleanly from zero;
4. retries connection errors, timeouts, 429 (Retry-After) and 5xx with exponential backoff and
   jitter; a read that delivers nothing for ``stall_timeout`` seconds drops the connection
   (the stall watchdog) and the piece resumes where it was; 401/403/404 are never retried;
5. checks size, sha256 (catalog or X-Linked-Etag, hashed while downloading), that a model is
   not an HTML/JSON error page and that a .safetensors header parses; then fsyncs and renames.

A file at its final path is therefore always complete and verified.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import shutil
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from presets.validate import format_size
from services.errors import DownloadError
from services.logs import mask_text

log = logging.getLogger("comfypod.download")

USER_AGENT = "comfypod-downloader/1"
MAX_REDIRECTS = 10
MiB = 1 << 20
GiB = 1 << 30

# Suffixes of files that must be binary models (an HTML or JSON body is an error page).
MODEL_SUFFIXES = frozenset({
    ".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".pkl", ".npz", ".engine",
})
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_CONTENT_RANGE_UNSAT = re.compile(r"^bytes\s+\*/(\d+)$")
_HF_URL_IN_TEXT = re.compile(r"https://huggingface\.co/[\w.\-]+/[\w.\-]+")


# ---------------------------------------------------------------------------------------------
# Public data types
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeResult:
    """What a URL answers before any byte is written.

    ``status``: ok | needs_token | gated | not_found | moved | error. ``linked_etag`` is the
    sha256 Hugging Face announces (X-Linked-Etag), ``commit`` its X-Repo-Commit. For ``gated``
    the page where the licence is accepted is in ``licence_url`` (and in ``message``).
    """

    status: str
    http_status: int | None
    size: int | None
    etag: str | None
    linked_etag: str | None
    commit: str | None
    final_url: str | None
    message: str
    licence_url: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "moved")


@dataclass(frozen=True)
class DownloadOptions:
    """Tuning of a transfer; tests shrink the sizes and delays."""

    connections: int = 8  # ranged connections for one large file
    piece_size: int = 32 * MiB  # a connection asks for this much at a time
    min_split: int = 64 * MiB  # smaller files use one stream
    steal_min: int = 4 * MiB  # smallest piece; an idle connection splits a piece with 2x this left
    chunk: int = 1 * MiB  # most bytes read per socket read
    checkpoint_bytes: int = 8 * MiB  # resume state written at least every this many bytes ...
    checkpoint_seconds: float = 0.5  # ... or this often
    sync_bytes: int = 256 * MiB  # fdatasync while downloading, so the final fsync is short
    connect_timeout: float = 20.0
    stall_timeout: float = 60.0  # no byte for this long: drop the connection and resume
    max_tries: int = 8  # consecutive failed tries (without progress) before a file fails
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0
    max_restarts: int = 4  # restarts from zero (file changed, 416, 200 to a range)
    probe_tries: int = 3
    free_margin: int = 512 * MiB  # kept free on the volume beyond the bytes still to fetch

    @classmethod
    def from_settings(cls, settings: Any, **changes: Any) -> DownloadOptions:
        values: dict[str, Any] = {"connections": int(getattr(settings, "download_connections", 8))}
        values.update(changes)
        return cls(**values)


@dataclass(frozen=True)
class FileRequest:
    """One file to fetch: ``dest`` is an absolute path already checked with ``paths.within``."""

    url: str
    dest: Path
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    sha256: str | None
    fetched: int  # bytes received from the network by this call
    skipped: bool = False  # already in place


class DownloadStopped(DownloadError):
    """The transfer was paused, cancelled or the worker is stopping; the .part is kept."""


class DiskFullError(DownloadError):
    """Not enough free space (before a job) or the disk filled up (during it)."""


class DownloadBusy(DownloadError):
    """Another process holds the lock of this destination."""


class HttpFailure(DownloadError):
    """A permanent HTTP answer (401/403/404/...): never retried."""

    def __init__(self, message: str, status: int, problem: _HttpProblem, hops: _Hops, final_url: str,
                 etag: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem
        self.hops = hops
        self.final_url = final_url
        self.etag = etag


class _Retry(Exception):
    """A transient failure: retried with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Reresolve(_Retry):
    """The final (signed) URL stopped working: resolve the original URL again."""


class _Restart(Exception):
    """Start the file over from zero (the remote file changed, 416, 200 to a ranged request)."""


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def lock_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".lock")


def disk_free(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (tests replace this to simulate a full disk)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def human(n: float | None) -> str:
    """Bytes (or bytes/s) in binary units, the catalog's own: ``1.4 GiB``."""
    return format_size(n)


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), cap))


def _strong_etag(etag: str | None) -> str | None:
    if not etag or etag.startswith("W/"):
        return None
    return etag


def _sha_from_etag(value: str | None) -> str | None:
    if not value:
        return None
    text = value.strip().removeprefix("W/").strip('"').lower()
    return text if _SHA256.match(text) else None


def _filename_from_disposition(value: str | None) -> str | None:
    if not value:
        return None
    match = re.search(r"filename\*\s*=\s*[^']*''([^;]+)", value, re.I)
    if match:
        return Path(unquote(match.group(1).strip().strip('"'))).name or None
    match = re.search(r'filename\s*=\s*"?([^";]+)"?', value, re.I)
    if match:
        return Path(match.group(1).strip()).name or None
    return None


def remote_name(url: str) -> str:
    """The file name a URL's path ends with ('' when it has none)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return Path(unquote(path)).name


def _is_model_path(path: Path | str) -> bool:
    return Path(str(path)).suffix.lower() in MODEL_SUFFIXES


def _unexpected_type(content_type: str, path: Path | str) -> str | None:
    """Why a body of ``content_type`` cannot be the file ``path``, or None."""
    kind = content_type.split(";", 1)[0].strip().lower()
    suffix = Path(str(path)).suffix.lower()
    if kind in ("text/html", "application/xhtml+xml") and suffix not in (".html", ".htm"):
        return "the server sent an HTML page instead of the file (a login page, or a /blob/ link?)"
    if kind in ("application/json", "application/problem+json") and suffix != ".json" and _is_model_path(path):
        return "the server sent a JSON error instead of the file"
    return None


def sniff_error_body(head: bytes) -> str | None:
    """Why the first bytes of a model file look like an error page, or None."""
    text = head[:512].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "the file is an HTML/XML page, not a model (an error or login page)"
    if text.startswith(b"{") and (b'"error' in text or b'"message' in text or b'"detail' in text):
        return "the file is a JSON error message, not a model"
    return None


def check_safetensors(path: Path, size: int) -> str | None:
    """Why ``path`` is not a valid .safetensors file, or None (the header must parse)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                return "too short for a .safetensors file"
            (length,) = struct.unpack("<Q", raw)
            if length < 2 or length > 100 * MiB or 8 + length > size:
                return f"not a .safetensors file (header length {length} does not fit a {size}-byte file)"
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"the .safetensors header does not parse ({err.__class__.__name__})"
    if not isinstance(header, dict):
        return "the .safetensors header is not a JSON object"
    body = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or offsets[0] > offsets[1] or offsets[1] > body):
            return f"the .safetensors header is damaged (tensor {name!r} lies outside the file)"
    return None


def check_free_space(needs: list[tuple[Path, int]], margin: int) -> None:
    """Refuse (DiskFullError) when a filesystem lacks the bytes still to fetch plus ``margin``.

    ``needs``: (destination, bytes still to fetch) for every file of a job.
    """
    by_device: dict[int, tuple[Path, int]] = {}
    for dest, remaining in needs:
        probe = dest.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        dev = probe.stat().st_dev
        base, total = by_device.get(dev, (probe, 0))
        by_device[dev] = (base, total + max(0, remaining))
    for base, total in by_device.values():
        if total <= 0:
            continue
        free = disk_free(base)
        if free < total + margin:
            raise DiskFullError(
                f"not enough space on the volume of {base}: {human(total)} to fetch plus a {human(margin)} margin, "
                f"but only {human(free)} free; free space (or remove a preset) and retry"
            )


# ---------------------------------------------------------------------------------------------
# Resume state kept in <dest>.lock
# ---------------------------------------------------------------------------------------------
class _Intervals:
    """Sorted, merged half-open byte intervals [a, b)."""

    def __init__(self, items: list[list[int]] | None = None) -> None:
        self.items: list[list[int]] = []
        for a, b in items or []:
            self.add(int(a), int(b))

    def add(self, a: int, b: int) -> None:
        if b <= a:
            return
        items = self.items
        i = bisect.bisect_left(items, [a, a])
        if i > 0 and items[i - 1][1] >= a:
            i -= 1
        j = i
        while j < len(items) and items[j][0] <= b:
            a = min(a, items[j][0])
            b = max(b, items[j][1])
            j += 1
        items[i:j] = [[a, b]]

    def total(self) -> int:
        return sum(b - a for a, b in self.items)

    def prefix(self) -> int:
        return self.items[0][1] if self.items and self.items[0][0] == 0 else 0

    def gaps(self, size: int) -> list[tuple[int, int]]:
        result: list[tuple[int, int]] = []
        pos = 0
        for a, b in self.items:
            if a > pos:
                result.append((pos, min(a, size)))
            pos = max(pos, b)
        if pos < size:
            result.append((pos, size))
        return [(a, b) for a, b in result if b > a]


class _LockFile:
    """``<dest>.lock``: an exclusive flock plus the resume state, rewritten in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self._length = 0

    def __enter__(self) -> _LockFile:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            raise DownloadBusy(f"{self.path.name[:-5]} is being downloaded by another process") from None
        self._length = os.fstat(self.fd).st_size
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self) -> dict[str, Any] | None:
        try:
            raw = os.pread(self.fd, max(self._length, 1), 0)
            data = json.loads(raw.decode("utf-8").strip() or "null")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def write(self, state: dict[str, Any]) -> None:
        """One pwrite (padded, never shrinking the file): a killed process leaves the old or new state."""
        raw = json.dumps(state, separators=(",", ":")).encode()
        if len(raw) < self._length:
            raw = raw.ljust(self._length, b" ")
        else:
            raw = raw.ljust(-(-len(raw) // 512) * 512, b" ")
        try:
            os.pwrite(self.fd, raw, 0)
        except OSError as err:  # a full disk must read as one, not as a crash (issue 11)
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"the disk is full: cannot record the progress of {self.path.name[:-5]}; "
                                    "free space and retry") from None
            raise DownloadError(f"cannot write {self.path}: {err.strerror}") from None
        self._length = max(self._length, len(raw))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# The remote side
# ---------------------------------------------------------------------------------------------
@dataclass
class _Hops:
    """What the redirect chain said: HF headers from any hop, whether it moved, token use."""

    linked_etag: str | None = None
    linked_size: int | None = None
    commit: str | None = None
    moved: bool = False
    token_sent: bool = False
    urls: list[str] = field(default_factory=list)

    def record(self, resp: requests.Response, token_sent: bool) -> None:
        headers = resp.headers
        if self.linked_etag is None:
            self.linked_etag = _sha_from_etag(headers.get("X-Linked-Etag"))
        if self.linked_size is None and (headers.get("X-Linked-Size") or "").isdigit():
            self.linked_size = int(headers["X-Linked-Size"])
        if self.commit is None and headers.get("X-Repo-Commit"):
            self.commit = headers["X-Repo-Commit"].strip()
        self.token_sent = token_sent


@dataclass
class Remote:
    url: str
    final_url: str
    size: int | None
    etag: str | None
    last_modified: str | None
    accept_ranges: bool
    content_type: str
    filename: str | None
    hops: _Hops

    @property
    def validator(self) -> str | None:
        return _strong_etag(self.etag) or self.last_modified

    @property
    def sha256(self) -> str | None:
        return self.hops.linked_etag


@dataclass
class _HttpProblem:
    status: str  # needs_token | gated | not_found | error
    message: str
    licence_url: str | None = None


def _licence_page(url: str, headers: Any) -> str | None:
    from presets.sources import classify_source

    source = classify_source(url)
    if source.get("type") == "huggingface":
        prefix = {"dataset": "datasets/", "space": "spaces/"}.get(source.get("repo_type", "model"), "")
        return f"https://huggingface.co/{prefix}{source['repo']}"
    match = _HF_URL_IN_TEXT.search(headers.get("X-Error-Message", "") if headers is not None else "")
    return match.group(0) if match else None


def classify_http(url: str, status: int, headers: Any, token_sent: bool) -> _HttpProblem:
    """Turn a final 4xx answer into a probe status and a message a user can act on."""
    from presets.sources import classify_source

    kind = classify_source(url).get("type")
    code = (headers.get("X-Error-Code", "") if headers is not None else "") or ""
    hf = kind == "huggingface" or code in ("GatedRepo", "RepoNotFound", "EntryNotFound", "RevisionNotFound")
    variable = "HF_TOKEN" if hf else "CIVITAI_TOKEN" if kind == "civitai" else None
    error_message = (headers.get("X-Error-Message", "") if headers is not None else "") or ""
    if status == 403 and (code == "GatedRepo" or (hf and "gated" in error_message.lower())):
        page = _licence_page(url, headers) or url
        need = "" if token_sent else "; HF_TOKEN must be set (or saved in the admin)"
        return _HttpProblem(
            "gated",
            f"licence not accepted: open {page} and accept it with the Hugging Face account of HF_TOKEN{need}",
            page,
        )
    if status in (401, 403):
        if variable is None:
            return _HttpProblem("needs_token", f"HTTP {status}: the server refuses the download without credentials")
        if token_sent:
            return _HttpProblem("needs_token", f"HTTP {status}: {variable} was refused or cannot see this repository")
        return _HttpProblem(
            "needs_token", f"HTTP {status}: this file needs a token: set {variable} (or save it in the admin)"
        )
    if status in (404, 410):
        return _HttpProblem("not_found", f"HTTP {status}: not found (a wrong path, revision or removed file)")
    return _HttpProblem("error", f"HTTP {status}")


# ---------------------------------------------------------------------------------------------
# The downloader
# ---------------------------------------------------------------------------------------------
def make_session(pool_size: int = 32) -> requests.Session:
    """A pooled session: no automatic retries (ours are explicit), no credentials from ~/.netrc."""
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


def default_token_rule(settings: Any) -> Callable[[str], str | None]:
    """HF/Civitai tokens (environment, else saved in the admin), each only for its own host."""
    from presets.sources import token_for
    from services.credentials import effective_token

    effective = settings.with_changes(
        hf_token=effective_token(settings, "hf_token"),
        civitai_token=effective_token(settings, "civitai_token"),
    )
    return lambda url: token_for(url, effective)


class Downloader:
    """Probe and fetch files. One instance per process; ``fetch`` is thread-safe."""

    def __init__(
        self,
        settings: Any,
        session: requests.Session | None = None,
        options: DownloadOptions | None = None,
        token_rule: Callable[[str], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or DownloadOptions.from_settings(settings)
        concurrency = int(getattr(settings, "download_concurrency", 3))
        self.session = session or make_session(pool_size=concurrency * self.options.connections + 8)
        self.token_rule = token_rule or default_token_rule(settings)
        self._secrets: set[str] = set()

    # -- helpers -------------------------------------------------------------------------
    def mask(self, text: str) -> str:
        return mask_text(text, self._secrets)

    def _token(self, url: str) -> str | None:
        token = self.token_rule(url)
        if token:
            self._secrets.add(token)
        return token

    def backoff(self, failures: int, retry_after: float | None = None) -> float:
        opts = self.options
        if retry_after is not None:
            return min(retry_after, opts.retry_after_max) + random.uniform(0, opts.backoff_base / 4)
        cap = min(opts.backoff_max, opts.backoff_base * (2 ** max(0, failures - 1)))
        return cap / 2 + random.uniform(0, cap / 2)

    def open(self, url: str, headers: dict[str, str] | None = None) -> tuple[requests.Response, _Hops, str]:
        """GET ``url`` (streamed), following redirects here so tokens go only to their own host."""
        hops = _Hops()
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            request_headers = dict(headers or {})
            token = self._token(current)
            if token:
                request_headers["Authorization"] = f"Bearer {token}"
            hops.urls.append(current)
            try:
                resp = self.session.get(
                    current, headers=request_headers, stream=True, allow_redirects=False,
                    timeout=(self.options.connect_timeout, self.options.stall_timeout),
                )
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                    requests.exceptions.InvalidSchema) as err:
                raise DownloadError(self.mask(f"not a usable URL: {current} ({err.__class__.__name__})")) from None
            except (requests.ConnectionError, requests.Timeout) as err:
                raise _Retry(self.mask(f"cannot reach {_host(current)}: {_reason(err)}")) from None
            hops.record(resp, token is not None)
            location = resp.headers.get("Location")
            if resp.status_code in (301, 302, 303, 307, 308) and location:
                resp.close()
                target = urljoin(current, location)
                if resp.status_code in (301, 308) or (_host(target) == _host(current)
                                                      and urlsplit(target).path != urlsplit(current).path):
                    hops.moved = True
                current = target
                continue
            return resp, hops, current
        raise DownloadError(self.mask(f"too many redirects for {url}"))

    def _fail(self, url: str, resp: requests.Response, hops: _Hops) -> Exception:
        """The exception for a non-success answer: _Retry (transient) or DownloadError."""
        status = resp.status_code
        resp.close()
        if status in RETRY_STATUSES or status >= 500:
            wait = _retry_after(resp.headers.get("Retry-After"), self.options.retry_after_max)
            return _Retry(f"HTTP {status} from {_host(resp.url or url)}", retry_after=wait)
        problem = classify_http(url, status, resp.headers, hops.token_sent)
        return HttpFailure(self.mask(f"{problem.message}: {url}"), status, problem, hops, resp.url or url,
                           resp.headers.get("ETag"))

    def resolve(self, url: str) -> Remote:
        """One-byte ranged GET: size, validators, range support, HF headers. Raises _Retry/DownloadError."""
        resp, hops, final = self.open(url, {"Range": "bytes=0-0"})
        try:
            status = resp.status_code
            headers = resp.headers
            size: int | None = None
            if status == 206:
                match = _CONTENT_RANGE.match(headers.get("Content-Range", "").strip())
                if match and match.group(3) != "*":
                    size = int(match.group(3))
            elif status == 200:
                length = headers.get("Content-Length", "")
                size = int(length) if length.isdigit() else None
            elif status == 416:
                match = _CONTENT_RANGE_UNSAT.match(headers.get("Content-Range", "").strip())
                if match and match.group(1) == "0":
                    size = 0  # an empty file cannot satisfy bytes=0-0
                else:
                    raise _Retry(f"HTTP 416 to a first-byte request from {_host(final)}")
            else:
                raise self._fail(url, resp, hops)
            if size is None and hops.linked_size is not None:
                size = hops.linked_size
            return Remote(
                url=url, final_url=final, size=size, etag=headers.get("ETag"),
                last_modified=headers.get("Last-Modified"), accept_ranges=status in (206, 416),
                content_type=headers.get("Content-Type", ""),
                filename=_filename_from_disposition(headers.get("Content-Disposition")),
                hops=hops,
            )
        finally:
            resp.close()

    # -- probe -----------------------------------------------------------------------------
    def probe(self, url: str) -> ProbeResult:
        """Classify ``url`` without writing anything (retries transient failures a few times)."""
        last = ""
        for attempt in range(1, self.options.probe_tries + 1):
            try:
                remote = self.resolve(url)
            except _Retry as err:
                last = str(err)
                if attempt < self.options.probe_tries:
                    time.sleep(min(self.backoff(attempt, err.retry_after), 10.0))
                continue
            except HttpFailure as err:
                return ProbeResult(
                    status=err.problem.status, http_status=err.status, size=None, etag=err.etag,
                    linked_etag=err.hops.linked_etag, commit=err.hops.commit, final_url=self.mask(err.final_url),
                    message=self.mask(err.problem.message), licence_url=err.problem.licence_url,
                )
            except DownloadError as err:
                return ProbeResult("error", None, None, None, None, None, None, self.mask(str(err)))
            hops = remote.hops
            problem = _unexpected_type(remote.content_type, remote_name(remote.final_url) or remote_name(url) or ".bin")
            status, message = ("moved", f"moved to {self.mask(remote.final_url)}") if hops.moved else ("ok", "ok")
            if problem:
                status, message = "error", problem
            return ProbeResult(
                status=status, http_status=206 if remote.accept_ranges else 200, size=remote.size,
                etag=remote.etag, linked_etag=hops.linked_etag, commit=hops.commit,
                final_url=self.mask(remote.final_url), message=message,
            )
        return ProbeResult("error", None, None, None, None, None, None, self.mask(last or "no answer"))

    def remote_filename(self, url: str) -> str | None:
        """The name the server gives the file (Content-Disposition), else the final URL's last part."""
        for attempt in range(1, self.options.probe_tries + 1):
            try:
                remote = self.resolve(url)
            except _Retry as err:
                if attempt >= self.options.probe_tries:
                    raise DownloadError(self.mask(f"cannot reach {url}: {err}")) from None
                time.sleep(min(self.backoff(attempt, err.retry_after), 10.0))
                continue
            return remote.filename or remote_name(remote.final_url) or None
        return None

    # -- fetch -----------------------------------------------------------------------------
    def done_bytes(self, dest: Path) -> int:
        """Bytes of ``dest`` already fetched (from its resume state); the full size when in place."""
        if dest.exists():
            return dest.stat().st_size
        try:
            raw = lock_path(dest).read_bytes()
            state = json.loads(raw.decode("utf-8").strip() or "null")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return 0
        if not isinstance(state, dict) or not part_path(dest).exists():
            return 0
        return _Intervals(state.get("done") or []).total()

    def fetch(
        self,
        req: FileRequest,
        progress: Callable[[int, int | None], None] | None = None,
        stop: threading.Event | None = None,
    ) -> FetchResult:
        """Download ``req`` to its destination, resuming a .part; raise DownloadError subclasses.

        ``progress(bytes_done, bytes_total)`` is called from download threads; ``stop`` set by
        another thread ends the transfer with DownloadStopped and keeps the .part.
        """
        dest = req.dest
        if dest.exists() and not part_path(dest).exists():
            size = dest.stat().st_size
            if req.size is None or size == req.size:
                if progress:
                    progress(size, size)
                return FetchResult(dest, size, req.sha256, 0, skipped=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _LockFile(lock_path(dest)) as lock:
            try:
                return _Transfer(self, req, lock, progress, stop or threading.Event()).run()
            except DownloadError:
                if not part_path(dest).exists():
                    lock.remove()  # nothing to resume: leave no trace
                raise


def _reason(err: BaseException) -> str:
    text = str(err)
    for marker in ("Read timed out", "timed out", "Connection refused", "Connection reset", "Name or service not known",
                   "Temporary failure in name resolution", "Connection aborted", "IncompleteRead", "Max retries"):
        if marker in text:
            return marker.lower()
    return err.__class__.__name__


# ---------------------------------------------------------------------------------------------
# One file transfer
# ---------------------------------------------------------------------------------------------
@dataclass
class _Piece:
    start: int
    pos: int
    end: int | None  # inclusive; None: to the end of an unknown-length body


class _Plan:
    """Which bytes are done, which wait, which connection holds which piece.

    Pieces are cut from the front of the missing bytes when a connection asks: at most
    ``piece_size``, and smaller towards the end (a share of what is left), so connections
    finish together and the in-order sha256 never lags far behind. An idle connection with
    nothing left to cut splits the largest piece still in flight.
    """

    def __init__(self, size: int | None, done: _Intervals, piece_size: int, min_piece: int, connections: int,
                 steal: bool) -> None:
        self.size = size
        self.done = done
        self.lock = threading.Lock()
        self.active: list[_Piece] = []
        self.pending: deque[tuple[int, int]] = deque()  # half-open gaps [a, b) not yet handed out
        self.piece_size = piece_size
        self.min_piece = min_piece
        self.connections = max(1, connections)
        self.steal = steal
        if size is not None:
            self.pending.extend(done.gaps(size))
        self.unknown_size = size is None

    def pieces_left(self) -> int:
        with self.lock:
            left = sum(b - a for a, b in self.pending)
            return -(-left // max(1, self.min_piece))

    def take(self) -> _Piece | None:
        with self.lock:
            if self.unknown_size:
                self.unknown_size = False
                piece = _Piece(0, 0, None)
                self.active.append(piece)
                return piece
            if self.pending:
                a, b = self.pending[0]
                left = sum(y - x for x, y in self.pending)
                want = min(self.piece_size, max(self.min_piece, left // (2 * self.connections)))
                end = min(b, a + want)
                if b - end < self.min_piece // 2:  # do not leave a sliver behind
                    end = b
                if end >= b:
                    self.pending.popleft()
                else:
                    self.pending[0] = (end, b)
                piece = _Piece(a, a, end - 1)
                self.active.append(piece)
                return piece
            if not self.steal:
                return None
            best = None
            for piece in self.active:
                if piece.end is not None and (best is None or piece.end - piece.pos > best.end - best.pos):
                    best = piece
            if best is not None and best.end is not None and best.end - best.pos + 1 >= 2 * self.min_piece:
                mid = best.pos + (best.end - best.pos + 1) // 2
                piece = _Piece(mid, mid, best.end)
                best.end = mid - 1
                self.active.append(piece)
                return piece
            return None

    def release(self, piece: _Piece) -> None:
        with self.lock:
            if piece in self.active:
                self.active.remove(piece)

    def remaining(self, piece: _Piece) -> int | None:
        with self.lock:
            return None if piece.end is None else piece.end - piece.pos + 1


class _Transfer:
    def __init__(self, dl: Downloader, req: FileRequest, lock: _LockFile,
                 progress: Callable[[int, int | None], None] | None, stop: threading.Event) -> None:
        self.dl = dl
        self.opts = dl.options
        self.req = req
        self.dest = req.dest
        self.part = part_path(req.dest)
        self.lock = lock
        self.progress = progress
        self.stop = stop
        self.fetched = 0
        self.fetched_lock = threading.Lock()

    # -- state -----------------------------------------------------------------------------
    def _reset(self) -> None:
        self.part.unlink(missing_ok=True)
        self.lock.write({"v": 1})

    def _load_state(self, remote: Remote) -> _Intervals:
        state = self.lock.read() or {}
        done = _Intervals(state.get("done") or [])
        if state.get("etag") and remote.etag:
            same_file = state["etag"] == remote.etag
        elif state.get("last_modified") and remote.last_modified:
            same_file = state["last_modified"] == remote.last_modified
        else:
            same_file = True  # no validator: size, Content-Range and the final checks decide
        usable = (
            same_file
            and self.part.exists()
            and remote.accept_ranges
            and remote.size is not None
            and state.get("url") == self.req.url
            and state.get("size") == remote.size
            and (not done.items or self.part.stat().st_size >= done.items[-1][1])
        )
        if not usable:
            if self.part.exists():
                log.info("%s: starting over (no usable resume state or the remote file changed)", self.dest.name)
            self._reset()
            return _Intervals()
        return done

    def _state(self, remote: Remote, done: _Intervals) -> dict[str, Any]:
        return {"v": 1, "url": self.req.url, "size": remote.size, "etag": remote.etag,
                "last_modified": remote.last_modified, "done": done.items}

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> FetchResult:
        restarts = 0
        sha_restarts = 0
        failures = 0
        last_error = ""
        while True:
            if self.stop.is_set():
                raise DownloadStopped(f"{self.dest.name}: stopped; the partial file is kept")
            before = self.fetched
            try:
                remote = self.dl.resolve(self.req.url)
                self._check_remote(remote)
                done = self._load_state(remote)
                digest = self._transfer(remote, done)
                return self._finish(remote, digest)
            except _Restart as err:
                restarts += 1
                last_error = str(err)
                log.warning("%s: %s; starting over", self.dest.name, self.dl.mask(last_error))
                if "sha256" in last_error:
                    sha_restarts += 1
                self._reset()
                if restarts > self.opts.max_restarts or sha_restarts > 1:
                    self._reset()
                    raise DownloadError(self.dl.mask(
                        f"{self.dest.name}: gave up after {restarts} restarts: {last_error}")) from None
            except _Retry as err:
                failures = 1 if self.fetched > before else failures + 1
                last_error = str(err)
                if failures >= self.opts.max_tries:
                    raise DownloadError(self.dl.mask(
                        f"{self.dest.name}: gave up after {failures} tries: {last_error}")) from None
                delay = self.dl.backoff(failures, err.retry_after)
                log.info("%s: %s; retry %d/%d in %.1fs", self.dest.name, self.dl.mask(last_error), failures,
                         self.opts.max_tries, delay)
                if self.stop.wait(delay):
                    raise DownloadStopped(f"{self.dest.name}: stopped; the partial file is kept") from None

    def _check_remote(self, remote: Remote) -> None:
        req = self.req
        problem = _unexpected_type(remote.content_type, self.dest)
        if problem:
            raise DownloadError(self.dl.mask(f"{self.dest.name}: {problem} ({req.url})"))
        if req.size is not None and remote.size is not None and req.size != remote.size:
            raise DownloadError(
                f"{self.dest.name}: the server's file is {remote.size} bytes but the catalog expects {req.size}: "
                "the file changed upstream or the catalog is wrong"
            )
        if req.sha256 and remote.sha256 and req.sha256.lower() != remote.sha256:
            raise DownloadError(
                f"{self.dest.name}: the server announces sha256 {remote.sha256[:12]}… but the catalog pins "
                f"{req.sha256.lower()[:12]}…: the file changed upstream"
            )
        if (remote.size is not None and remote.size < 1024 and _is_model_path(self.dest)
                and req.size is None and remote.sha256 is None):
            raise DownloadError(f"{self.dest.name}: the server announces only {remote.size} bytes: not a model file")

    def _transfer(self, remote: Remote, done: _Intervals) -> Any:
        size = remote.size
        multi = (remote.accept_ranges and size is not None and size >= self.opts.min_split
                 and self.opts.connections > 1)
        if multi:
            plan = _Plan(size, done, self.opts.piece_size, self.opts.steal_min, self.opts.connections, steal=True)
        else:
            whole = max(size or 1, 1)
            plan = _Plan(size, done, whole, whole, 1, steal=False)
        expected_sha = (self.req.sha256 or remote.sha256 or "").lower() or None
        if size is not None:
            check_free_space([(self.dest, size - done.total())], 0)
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if size is not None and os.fstat(fd).st_size < size and multi:
                os.ftruncate(fd, size)
            self.lock.write(self._state(remote, done))
            if self.progress:
                self.progress(done.total(), size)
            feed = _HashFeed(fd) if expected_sha else None
            run = _Run(self, remote, plan, fd, feed)
            workers = 1 if not multi else max(1, min(self.opts.connections, plan.pieces_left()))
            threads = [threading.Thread(target=run.worker, name=f"dl-{self.dest.name[:20]}-{i}", daemon=True)
                       for i in range(workers)]
            for thread in threads:
                thread.start()
            synced = done.total()
            while any(t.is_alive() for t in threads):
                run.wake.wait(0.1)
                run.wake.clear()
                if feed is not None and not run.abort.is_set():
                    with plan.lock:
                        prefix = plan.done.prefix()
                    if prefix - feed.pos >= 4 * MiB:
                        feed.catch_up(prefix)
                if run.written - synced >= self.opts.sync_bytes:
                    synced = run.written
                    os.fdatasync(fd)
            for thread in threads:
                thread.join()
            with plan.lock:
                self.lock.write(self._state(remote, plan.done))
            run.raise_error()
            if size is None:
                size = plan.done.total()
                remote.size = size
            if plan.done.total() != size or plan.done.prefix() != size:
                raise _Retry(f"incomplete: {plan.done.total()} of {size} bytes")
            os.ftruncate(fd, size)
            if feed is not None:
                feed.catch_up(size)
            os.fsync(fd)
        finally:
            os.close(fd)
        return feed.hasher if feed is not None else None

    def _finish(self, remote: Remote, hasher: Any) -> FetchResult:
        size = remote.size if remote.size is not None else self.part.stat().st_size
        actual = self.part.stat().st_size
        if actual != size:
            raise _Restart(f"size mismatch after download: {actual} bytes, expected {size}")
        expected = (self.req.sha256 or remote.sha256 or "").lower() or None
        digest = hasher.hexdigest() if hasher is not None else None
        if expected and digest != expected:
            raise _Restart(f"sha256 mismatch: expected {expected[:12]}…, got {digest[:12] if digest else '?'}… "
                           "(the server sent different bytes)")
        if _is_model_path(self.dest):
            with self.part.open("rb") as handle:
                reason = sniff_error_body(handle.read(512))
            if reason is None and self.dest.suffix.lower() in (".safetensors", ".sft"):
                reason = check_safetensors(self.part, size)
            if reason:
                self._reset()
                raise DownloadError(f"{self.dest.name}: {reason}; nothing was kept")
        os.replace(self.part, self.dest)
        _fsync_dir(self.dest.parent)
        self.lock.remove()
        log.info("%s: done (%s%s)", self.dest.name, human(size), ", sha256 verified" if expected else "")
        return FetchResult(self.dest, size, digest, self.fetched)


_HASH_BUFFERS = threading.local()


class _HashFeed:
    """sha256 of the .part in file order, fed inline by the connection writing at the hashed
    position (no second read) and otherwise caught up from the file by the coordinator."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hasher = hashlib.sha256()
        self.pos = 0
        self.lock = threading.Lock()

    def offer(self, data: bytes, offset: int) -> None:
        """From a download thread: hash ``data`` now if it is next in line (never waits)."""
        if offset != self.pos or not self.lock.acquire(blocking=False):
            return
        try:
            if offset == self.pos:
                self.hasher.update(data)
                self.pos += len(data)
        finally:
            self.lock.release()

    def catch_up(self, end: int) -> None:
        with self.lock:
            if self.pos < end:
                self.pos = _hash_upto(self.fd, self.hasher, self.pos, end)


def _hash_upto(fd: int, hasher: Any, start: int, end: int) -> int:
    """Feed bytes [start, end) of the .part to ``hasher`` through one reused buffer."""
    buf = getattr(_HASH_BUFFERS, "buf", None)
    if buf is None:
        buf = _HASH_BUFFERS.buf = bytearray(4 * MiB)
    view = memoryview(buf)
    pos = start
    while pos < end:
        n = os.preadv(fd, [view[: min(len(buf), end - pos)]], pos)
        if n <= 0:
            break
        hasher.update(view[:n])
        pos += n
    return pos


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename itself is done
    finally:
        os.close(fd)


class _Run:
    """The connections of one attempt: each takes pieces until none is left or one fails."""

    def __init__(self, transfer: _Transfer, remote: Remote, plan: _Plan, fd: int, feed: _HashFeed | None) -> None:
        self.t = transfer
        self.feed = feed
        self.remote = remote
        self.plan = plan
        self.fd = fd
        self.abort = threading.Event()
        self.wake = threading.Event()
        self.errors: list[BaseException] = []
        self.written = 0
        self._since_checkpoint = 0
        self._checkpoint_at = time.monotonic()

    def raise_error(self) -> None:
        if not self.errors:
            if self.t.stop.is_set():
                raise DownloadStopped(f"{self.t.dest.name}: stopped; the partial file is kept")
            return
        order = (DiskFullError, DownloadError, _Restart, _Retry)
        for kind in order:
            for err in self.errors:
                if isinstance(err, kind) and not isinstance(err, DownloadStopped):
                    raise err
        raise self.errors[0]

    def _fail(self, err: BaseException) -> None:
        with self.plan.lock:
            self.errors.append(err)
        self.abort.set()
        self.wake.set()

    def worker(self) -> None:
        try:
            while not self.abort.is_set() and not self.t.stop.is_set():
                piece = self.plan.take()
                if piece is None:
                    return
                try:
                    self._piece(piece)
                finally:
                    self.plan.release(piece)
        except (DownloadError, _Restart, _Retry) as err:
            self._fail(err)
        except Exception as err:  # a bug or an unexpected library error: fail the file, keep the worker
            log.exception("%s: unexpected error in a download thread", self.t.dest.name)
            self._fail(DownloadError(f"{self.t.dest.name}: unexpected error: {err.__class__.__name__}: {err}"))
        finally:
            self.wake.set()

    def _piece(self, piece: _Piece) -> None:
        """Fetch one piece, retrying transient failures here (other connections go on)."""
        failures = 0
        opts = self.t.opts
        while True:
            if self.abort.is_set() or self.t.stop.is_set():
                return
            before = piece.pos
            try:
                self._stream(piece)
                return
            except _Reresolve:
                raise
            except _Retry as err:
                if not self.remote.accept_ranges and piece.pos > piece.start:
                    raise _Restart(f"{err}; the server cannot resume (no range support)") from None
                failures = 1 if piece.pos > before else failures + 1
                if failures >= opts.max_tries:
                    raise DownloadError(self.t.dl.mask(
                        f"{self.t.dest.name}: gave up after {failures} tries: {err}")) from None
                delay = self.t.dl.backoff(failures, err.retry_after)
                log.info("%s: %s; retrying that range in %.1fs", self.t.dest.name, self.t.dl.mask(str(err)), delay)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    if self.abort.is_set() or self.t.stop.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                        return

    def _stream(self, piece: _Piece) -> None:
        remote = self.remote
        headers: dict[str, str] = {}
        ranged = remote.accept_ranges and (piece.pos > 0 or piece.end is not None)
        if ranged:
            end = "" if piece.end is None else str(piece.end)
            headers["Range"] = f"bytes={piece.pos}-{end}"
            if remote.validator:
                headers["If-Range"] = remote.validator
        resp, hops, final = self.t.dl.open(remote.final_url, headers)
        try:
            status = resp.status_code
            if status not in (200, 206):
                if status == 416:
                    raise _Restart("the server answered 416 to a resume request")
                if status in (401, 403, 404, 410) and remote.final_url != remote.url:
                    raise _Reresolve(f"HTTP {status} from {_host(final)} (signed link expired?)")
                raise self.t.dl._fail(remote.url, resp, hops)
            problem = _unexpected_type(resp.headers.get("Content-Type", ""), self.t.dest)
            if problem:
                raise DownloadError(self.t.dl.mask(f"{self.t.dest.name}: {problem}"))
            length_header = resp.headers.get("Content-Length", "")
            length = int(length_header) if length_header.isdigit() else None
            if status == 206:
                match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "").strip())
                if not match or int(match.group(1)) != piece.pos or (
                        match.group(3) != "*" and remote.size is not None and int(match.group(3)) != remote.size):
                    raise _Restart(f"the server answered Content-Range {resp.headers.get('Content-Range')!r} "
                                   f"to bytes={piece.pos}-")
                if length is not None and length != int(match.group(2)) - int(match.group(1)) + 1:
                    raise _Retry(f"the server announced {length} bytes for a {match.group(0)} range")
                if piece.end is not None and int(match.group(2)) < piece.end:
                    with self.plan.lock:
                        piece.end = int(match.group(2))
                etag = _strong_etag(resp.headers.get("ETag"))
                if etag and _strong_etag(remote.etag) and etag != remote.etag:
                    raise _Restart("the remote file changed (new ETag)")
            else:
                if piece.pos != 0:
                    raise _Restart("the server sent the whole file to a resume request (the file changed "
                                   "or it does not resume)")
                if ranged and piece.end is not None and remote.size is not None and piece.end < remote.size - 1:
                    raise _Restart("the server ignores ranges")
                if remote.size is not None and length is not None and length != remote.size:
                    raise _Retry(f"the server announced {length} bytes, expected {remote.size}")
            self._read_body(resp, piece, length)
        finally:
            resp.close()

    def _read_body(self, resp: requests.Response, piece: _Piece, length: int | None) -> None:
        raw = resp.raw
        opts = self.t.opts
        received = 0
        while True:
            if self.abort.is_set() or self.t.stop.is_set():
                return
            with self.plan.lock:
                want = opts.chunk if piece.end is None else min(opts.chunk, piece.end - piece.pos + 1)
            if want <= 0:
                return
            try:
                data = raw.read1(want, decode_content=False)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as err:
                raise _Retry(f"connection lost after {human(received)} ({_reason(err)})") from None
            if not data:
                if piece.end is None and (length is None or received == length):
                    return
                raise _Retry(f"the connection closed after {human(received)}"
                             f"{'' if length is None else ' of ' + human(length)}")
            try:
                _write_at(self.fd, data, piece.pos)
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFullError(
                        f"the disk is full while writing {self.t.dest.name} "
                        f"({human(disk_free(self.t.dest))} free): free space and retry; the partial file is kept"
                    ) from None
                raise DownloadError(f"cannot write {self.t.part}: {err.strerror}") from None
            if self.feed is not None:
                self.feed.offer(data, piece.pos)
            n = len(data)
            received += n
            self._advance(piece, n)

    def _advance(self, piece: _Piece, n: int) -> None:
        t = self.t
        with self.plan.lock:
            self.plan.done.add(piece.pos, piece.pos + n)
            piece.pos += n
            self.written += n
            self._since_checkpoint += n
            now = time.monotonic()
            due = now - self._checkpoint_at >= t.opts.checkpoint_seconds
            if due or self._since_checkpoint >= t.opts.checkpoint_bytes:
                t.lock.write(t._state(self.remote, self.plan.done))
                self._since_checkpoint = 0
                self._checkpoint_at = now
            total = self.plan.done.total()
        with t.fetched_lock:
            t.fetched += n
        if t.progress:
            t.progress(total, self.remote.size)


# ---------------------------------------------------------------------------------------------
# Module-level conveniences
# ---------------------------------------------------------------------------------------------
def probe(url: str, settings: Any, session: requests.Session | None = None) -> ProbeResult:
    """Classify ``url``: ok / needs_token / gated / not_found / moved / error (no file written).

    Pass a ``session`` (``make_session()``) to reuse connections over many probes.
    """
    downloader = Downloader(settings, session=session or make_session(pool_size=4))
    try:
        return downloader.probe(url)
    finally:
        if session is None:
            downloader.session.close()


def fetch_file(settings: Any, req: FileRequest, **kwargs: Any) -> FetchResult:
    """Fetch one file with a session of its own (closed afterwards)."""
    downloader = Downloader(settings)
    try:
        return downloader.fetch(req, **kwargs)
    finally:
        downloader.session.close()
