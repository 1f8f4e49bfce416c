"""A local HTTP file server for download tests and benchmarks (test-only, standard library).

It serves registered byte blobs (in memory or from a file) with Range, If-Range, ETag and
Last-Modified, Hugging Face's headers (X-Linked-Etag, X-Linked-Size, X-Repo-Commit, and the
302 to a "CDN" path on another host name), and fault modes chosen per path::

    server = RangeServer().start()
    url = server.add("/model.safetensors", data, throttle=1 << 20, drop_after=4096)
    ...
    server.bytes_served("/model.safetensors")   # body bytes actually written to sockets
    server.stop()

Fault keywords of ``add`` (all optional):
    throttle=BYTES_PER_S   per-connection rate limit
    drop_after=N           close the connection after N body bytes (``drop_times`` times in all)
    drop_times=1
    stall_after=N          stop sending after N body bytes for ``stall_seconds`` (socket kept open)
    stall_seconds=30, stall_times=1   (stalls happen ``stall_times`` times in all)
    errors=[500, 429, ...] statuses answered, in order, to the next requests of this path
    retry_after="1"        Retry-After header sent with 429/503 from ``errors``
    always_status=416|500|…  every request answered with this status
    range_416=True         every resume request (a range not starting at 0) answered 416
    range_416_times=N      only the first N of them
    no_range=True          Range ignored: always 200 with the whole body
    token="secret"         requires "Authorization: Bearer secret", else 401
    gated=True             403 with Hugging Face's GatedRepo headers
    content_length=N       announced length (HEAD and GET) differs from the real body
    serve=bytes            bytes actually served instead of ``data`` (wrong bytes)
    serve_times=N          only the first N bodies use ``serve`` (one-byte probe bodies not counted)
    html=True              200 text/html error page instead of the file
    json_error=True        200 application/json error body instead of the file
    redirect_to=URL        302 to URL
    hf=True                X-Linked-Etag (sha256), X-Linked-Size, X-Repo-Commit and ETag=sha256
    hf_cdn=True            with hf: answer 302 to /_cdn/<path> on ``cdn_host`` (default localhost)
    cdn_expire_after=N     the CDN link answers 403 once, after N CDN requests (a signed URL expiring)
    etag="..." / etag=None,  last_modified="..." / None
    disposition=NAME       Content-Disposition: attachment; filename="NAME"
    change_after=N         after N GET bodies the content changes to ``changed`` (new ETag)
    changed=bytes
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

DEFAULT_LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Sign in</h1></body></html>\n"
JSON_ERROR = b'{"error": "Repository not found or access denied"}\n'


@dataclass
class Blob:
    path: str
    data: bytes | Path
    faults: dict[str, Any]
    etag: str | None
    last_modified: str | None
    counters: dict[str, int] = field(default_factory=dict)
    errors: list[int] = field(default_factory=list)

    def size(self) -> int:
        if isinstance(self.data, Path):
            return self.data.stat().st_size
        return len(self.data)

    def bump(self, key: str) -> int:
        """Increment a counter, return its value before the increment."""
        value = self.counters.get(key, 0)
        self.counters[key] = value + 1
        return value


@dataclass
class RequestRecord:
    method: str
    path: str
    host: str
    range: str | None
    if_range: str | None
    authorization: str | None
    status: int = 0
    body_bytes: int = 0
    client_port: int = 0


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: RangeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # clients that hang up mid-body are part of the tests: stay quiet
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # -- helpers --------------------------------------------------------------
    def _simple(self, record: RequestRecord, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                head: bool = False, content_type: str = "text/plain") -> None:
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        raw_path = self.path.split("?", 1)[0]
        cdn = raw_path.startswith("/_cdn/")
        path = raw_path[len("/_cdn"):] if cdn else raw_path
        record = RequestRecord(
            method=self.command, path=raw_path, host=self.headers.get("Host", ""),
            range=self.headers.get("Range"), if_range=self.headers.get("If-Range"),
            authorization=self.headers.get("Authorization"), client_port=self.client_address[1],
        )
        owner._record(record)  # logged before any answer leaves, so a client never outruns the log
        with owner.lock:
            blob = owner.blobs.get(path)
            if blob is None:
                pass
            elif blob.errors:
                status = blob.errors.pop(0)
                headers = {}
                if status in (429, 503) and blob.faults.get("retry_after") is not None:
                    headers["Retry-After"] = str(blob.faults["retry_after"])
                self._simple(record, status, b"error\n", headers, head)
                return
        if blob is None:
            self._simple(record, 404, b"Entry not found\n",
                         {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}, head)
            return
        f = blob.faults
        if cdn and f.get("cdn_expire_after") is not None:
            with owner.lock:
                seen = blob.bump("cdn")
            if seen == f["cdn_expire_after"]:
                self._simple(record, 403, b"Request has expired\n", {}, head)
                return
        if f.get("always_status"):
            self._simple(record, int(f["always_status"]), b"error\n", {}, head)
            return
        if f.get("redirect_to") and not cdn:
            self._simple(record, 302, b"", {"Location": f["redirect_to"]}, head)
            return
        if f.get("token") and not cdn:
            if self.headers.get("Authorization") != f"Bearer {f['token']}":
                headers = {"X-Error-Code": "RepoNotFound",
                           "X-Error-Message": "Invalid credentials in Authorization header"}
                self._simple(record, 401, b"Invalid credentials\n", headers, head)
                return
        if f.get("gated") and not cdn:
            repo = f.get("repo", "org/model")
            self._simple(record, 403, b"Access to model is restricted\n", {
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to model {repo} is restricted and you are not in the authorized list. "
                                   f"Visit https://huggingface.co/{repo} to ask for access.",
            }, head)
            return
        if f.get("html"):
            self._simple(record, 200, HTML_PAGE, {}, head, content_type="text/html; charset=utf-8")
            return
        if f.get("json_error"):
            self._simple(record, 200, JSON_ERROR, {}, head, content_type="application/json")
            return

        with owner.lock:
            if f.get("change_after") is not None and not head and blob.counters.get("bodies", 0) >= f["change_after"]:
                if blob.data is not f.get("changed"):
                    blob.data = f.get("changed", b"")
                    blob.etag = f'"{sha256_hex(blob.data)[:16]}-changed"' if blob.etag is not None else None
                    if blob.last_modified is not None:
                        blob.last_modified = "Thu, 02 Jan 2025 00:00:00 GMT"
            data = blob.data
            etag = blob.etag
            last_modified = blob.last_modified
        size = len(data) if isinstance(data, bytes) else data.stat().st_size

        hf_headers: dict[str, str] = {}
        if f.get("hf"):
            digest = owner.digest(blob)
            hf_headers = {
                "X-Linked-Etag": f'"{digest}"',
                "X-Linked-Size": str(size),
                "X-Repo-Commit": f.get("commit", "0123456789abcdef0123456789abcdef01234567"),
            }
            if f.get("hf_cdn") and not cdn:
                host = f.get("cdn_host", "localhost")
                location = f"http://{host}:{owner.port}/_cdn{path}"
                self._simple(record, 302, b"", {"Location": location, "ETag": f'"{digest}"', **hf_headers}, head)
                return

        # range handling
        start, end, status = 0, size - 1, 200
        range_header = self.headers.get("Range")
        if range_header and not f.get("no_range"):
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range not in (etag, last_modified):
                range_header = None
        if range_header and not f.get("no_range"):
            match = _RANGE.match(range_header.strip())
            if not match or (not match.group(1) and not match.group(2)):
                self._simple(record, 416, b"", {"Content-Range": f"bytes */{size}"}, head)
                return
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start = max(0, size - int(match.group(2)))
            if start >= size or start > end:
                self._simple(record, 416, b"", {"Content-Range": f"bytes */{size}"}, head)
                return
            if f.get("range_416") and start > 0:
                with owner.lock:
                    n416 = blob.bump("ranged416")
                limit = f.get("range_416_times")
                if limit is None or n416 < limit:
                    self._simple(record, 416, b"", {"Content-Range": f"bytes */{size}"}, head)
                    return
            status = 206

        serve = data
        if not head:
            with owner.lock:
                blob.bump("bodies")
            if f.get("serve") is not None and end > start:
                with owner.lock:
                    served_wrong = blob.bump("wrong")
                if served_wrong < f.get("serve_times", 1 << 30):
                    serve = f["serve"]

        length = end - start + 1
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", f.get("content_type", "application/octet-stream"))
        announced = f.get("content_length")
        self.send_header("Content-Length", str(announced if announced is not None else length))
        if not f.get("no_range"):
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if etag is not None:
            self.send_header("ETag", etag)
        if last_modified is not None:
            self.send_header("Last-Modified", last_modified)
        for key, value in hf_headers.items():
            self.send_header(key, value)
        if f.get("disposition"):
            self.send_header("Content-Disposition", f'attachment; filename="{f["disposition"]}"')
        if f.get("close"):
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        with owner.lock:
            owner.busy += 1
        try:
            self._send_body(blob, serve, start, length, record)
        finally:
            with owner.lock:
                owner.busy -= 1
        if announced is not None and announced != length:
            self.close_connection = True

    def _send_body(self, blob: Blob, data: bytes | Path, start: int, length: int, record: RequestRecord) -> None:
        owner = self.server.owner
        f = blob.faults
        drop_at = f.get("drop_after") if length > f.get("drop_after", 0) else None
        stall_at = f.get("stall_after") if length > f.get("stall_after", 0) else None
        with owner.lock:
            if drop_at is not None:
                if blob.counters.get("drops", 0) >= f.get("drop_times", 1):
                    drop_at = None
                else:
                    blob.bump("drops")
            if stall_at is not None:
                if blob.counters.get("stalls", 0) >= f.get("stall_times", 1):
                    stall_at = None
                else:
                    blob.bump("stalls")
        rate = f.get("throttle")
        fast_file = isinstance(data, Path) and not rate and drop_at is None and stall_at is None
        if fast_file:
            assert isinstance(data, Path)
            with data.open("rb") as fh:
                self.wfile.flush()
                sent = 0
                sock = self.connection
                while sent < length:
                    n = os.sendfile(sock.fileno(), fh.fileno(), start + sent, min(length - sent, 1 << 30))
                    if n == 0:
                        break
                    sent += n
                    owner._count(blob.path, n, record)
            return
        view = memoryview(data) if isinstance(data, bytes) else None
        fh = data.open("rb") if isinstance(data, Path) else None
        try:
            sent = 0
            began = time.monotonic()
            chunk = CHUNK if not rate else max(1024, min(CHUNK, int(rate) // 20))
            while sent < length:
                n = min(chunk, length - sent)
                if drop_at is not None:
                    if sent >= drop_at:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    n = min(n, drop_at - sent)
                if stall_at is not None and sent >= stall_at:
                    owner.stop_event.wait(float(f.get("stall_seconds", 30)))
                    stall_at = None
                    if owner.stop_event.is_set():
                        return
                    continue
                if stall_at is not None:
                    n = min(n, stall_at - sent)
                if view is not None:
                    piece = view[start + sent:start + sent + n]
                else:
                    assert fh is not None
                    fh.seek(start + sent)
                    piece = memoryview(fh.read(n))
                if not piece:
                    break
                self.wfile.write(piece)
                sent += len(piece)
                owner._count(blob.path, len(piece), record)
                if rate:
                    ahead = sent / float(rate) - (time.monotonic() - began)
                    if ahead > 0 and owner.stop_event.wait(ahead):
                        return
        finally:
            if fh is not None:
                fh.close()


class RangeServer:
    """Threaded HTTP server on 127.0.0.1 (port 0 by default) serving registered blobs."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.blobs: dict[str, Blob] = {}
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.log: list[RequestRecord] = []
        self._served: dict[str, int] = {}
        self._digests: dict[int, str] = {}
        self._server = _Server((host, port), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self.busy = 0  # bodies being sent right now

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> RangeServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"range-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- registration ---------------------------------------------------------
    def add(self, path: str, data: bytes | str | os.PathLike[str], *, etag: str | None | bool = True,
            last_modified: str | None = DEFAULT_LAST_MODIFIED, errors: list[int] | None = None,
            **faults: Any) -> str:
        """Register ``data`` (bytes, or a file path) at ``path``; return its URL on 127.0.0.1."""
        if not path.startswith("/"):
            path = "/" + path
        blob_data: bytes | Path = data if isinstance(data, bytes) else Path(data)
        if etag is True:
            if isinstance(blob_data, bytes):
                etag = f'"{sha256_hex(blob_data)[:32]}"'
            else:
                st = blob_data.stat()
                etag = f'"{st.st_size:x}-{int(st.st_mtime):x}"'
        elif etag is False:
            etag = None
        if faults.get("hf") and etag is not None and isinstance(blob_data, bytes):
            etag = f'"{sha256_hex(blob_data)}"'
        blob = Blob(path=path, data=blob_data, faults=faults, etag=etag, last_modified=last_modified,
                    errors=list(errors or []))
        with self.lock:
            self.blobs[path] = blob
        return self.url(path)

    def remove(self, path: str) -> None:
        with self.lock:
            self.blobs.pop(path, None)

    def url(self, path: str, host: str | None = None) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{host or self.host}:{self.port}{path}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def digest(self, blob: Blob) -> str:
        data = blob.data
        key = id(data)
        with self.lock:
            if key not in self._digests:
                if isinstance(data, bytes):
                    self._digests[key] = sha256_hex(data)
                else:
                    h = hashlib.sha256()
                    with data.open("rb") as fh:
                        while piece := fh.read(1 << 20):
                            h.update(piece)
                    self._digests[key] = h.hexdigest()
            return self._digests[key]

    # -- accounting -------------------------------------------------------------
    def _count(self, path: str, n: int, record: RequestRecord) -> None:
        record.body_bytes += n
        with self.lock:
            self._served[path] = self._served.get(path, 0) + n

    def _record(self, record: RequestRecord) -> None:
        with self.lock:
            self.log.append(record)

    def bytes_served(self, path: str | None = None) -> int:
        """Body bytes written to sockets for ``path`` (CDN copies included), or for every path."""
        with self.lock:
            if path is None:
                return sum(self._served.values())
            if not path.startswith("/"):
                path = "/" + path
            return self._served.get(path, 0)

    def requests(self, path: str | None = None, method: str | None = None) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.log
                    if (path is None or r.path in (path, "/_cdn" + path)) and (method is None or r.method == method)]

    def connections(self, path: str | None = None) -> int:
        """Distinct client connections (source ports) seen for ``path`` (or for every path)."""
        return len({r.client_port for r in self.requests(path)})

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no body is being sent (a client that hung up may leave a writer running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.busy == 0:
                    return True
            time.sleep(0.01)
        return False

    def reset_counts(self) -> None:
        """Forget the counters and the request log (waits for bodies in flight first)."""
        self.wait_idle()
        with self.lock:
            self._served.clear()
            self.log.clear()


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def pseudo_random(size: int, seed: int = 1) -> bytes:
    """Deterministic, incompressible-looking bytes (fast: sha256 blocks repeated)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


def safetensors_blob(size: int, seed: int = 1) -> bytes:
    """A valid .safetensors file of exactly ``size`` bytes: one U8 tensor filling the body."""
    header = b""
    for _ in range(3):  # the header length depends on the numbers in it
        body = size - 8 - len(header)
        text = json.dumps({"w": {"dtype": "U8", "shape": [body], "data_offsets": [0, body]}}).encode()
        header = text.ljust(-(-len(text) // 8) * 8, b" ")
    body = size - 8 - len(header)
    if body < 0:
        raise ValueError(f"{size} bytes is too small for a .safetensors file")
    return struct.pack("<Q", len(header)) + header + pseudo_random(body, seed)


def main(argv: list[str] | None = None) -> int:
    """Serve one file in its own process: ``python -m tests.support.range_server FILE [--throttle B/s]``.

    Prints the URL on the first line of stdout, then serves until killed (used by bench/).
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--throttle", type=float, default=0, help="bytes per second per connection")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = RangeServer(port=args.port).start()
    faults: dict[str, Any] = {"throttle": args.throttle} if args.throttle else {}
    url = server.add("/" + args.file.name, args.file, **faults)
    print(url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
