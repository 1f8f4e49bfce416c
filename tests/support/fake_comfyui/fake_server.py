"""HTTP routes, websocket and prompt queue of the fake ComfyUI (aiohttp).

Shapes, status codes and message order follow shared/reference/comfyui-api/ (recorded from a
real ComfyUI 0.3.64). Test-only routes live under /__fake__/ and are never under /api.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import io
import json
import logging
import os
import sys
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from aiohttp import WSMsgType, web
from fake_execution import Dirs, Execution, Timing
from fake_models import ModelFolders, filled_object_info, load_object_info, stock_files
from fake_validation import PromptRejected, validate_prompt
from PIL import Image

HERE = Path(__file__).resolve().parent
SERVER_FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
MAX_HISTORY = 10000
log = logging.getLogger("fake_comfyui")


def _system_stats(argv: list[str]) -> dict:
    return {
        "system": {
            "os": "posix",
            "ram_total": 25276502016,
            "ram_free": 24111218688,
            "comfyui_version": "0.3.64",
            "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.95",
            "required_templates_version": "0.1.95",
            "python_version": sys.version,
            "pytorch_version": "2.14.1+cu130",
            "embedded_python": False,
            "argv": argv,
        },
        "devices": [{
            "name": "cpu", "type": "cpu", "index": None, "vram_total": 25276502016, "vram_free": 24111218688,
            "torch_vram_total": 25276502016, "torch_vram_free": 24111218688,
        }],
    }


class PromptQueue:
    """Pending items in a heap ordered by number (front:true gives negative numbers)."""

    def __init__(self, on_change) -> None:
        self.pending: list[tuple] = []  # (number, sequence, item)
        self.running: dict[str, list] = {}
        self.sequence = 0
        self.ready = asyncio.Event()
        self.on_change = on_change

    def remaining(self) -> int:
        return len(self.pending) + len(self.running)

    async def put(self, item: list) -> None:
        self.sequence += 1
        heapq.heappush(self.pending, (item[0], self.sequence, item))
        self.ready.set()
        await self.on_change()

    async def get(self) -> list:
        while not self.pending:
            self.ready.clear()
            await self.ready.wait()
        _number, _seq, item = heapq.heappop(self.pending)
        self.running[item[1]] = item
        await self.on_change()
        return item

    async def delete(self, prompt_id: str) -> bool:
        for index, entry in enumerate(self.pending):
            if entry[2][1] == prompt_id:
                self.pending.pop(index)
                heapq.heapify(self.pending)
                await self.on_change()
                return True
        return False

    async def clear(self) -> None:
        self.pending.clear()
        await self.on_change()


class FakeComfyUI:
    def __init__(self, args, argv: list[str]) -> None:
        base = HERE
        configs = [Path(p) for group in (args.extra_model_paths_config or []) for p in group]
        self.recorded = load_object_info()
        self.folders = ModelFolders(base, configs, stock_files(self.recorded))
        temp = Path(args.temp_directory or Path(os.environ.get("TMPDIR", "/tmp")) / f"fake-comfyui-temp-{os.getpid()}")
        self.dirs = Dirs(output=Path(args.output_directory or base / "output").resolve(),
                         input=Path(args.input_directory or base / "input").resolve(),
                         temp=temp.resolve(), models=self.folders)
        for folder in (self.dirs.output, self.dirs.input, self.dirs.temp):
            folder.mkdir(parents=True, exist_ok=True)
        self.timing = Timing(step_delay=float(os.environ.get("FAKE_COMFYUI_STEP_DELAY", "0.02")),
                             node_delay=float(os.environ.get("FAKE_COMFYUI_NODE_DELAY", "0")))
        self.argv = argv
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.socket_flags: dict[str, dict] = {}
        self.queue = PromptQueue(self.queue_updated)
        self.history: OrderedDict[str, dict] = OrderedDict()
        self.cache: dict = {}
        self.number = 0
        self.interrupt_flag = False
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.seen: list[dict] = []
        self.interrupts = 0

    # ---- sending ---------------------------------------------------------------------
    async def send(self, event: str, data: dict, sid: str | None = None) -> None:
        text = json.dumps({"type": event, "data": data})
        targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        for ws in targets:
            try:
                await ws.send_str(text)
            except (ConnectionResetError, RuntimeError) as err:
                log.debug("socket gone: %s", err)

    async def send_bytes(self, event_type: int, payload: bytes, sid: str | None) -> None:
        targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        for ws in targets:
            try:
                await ws.send_bytes(event_type.to_bytes(4, "big") + payload)
            except (ConnectionResetError, RuntimeError) as err:
                log.debug("socket gone: %s", err)

    def queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    async def queue_updated(self) -> None:
        await self.send("status", {"status": self.queue_info()})

    # ---- the worker ------------------------------------------------------------------
    async def worker(self) -> None:
        while True:
            item = await self.queue.get()
            prompt_id = item[1]
            self.client_id = item[3].get("client_id")
            self.interrupt_flag = False
            started = time.perf_counter()
            execution = Execution(
                item, self.object_info(), self.dirs, self.timing, self.cache, self.send, self.send_bytes,
                interrupted=lambda: self.interrupt_flag, client_flags=lambda sid: self.socket_flags.get(sid or "", {}),
                on_node=self._on_node)
            try:
                result = await execution.run()
            except Exception:  # noqa: BLE001 - a bug in the fake must not kill the worker
                log.exception("fake execution crashed")
                self.queue.running.pop(prompt_id, None)
                continue
            self.history[prompt_id] = {
                "prompt": list(item),
                "outputs": result.outputs,
                "status": {"status_str": result.status_str, "completed": result.completed, "messages": result.messages},
                "meta": result.meta,
            }
            while len(self.history) > MAX_HISTORY:
                self.history.popitem(last=False)
            self.queue.running.pop(prompt_id, None)
            await self.queue_updated()
            if self.client_id is not None:
                await self.send("executing", {"node": None, "prompt_id": prompt_id}, self.client_id)
            print(f"Prompt executed in {time.perf_counter() - started:.2f} seconds", flush=True)
            self.client_id = None

    def _on_node(self, node_id: str | None) -> None:
        self.last_node_id = node_id

    # ---- helpers ---------------------------------------------------------------------
    def object_info(self, only: str | None = None) -> dict:
        return filled_object_info(self.recorded, self.folders, self.dirs.input, only)

    def input_exists(self, name: str) -> bool:
        clean = name.rsplit(" [", 1)[0] if name.endswith("]") else name
        path = (self.dirs.input / clean).resolve()
        return self.dirs.input in path.parents and path.is_file()

    # ---- routes ----------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><html><head><title>ComfyUI</title></head>"
                                 "<body><div id=\"vue-app\">fake ComfyUI</div></body></html>", content_type="text/html")

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        self.socket_flags[sid] = {}
        try:
            await self.send("status", {"status": self.queue_info(), "sid": sid}, sid)
            if self.client_id == sid and self.last_node_id is not None:
                await self.send("executing", {"node": self.last_node_id}, sid)
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        data = None
                    if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                        self.socket_flags[sid] = data.get("data") or {}
                        await self.send("feature_flags", SERVER_FEATURES, sid)
                    first = False
        finally:
            # As ComfyUI does: unconditionally, so an older socket with this clientId that closes
            # after a newer one connected leaves the newer one registered nowhere (it hears nothing).
            self.sockets.pop(sid, None)
            self.socket_flags.pop(sid, None)
        return ws

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.queue_info())

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()  # invalid JSON -> aiohttp's own 500, as ComfyUI answers
        if "number" in body:
            number = float(body["number"])
        else:
            number = self.number
            if body.get("front"):
                number = -number
            self.number += 1
        if "prompt" not in body:
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                     "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = body["prompt"]
        try:
            outputs, node_errors = validate_prompt(prompt, self.object_info(), self.input_exists)
        except PromptRejected as err:
            print(f"invalid prompt: {err.body['error']['message']}", flush=True)
            return web.json_response(err.body, status=400)
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        self.seen.append({"prompt_id": prompt_id, "number": number, "prompt": prompt, "extra_data": extra_data})
        print("got prompt", flush=True)
        await self.queue.put([number, prompt_id, prompt, extra_data, outputs])
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def get_queue(self, request: web.Request) -> web.Response:
        return web.json_response({
            "queue_running": [list(item) for item in self.queue.running.values()],
            "queue_pending": [list(entry[2]) for entry in self.queue.pending],
        })

    async def _json_body(self, request: web.Request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    async def post_queue(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        if data.get("clear"):
            await self.queue.clear()
        for prompt_id in data.get("delete") or []:
            await self.queue.delete(prompt_id)
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        target = data.get("prompt_id")
        self.interrupts += 1
        if target is None or target in self.queue.running:
            self.interrupt_flag = True
            print("Processing interrupted" if target is None else f"Interrupting prompt {target}", flush=True)
        return web.Response(status=200)

    async def post_free(self, request: web.Request) -> web.Response:
        await self._json_body(request)
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.Response:
        max_items = request.rel_url.query.get("max_items")
        items = list(self.history.items())
        if max_items is not None:
            items = items[-int(max_items):] if int(max_items) > 0 else []
        return web.json_response(dict(items))

    async def get_history_one(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def post_history(self, request: web.Request) -> web.Response:
        data = await self._json_body(request)
        if data.get("clear"):
            self.history.clear()
        for prompt_id in data.get("delete") or []:
            self.history.pop(prompt_id, None)
        return web.Response(status=200)

    def _base_dir(self, kind: str) -> Path | None:
        return {"input": self.dirs.input, "temp": self.dirs.temp, "output": self.dirs.output}.get(kind)

    async def view(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        filename = query.get("filename")
        if not filename:
            return web.Response(status=404)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        base = self._base_dir(query.get("type", "output"))
        if base is None:
            return web.Response(status=400)
        folder = os.path.abspath(os.path.join(base, os.path.normpath(query.get("subfolder", ""))))
        if os.path.commonpath([folder, str(base)]) != str(base):
            return web.Response(status=403)
        path = Path(folder) / filename
        if not path.is_file():
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        preview = query.get("preview")
        channel = query.get("channel", "rgba")
        if preview or channel != "rgba":
            with Image.open(path) as im:
                buffer = io.BytesIO()
                if preview:
                    fmt, _, quality = preview.partition(";")
                    fmt = fmt if fmt in ("webp", "jpeg") else "webp"
                    im.convert("RGB").save(buffer, fmt.upper(), quality=int(quality or 90))
                    content_type = f"image/{fmt}"
                elif channel == "a":
                    im.convert("RGBA").getchannel("A").save(buffer, "PNG")
                    content_type = "image/png"
                else:
                    im.convert("RGB").save(buffer, "PNG")
                    content_type = "image/png"
            return web.Response(body=buffer.getvalue(), content_type=content_type, headers=disposition)
        return web.FileResponse(path, headers=disposition)

    async def upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if image is None or not getattr(image, "filename", None):
            return web.Response(status=400)
        kind = str(post.get("type") or "input")
        base = self._base_dir(kind)
        if base is None:  # ComfyUI fails on an unknown type with aiohttp's 500
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        subfolder = str(post.get("subfolder") or "")
        folder = os.path.abspath(os.path.join(base, os.path.normpath(subfolder)))
        filename = image.filename  # not reduced to its base name: "../x.png" is refused, as ComfyUI does
        if os.path.commonpath([str(base), os.path.abspath(os.path.join(folder, filename))]) != str(base):
            return web.Response(status=400)
        os.makedirs(folder, exist_ok=True)
        data = image.file.read()
        overwrite = str(post.get("overwrite") or "").lower() in ("true", "1")
        stem, ext = os.path.splitext(filename)
        path = os.path.join(folder, filename)
        duplicate = False
        if not overwrite:
            index = 1
            while os.path.exists(path):
                with open(path, "rb") as existing:
                    if hashlib.sha256(existing.read()).digest() == hashlib.sha256(data).digest():
                        duplicate = True
                        break
                filename = f"{stem} ({index}){ext}"
                path = os.path.join(folder, filename)
                index += 1
        if not duplicate:
            with open(path, "wb") as out:
                out.write(data)
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    async def get_object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.object_info())

    async def get_object_info_one(self, request: web.Request) -> web.Response:
        return web.json_response(self.object_info(request.match_info["node_class"]))

    async def get_models(self, request: web.Request) -> web.Response:
        return web.json_response(self.folders.names())

    async def get_models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in self.folders.paths:
            return web.Response(status=404)
        return web.json_response(self.folders.files(folder))

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(_system_stats(self.argv))

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response(SERVER_FEATURES)

    async def empty_list(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def empty_dict(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def users(self, request: web.Request) -> web.Response:
        return web.json_response({"storage": "server", "migrated": True})

    # ---- test-only routes ----------------------------------------------------------------
    async def fake_state(self, request: web.Request) -> web.Response:
        return web.json_response({"prompts": self.seen, "interrupts": self.interrupts,
                                  "sockets": list(self.sockets), "pid": os.getpid()})

    async def fake_hang(self, request: web.Request) -> web.Response:
        """Freeze the event loop (a hung ComfyUI): the process lives but answers nothing."""
        seconds = float(request.rel_url.query.get("seconds", "3600"))
        print(f"fake: hanging for {seconds}s", flush=True)
        asyncio.get_running_loop().call_later(0.05, time.sleep, seconds)
        return web.json_response({"hanging": seconds})

    async def fake_exit(self, request: web.Request) -> web.Response:
        code = int(request.rel_url.query.get("code", "1"))
        print(f"fake: exiting with status {code}", flush=True)
        asyncio.get_running_loop().call_later(0.05, os._exit, code)
        return web.json_response({"exit": code})

    def routes(self) -> list[tuple[str, str, object]]:
        return [
            ("GET", "/ws", self.websocket),
            ("GET", "/prompt", self.get_prompt),
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt),
            ("POST", "/free", self.post_free),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_one),
            ("POST", "/history", self.post_history),
            ("GET", "/view", self.view),
            ("POST", "/upload/image", self.upload_image),
            ("GET", "/object_info", self.get_object_info),
            ("GET", "/object_info/{node_class}", self.get_object_info_one),
            ("GET", "/models", self.get_models),
            ("GET", "/models/{folder}", self.get_models_folder),
            ("GET", "/system_stats", self.system_stats),
            ("GET", "/features", self.features),
            ("GET", "/embeddings", self.empty_list),
            ("GET", "/extensions", self.empty_list),
            ("GET", "/users", self.users),
            ("GET", "/settings", self.empty_dict),
        ]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=104857600)
        app.router.add_get("/", self.index)
        for method, path, handler in self.routes():
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        app.router.add_get("/__fake__/state", self.fake_state)
        app.router.add_post("/__fake__/hang", self.fake_hang)
        app.router.add_post("/__fake__/exit", self.fake_exit)

        async def start_worker(app: web.Application) -> None:
            app["worker"] = asyncio.get_running_loop().create_task(self.worker())

        async def stop_worker(app: web.Application) -> None:
            app["worker"].cancel()
            for ws in list(self.sockets.values()):
                await ws.close()

        app.on_startup.append(start_worker)
        app.on_shutdown.append(stop_worker)
        return app
