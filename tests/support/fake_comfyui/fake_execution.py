"""Execution of a validated prompt in the fake ComfyUI: node order, caching, simulated nodes,
and the websocket messages the real server sends while it runs (same order, same shapes)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import string
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fake_models import ModelFolders
from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

# Node classes whose result is never cached (ComfyUI: IS_CHANGED returns something new each time).
NEVER_CACHED = {"SaveImageWebsocket"}
SAMPLERS = {"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"}
MAX_SIDE = 1024
HISTORY_EVENTS = {
    "execution_start", "execution_cached", "execution_success", "execution_error", "execution_interrupted",
}
PREVIEW_SUFFIX = "".join(random.choice(string.ascii_lowercase) for _ in range(5))


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Img:
    width: int
    height: int
    batch: int = 1
    color: int = 0x808080


@dataclass
class Latent:
    width: int
    height: int
    batch: int = 1
    seed: int = 0


@dataclass
class Video:
    frames: Img
    fps: float = 24.0


class Interrupted(Exception):
    pass


class NodeFailure(Exception):
    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


@dataclass
class Dirs:
    output: Path
    input: Path
    temp: Path
    models: ModelFolders


@dataclass
class Timing:
    step_delay: float = 0.02
    node_delay: float = 0.0


Send = Callable[[str, dict, str | None], Awaitable[None]]
SendBytes = Callable[[int, bytes, str | None], Awaitable[None]]


@dataclass
class RunResult:
    outputs: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)
    status_str: str = "success"
    completed: bool = True


def _signature(prompt: dict, node_id: str, memo: dict) -> str:
    if node_id in memo:
        return memo[node_id]
    node = prompt[node_id]
    parts = {"class_type": node["class_type"], "inputs": {}}
    for name, value in sorted((node.get("inputs") or {}).items()):
        if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
            parts["inputs"][name] = ["link", _signature(prompt, str(value[0]), memo), value[1]]
        else:
            parts["inputs"][name] = value
    if node["class_type"] in NEVER_CACHED:
        parts["nonce"] = time.time_ns()
    memo[node_id] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return memo[node_id]


def _links(node: dict, prompt: dict) -> list[str]:
    return [str(v[0]) for v in (node.get("inputs") or {}).values()
            if isinstance(v, list) and len(v) == 2 and str(v[0]) in prompt]


def _needed(prompt: dict, outputs: list[str]) -> list[str]:
    seen: list[str] = []
    stack = list(reversed(outputs))
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.append(node_id)
        stack.extend(reversed(_links(prompt[node_id], prompt)))
    order = {nid: i for i, nid in enumerate(prompt)}
    return sorted(seen, key=lambda n: order[n])


def execution_order(prompt: dict, nodes: list[str], done: set[str], object_info: dict) -> list[str]:
    """Topological order that, like ComfyUI, runs a ready output node before anything else."""
    remaining = [n for n in nodes if n not in done]
    finished = set(done)
    order: list[str] = []
    while remaining:
        ready = [n for n in remaining if all(d in finished or d not in nodes for d in _links(prompt[n], prompt))]
        if not ready:
            raise NodeFailure("Exception", "Dependency cycle detected")
        outputs = [n for n in ready if object_info[prompt[n]["class_type"]].get("output_node")]
        pick = outputs[0] if outputs else ready[0]
        order.append(pick)
        finished.add(pick)
        remaining.remove(pick)
    return order


class Execution:
    """One run of one queue item; ``cache`` maps node signatures to (outputs, ui) across runs."""

    def __init__(self, item: list, object_info: dict, dirs: Dirs, timing: Timing, cache: dict,
                 send: Send, send_bytes: SendBytes, interrupted: Callable[[], bool],
                 client_flags: Callable[[str | None], dict], on_node: Callable[[str | None], None]) -> None:
        self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs = item[:5]
        self.client_id = self.extra_data.get("client_id")
        self.info = object_info
        self.dirs = dirs
        self.timing = timing
        self.cache = cache
        self.send = send
        self.send_bytes = send_bytes
        self.interrupted = interrupted
        self.client_flags = client_flags
        self.on_node = on_node
        self.result = RunResult()
        self.progress: dict[str, dict] = {}
        self.values: dict[str, list] = {}
        self.executed: list[str] = []

    # ---- messages -------------------------------------------------------------------
    async def message(self, event: str, data: dict, broadcast: bool = False) -> None:
        if event in HISTORY_EVENTS:
            self.result.messages.append([event, data])
        if self.client_id is not None or broadcast:
            await self.send(event, data, self.client_id)

    async def to_client(self, event: str, data: dict) -> None:
        if self.client_id is not None:
            await self.send(event, data, self.client_id)

    async def progress_state(self, node_id: str, value, maximum, state: str) -> None:
        self.progress[node_id] = {
            "value": value, "max": maximum, "state": state, "node_id": node_id, "prompt_id": self.prompt_id,
            "display_node_id": node_id, "parent_node_id": None, "real_node_id": node_id,
        }
        await self.send("progress_state", {"prompt_id": self.prompt_id, "nodes": dict(self.progress)}, self.client_id)

    async def step(self, node_id: str, value: int, maximum: int, preview: bytes | None = None) -> None:
        """ComfyUI's progress hook: check for an interrupt, update progress_state, send progress."""
        if self.interrupted():
            raise Interrupted()
        await self.progress_state(node_id, value, maximum, "running")
        modern = bool(self.client_flags(self.client_id).get("supports_preview_metadata"))
        if preview is not None and modern and self.client_id is not None:
            meta = json.dumps({"node_id": node_id, "prompt_id": self.prompt_id, "display_node_id": node_id,
                               "parent_node_id": None, "real_node_id": node_id, "image_type": "image/png"}).encode()
            await self.send_bytes(4, struct.pack(">I", len(meta)) + meta + preview, self.client_id)
        await self.send("progress", {"value": value, "max": maximum, "prompt_id": self.prompt_id, "node": node_id},
                        self.client_id)
        if preview is not None and not modern and self.client_id is not None:
            await self.send_bytes(1, struct.pack(">I", 2) + preview, self.client_id)

    # ---- the run ----------------------------------------------------------------------
    async def run(self) -> RunResult:
        import asyncio

        await self.message("execution_start", {"prompt_id": self.prompt_id, "timestamp": now_ms()})
        needed = _needed(self.prompt, self.outputs)
        memo: dict[str, str] = {}
        signatures = {n: _signature(self.prompt, n, memo) for n in needed}
        cached = [n for n in needed if signatures[n] in self.cache]
        await self.message("execution_cached", {"nodes": cached, "prompt_id": self.prompt_id, "timestamp": now_ms()})
        new_cache = {}
        for node_id in cached:
            values, ui = self.cache[signatures[node_id]]
            self.values[node_id] = values
            new_cache[signatures[node_id]] = (values, ui)
            self.executed.append(node_id)
            if ui is not None and node_id in self.outputs:
                await self.to_client("executed", {"node": node_id, "display_node": node_id, "output": ui,
                                                  "prompt_id": self.prompt_id})
                self.result.outputs[node_id] = ui
                self.result.meta[node_id] = _meta(node_id)
                await self.progress_state(node_id, 1, 1, "finished")
        current = None
        try:
            for node_id in execution_order(self.prompt, needed, set(cached), self.info):
                current = node_id
                self.on_node(node_id)
                await self.progress_state(node_id, 0.0, 1.0, "running")
                await self.to_client("executing", {"node": node_id, "display_node": node_id,
                                                   "prompt_id": self.prompt_id})
                if self.interrupted():
                    raise Interrupted()
                if self.timing.node_delay:
                    await asyncio.sleep(self.timing.node_delay)
                values, ui = await self.run_node(node_id)
                self.values[node_id] = values
                self.executed.append(node_id)
                new_cache[signatures[node_id]] = (values, ui)
                if ui is not None:
                    await self.to_client("executed", {"node": node_id, "display_node": node_id, "output": ui,
                                                      "prompt_id": self.prompt_id})
                    self.result.outputs[node_id] = ui
                    self.result.meta[node_id] = _meta(node_id)
                done = self.progress.get(node_id, {})
                if isinstance(done.get("max"), int) and not isinstance(done.get("max"), bool):
                    await self.progress_state(node_id, done["max"], done["max"], "finished")
                else:
                    await self.progress_state(node_id, 1.0, 1.0, "finished")
            await self.message("execution_success", {"prompt_id": self.prompt_id, "timestamp": now_ms()})
        except Interrupted:
            self.result.status_str, self.result.completed = "error", False
            await self.message("execution_interrupted", {
                "prompt_id": self.prompt_id, "node_id": current, "node_type": self.prompt[current]["class_type"],
                "executed": list(reversed(self.executed)), "timestamp": now_ms()}, broadcast=True)
        except NodeFailure as err:
            self.result.status_str, self.result.completed = "error", False
            inputs = self.prompt[current].get("inputs") or {}
            await self.message("execution_error", {
                "prompt_id": self.prompt_id, "node_id": current, "node_type": self.prompt[current]["class_type"],
                "executed": list(self.executed), "exception_message": err.message,
                "exception_type": err.exception_type,
                "traceback": ['  File "/opt/ComfyUI/execution.py", line 0, in execute\n    <fake>\n'],
                "current_inputs": {k: [str(v)] for k, v in inputs.items()},
                "current_outputs": [*self.executed, current], "timestamp": now_ms()})
        self.cache.clear()
        self.cache.update(new_cache)
        self.on_node(None)
        return self.result

    # ---- simulated nodes --------------------------------------------------------------
    def arg(self, node_id: str, name: str, default=None):
        value = (self.prompt[node_id].get("inputs") or {}).get(name, default)
        if isinstance(value, list) and len(value) == 2 and str(value[0]) in self.values:
            outputs = self.values[str(value[0])]
            return outputs[value[1]] if value[1] < len(outputs) else default
        return value

    def first(self, node_id: str, kind: type):
        for name in self.prompt[node_id].get("inputs") or {}:
            value = self.arg(node_id, name)
            if isinstance(value, kind):
                return value
        return None

    async def run_node(self, node_id: str) -> tuple[list, dict | None]:
        class_type = self.prompt[node_id]["class_type"]
        handler = getattr(self, "node_" + class_type, None)
        if class_type in SAMPLERS:
            handler = self.node_sampler
        if handler is not None:
            return await handler(node_id)
        return self.default_outputs(node_id), None

    def default_outputs(self, node_id: str) -> list:
        class_type = self.prompt[node_id]["class_type"]
        values = []
        for kind in self.info[class_type]["output"]:
            if kind == "IMAGE":
                img = self.first(node_id, Img)
                if img is None:
                    w, h = int(self.arg(node_id, "width", 512)), int(self.arg(node_id, "height", 512))
                    img = Img(w, h, int(self.arg(node_id, "batch_size", 1)))
                values.append(img)
            elif kind == "LATENT":
                latent = self.first(node_id, Latent)
                if latent is None:
                    latent = Latent(int(self.arg(node_id, "width", 512)), int(self.arg(node_id, "height", 512)),
                                    int(self.arg(node_id, "batch_size", 1) or 1))
                values.append(latent)
            elif kind == "VIDEO":
                img = self.first(node_id, Img) or Img(64, 64, 8)
                values.append(Video(img, float(self.arg(node_id, "fps", 24) or 24)))
            else:
                values.append(f"{kind}:{class_type}:{node_id}")
        return values

    async def node_EmptyImage(self, node_id: str):  # noqa: N802
        return [Img(int(self.arg(node_id, "width")), int(self.arg(node_id, "height")),
                    int(self.arg(node_id, "batch_size", 1)), int(self.arg(node_id, "color", 0)))], None

    async def node_ImageInvert(self, node_id: str):  # noqa: N802
        img = self.first(node_id, Img) or Img(64, 64)
        return [Img(img.width, img.height, img.batch, img.color ^ 0xFFFFFF)], None

    async def node_LoadImage(self, node_id: str):  # noqa: N802
        name = str(self.arg(node_id, "image"))
        path = self.dirs.input / name
        if not path.is_file():
            raise NodeFailure("FileNotFoundError", f"[Errno 2] No such file or directory: '{path}'")
        with Image.open(path) as im:
            color = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
            return [Img(im.width, im.height, 1, (color[0] << 16) | (color[1] << 8) | color[2]),
                    f"MASK:{node_id}"], None

    async def node_VAEDecode(self, node_id: str):  # noqa: N802
        latent = self.first(node_id, Latent) or Latent(512, 512)
        color = int(hashlib.sha256(str(latent.seed).encode()).hexdigest()[:6], 16)
        return [Img(latent.width, latent.height, latent.batch, color)], None

    node_VAEDecodeTiled = node_VAEDecode  # noqa: N815

    async def node_sampler(self, node_id: str):
        import asyncio

        steps = self.arg(node_id, "steps")
        if not isinstance(steps, int):
            steps = self._upstream_steps(node_id)
        seed = self.arg(node_id, "seed", self.arg(node_id, "noise_seed", 0))
        if not isinstance(seed, int):
            seed = 0
        latent = self.first(node_id, Latent) or Latent(512, 512)
        for i in range(steps):
            if self.timing.step_delay:
                await asyncio.sleep(self.timing.step_delay)
            await self.step(node_id, i + 1, steps)
        result = Latent(latent.width, latent.height, latent.batch, seed)
        outputs = self.info[self.prompt[node_id]["class_type"]]["output"]
        return [result if kind == "LATENT" else f"{kind}:{node_id}" for kind in outputs], None

    def _upstream_steps(self, node_id: str) -> int:
        stack, seen = [node_id], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            steps = (self.prompt[current].get("inputs") or {}).get("steps")
            if isinstance(steps, int):
                return steps
            stack.extend(_links(self.prompt[current], self.prompt))
        return 20

    def save_images(self, img: Img, root: Path, prefix: str, kind: str, compress_level: int):
        """Each image of the batch as a PNG under ``root`` (ComfyUI's names), listed as ``kind``."""
        folder, subfolder, base, counter = self.save_path(root, prefix)
        images = []
        for i in range(img.batch):
            name = f"{base}_{counter + i:05}_.png"
            render(img, i).save(folder / name, pnginfo=self.png_info(), compress_level=compress_level)
            images.append({"filename": name, "subfolder": subfolder, "type": kind})
        return [], {"images": images}

    async def node_SaveImage(self, node_id: str):  # noqa: N802
        img = self.first(node_id, Img) or Img(64, 64)
        prefix = str(self.arg(node_id, "filename_prefix", "ComfyUI"))
        return self.save_images(img, self.dirs.output, prefix, "output", 4)

    async def node_PreviewImage(self, node_id: str):  # noqa: N802
        img = self.first(node_id, Img) or Img(64, 64)
        self.dirs.temp.mkdir(parents=True, exist_ok=True)
        return self.save_images(img, self.dirs.temp, f"ComfyUI_temp_{PREVIEW_SUFFIX}", "temp", 1)

    async def node_SaveImageWebsocket(self, node_id: str):  # noqa: N802
        img = self.first(node_id, Img) or Img(64, 64)
        for i in range(img.batch):
            buffer = io.BytesIO()
            render(Img(min(img.width, 256), min(img.height, 256), 1, img.color), 0).save(buffer, "PNG")
            await self.step(node_id, i, img.batch, buffer.getvalue())
        return [], None

    async def node_SaveAnimatedWEBP(self, node_id: str):  # noqa: N802
        return self._save_animation(node_id, "webp")

    async def node_SaveAnimatedPNG(self, node_id: str):  # noqa: N802
        return self._save_animation(node_id, "png")

    def _save_animation(self, node_id: str, ext: str):
        img = self.first(node_id, Img) or Img(64, 64, 4)
        prefix = str(self.arg(node_id, "filename_prefix", "ComfyUI"))
        folder, subfolder, base, counter = self.save_path(self.dirs.output, prefix)
        small = Img(min(img.width, 256), min(img.height, 256), 1, img.color)
        frames = [render(small, i) for i in range(max(img.batch, 2))]
        name = f"{base}_{counter:05}_.{ext}"
        frames[0].save(folder / name, save_all=True, append_images=frames[1:], duration=100, loop=0)
        return [], {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": [True]}

    async def node_SaveWEBM(self, node_id: str):  # noqa: N802
        return self._save_video(node_id, "webm", b"\x1a\x45\xdf\xa3" + b"\x00" * 60)

    async def node_SaveVideo(self, node_id: str):  # noqa: N802
        return self._save_video(node_id, "mp4", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 40)

    def _save_video(self, node_id: str, ext: str, data: bytes):
        prefix = str(self.arg(node_id, "filename_prefix", "ComfyUI"))
        folder, subfolder, base, counter = self.save_path(self.dirs.output, prefix)
        name = f"{base}_{counter:05}_.{ext}"
        (folder / name).write_bytes(data)
        return [], {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": [True]}

    def png_info(self) -> PngInfo:
        info = PngInfo()
        info.add_text("prompt", json.dumps(self.prompt))
        for key, value in (self.extra_data.get("extra_pnginfo") or {}).items():
            info.add_text(key, json.dumps(value))
        return info

    def save_path(self, root: Path, prefix: str) -> tuple[Path, str, str, int]:
        """ComfyUI's save path rule: prefix may hold a subfolder; counter = highest existing + 1."""
        subfolder, _, base = prefix.replace("\\", "/").rpartition("/")
        full = os.path.abspath(os.path.join(root, subfolder))
        common = os.path.commonpath([str(root.resolve()), full])
        if common != str(root.resolve()):
            raise NodeFailure("Exception", "**** ERROR: Saving image outside the output folder is not allowed.\n"
                                           f" full_output_folder: {full}\n         output_dir: {root}\n"
                                           f"         commonpath: {common}\n")
        folder = Path(full)
        folder.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(re.escape(base) + r"_(\d{5})_")
        counters = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
        return folder, subfolder, base, max(counters, default=0) + 1


def _meta(node_id: str) -> dict:
    return {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}


def render(img: Img, index: int) -> Image.Image:
    """A small picture that depends on the image's colour and batch index."""
    width, height = max(1, min(img.width, MAX_SIDE)), max(1, min(img.height, MAX_SIDE))
    color = (img.color + index * 0x202020) & 0xFFFFFF
    rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
    other = tuple(255 - c for c in rgb)
    gradient = Image.linear_gradient("L").rotate(45 + 30 * index, expand=False).resize((width, height))
    return ImageOps.colorize(gradient, black=rgb, white=other)
