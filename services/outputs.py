"""The gallery's index of workspace/output: images, video and audio, newest first, in pages.

Thumbnails are made with Pillow and cached under workspace/.cache/thumbnails (the key holds the
file's path, size and mtime, so a changed file gets a new thumbnail). The prompt and workflow that
ComfyUI embeds in its PNGs (text chunks ``prompt`` and ``workflow``) are read back for "show" and
"run again". ``zip_stream`` yields a ZIP of many outputs chunk by chunk, with no temporary file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from services.errors import PathError
from services.paths import within
from services.settings import Settings

log = logging.getLogger("comfypod.outputs")

KINDS: dict[str, str] = {
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".webp": "image", ".gif": "image", ".bmp": "image",
    ".avif": "image", ".tif": "image", ".tiff": "image",
    ".mp4": "video", ".webm": "video", ".mov": "video", ".mkv": "video", ".avi": "video", ".m4v": "video",
    ".wav": "audio", ".mp3": "audio", ".flac": "audio", ".ogg": "audio", ".opus": "audio", ".m4a": "audio",
    ".aac": "audio",
}
THUMB_SIZE = 320


@dataclass(frozen=True)
class OutputItem:
    rel: str  # posix path relative to workspace/output
    kind: str  # image | video | audio
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def subfolder(self) -> str:
        return self.rel.rpartition("/")[0]

    def to_dict(self) -> dict:
        return {"path": self.rel, "name": self.name, "subfolder": self.subfolder, "kind": self.kind,
                "size": self.size, "mtime": self.mtime}


@dataclass(frozen=True)
class Page:
    items: list[OutputItem]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def to_dict(self) -> dict:
        return {"items": [i.to_dict() for i in self.items], "total": self.total, "page": self.page,
                "per_page": self.per_page, "pages": self.pages}


def kind_of(name: str) -> str | None:
    return KINDS.get(os.path.splitext(name)[1].lower())


def scan(output_dir: Path) -> list[OutputItem]:
    """Every image, video and audio file under ``output_dir``, newest first (hidden folders skipped)."""
    items: list[OutputItem] = []
    if not output_dir.is_dir():
        return items
    root = str(output_dir)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            kind = kind_of(filename)
            if kind is None or filename.startswith("."):
                continue
            full = os.path.join(dirpath, filename)
            try:
                stat = os.stat(full)
            except OSError:
                continue  # removed while we looked
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            items.append(OutputItem(rel, kind, stat.st_size, stat.st_mtime))
    items.sort(key=lambda i: (i.mtime, i.rel), reverse=True)
    return items


def page(settings: Settings, number: int = 1, per_page: int = 48, kind: str | None = None) -> Page:
    items = scan(settings.output_dir)
    if kind:
        items = [i for i in items if i.kind == kind]
    per_page = max(1, min(per_page, 500))
    pages = max(1, math.ceil(len(items) / per_page))
    number = max(1, min(number, pages))
    start = (number - 1) * per_page
    return Page(items[start:start + per_page], len(items), number, per_page)


def resolve(settings: Settings, rel: str) -> Path:
    """The real path of one output; refuses anything outside workspace/output or not a file."""
    path = within(settings.output_dir, rel)
    if not path.is_file():
        raise PathError(f"no such output: {rel}")
    return path


def item(settings: Settings, rel: str) -> OutputItem:
    path = resolve(settings, rel)
    kind = kind_of(path.name)
    if kind is None:
        raise PathError(f"not an image, video or audio file: {rel}")
    stat = path.stat()
    return OutputItem(rel, kind, stat.st_size, stat.st_mtime)


def thumbnails_dir(settings: Settings) -> Path:
    return settings.workspace / ".cache" / "thumbnails"


def thumbnail(settings: Settings, rel: str, size: int = THUMB_SIZE) -> Path | None:
    """A cached WebP thumbnail of an image output (first frame of an animation); None otherwise."""
    path = resolve(settings, rel)
    if kind_of(path.name) != "image":
        return None
    stat = path.stat()
    key = hashlib.sha256(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\0{size}".encode()).hexdigest()[:32]
    target = thumbnails_dir(settings) / f"{key}.webp"
    if target.is_file():
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.seek(0)
            frame = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
            frame.thumbnail((size, size))
            frame.save(tmp, "WEBP", quality=80)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        tmp.unlink(missing_ok=True)  # a full disk leaves half a file behind (issue 11)
        log.warning("no thumbnail for %s: %s", rel, err)
        return None
    os.replace(tmp, target)
    return target


def embedded(settings: Settings, rel: str) -> dict:
    """The prompt (API format) and workflow (UI format) ComfyUI stored in an output PNG."""
    path = resolve(settings, rel)
    found: dict = {"prompt": None, "workflow": None}
    if kind_of(path.name) != "image":
        return found
    try:
        with Image.open(path) as image:
            texts = dict(getattr(image, "text", None) or image.info or {})
    except (OSError, UnidentifiedImageError, ValueError) as err:
        log.warning("cannot read %s: %s", rel, err)
        return found
    for key in ("prompt", "workflow"):
        value = texts.get(key)
        if isinstance(value, str):
            try:
                found[key] = json.loads(value)
            except ValueError:
                log.warning("%s: the %s text chunk is not JSON", rel, key)
    return found


def prompt_text(prompt: dict | None) -> list[str]:
    """The text prompts of an API prompt (CLIPTextEncode-like nodes), for the gallery card."""
    texts = []
    for node in (prompt or {}).values():
        if not isinstance(node, dict):
            continue
        for name in ("text", "prompt", "positive", "text_g", "text_l"):
            value = (node.get("inputs") or {}).get(name)
            if isinstance(value, str) and value.strip():
                texts.append(value.strip())
    return texts


def delete(settings: Settings, rels: Iterable[str]) -> list[str]:
    """Delete outputs (and their thumbnails go stale by key); returns what was removed."""
    removed = []
    for rel in rels:
        path = resolve(settings, rel)
        path.unlink()
        removed.append(rel)
        log.info("deleted output %s", rel)
    return removed


class _Sink:
    """A write-only, non-seekable file for zipfile that hands out what was written so far."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        if self.chunks:
            data = b"".join(self.chunks)
            self.chunks.clear()
            yield data


def zip_stream(settings: Settings, rels: Iterable[str], chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """A ZIP archive of the given outputs, produced as it is sent (no temporary file)."""
    paths = [(resolve(settings, rel), rel) for rel in rels]  # check every path before the first byte
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        for path, rel in paths:
            info = zipfile.ZipInfo.from_file(path, rel)
            info.compress_type = zipfile.ZIP_STORED
            with open(path, "rb") as source, archive.open(info, "w", force_zip64=info.file_size > 2**31) as target:
                while chunk := source.read(chunk_size):
                    target.write(chunk)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()
