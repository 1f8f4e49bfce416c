"""ComfyUI HTTP and websocket client: the one way ComfyPod talks to ComfyUI.

HTTP: POST /prompt (with a client_id), /queue (list, delete, clear), /interrupt, /history,
/view, /upload/image, /object_info, /system_stats, /models/<folder>. Websocket: /ws?clientId=…
yields every text message (status, execution_start, execution_cached, executing, progress,
progress_state, executed, execution_success, execution_error, execution_interrupted) and binary
previews; it reconnects when ComfyUI restarts. A /prompt 400 becomes :class:`PromptRejected`
whose message names every failing node and input in words.
"""

from __future__ import annotations

import json
import logging
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
import websocket

from services.errors import ComfyUIError

log = logging.getLogger("comfypod.comfyui")

# Messages that end a prompt's run (the final one is always ``executing`` with node null).
FAILURE_EVENTS = ("execution_error", "execution_interrupted")


class PromptRejected(ComfyUIError):
    """ComfyUI answered 400 to POST /prompt; ``problems`` holds one line per failing input."""

    def __init__(self, error: dict, node_errors: dict, prompt: dict | None = None) -> None:
        self.error = error or {}
        self.node_errors = node_errors or {}
        self.problems = describe_node_errors(self.error, self.node_errors, prompt)
        super().__init__("ComfyUI refused the workflow: " + "; ".join(self.problems))

    def missing_values(self) -> list[dict]:
        """Every ``value_not_in_list`` error: node id, class, input name and the value asked for."""
        found = []
        for node_id, entry in self.node_errors.items():
            for err in entry.get("errors", []):
                if err.get("type") == "value_not_in_list":
                    extra = err.get("extra_info") or {}
                    found.append({"node_id": node_id, "class_type": entry.get("class_type"),
                                  "input": extra.get("input_name"), "value": extra.get("received_value")})
        return found


def _node_label(node_id: str, entry: dict, prompt: dict | None) -> str:
    title = None
    if prompt and isinstance(prompt.get(node_id), dict):
        title = (prompt[node_id].get("_meta") or {}).get("title")
    class_type = entry.get("class_type") or (prompt or {}).get(node_id, {}).get("class_type") or "?"
    if title and title != class_type:
        return f'node {node_id} "{title}" ({class_type})'
    return f"node {node_id} ({class_type})"


def describe_error(err: dict) -> str:
    """One input error from ``node_errors`` in words."""
    kind = err.get("type", "")
    extra = err.get("extra_info") or {}
    name = extra.get("input_name") or err.get("details") or "input"
    value = extra.get("received_value")
    if kind == "value_not_in_list":
        config = extra.get("input_config") or []
        options = config[0] if config and isinstance(config[0], list) else None
        if options == [] or options == ["pixel_space"]:
            return f"{name} '{value}' is not installed (ComfyUI lists no files for it)"
        return f"{name} '{value}' is not among the values ComfyUI offers"
    if kind == "value_smaller_than_min":
        return f"{name} = {value} is below the minimum ({err.get('message', '').rsplit(' ', 1)[-1]})"
    if kind == "value_bigger_than_max":
        return f"{name} = {value} is above the maximum ({err.get('message', '').rsplit(' ', 1)[-1]})"
    if kind == "required_input_missing":
        return f"required input {name} is missing"
    if kind == "invalid_input_type":
        return f"{name} = {value!r} has the wrong type ({err.get('message', '')})"
    if kind == "return_type_mismatch":
        return f"{name} is linked to an output of the wrong type ({err.get('details', '')})"
    if kind == "exception_during_inner_validation":
        return f"{name} links to node {err.get('details', '?')}, which is missing or broken"
    if kind == "exception_during_validation":
        return f"cannot be checked: {err.get('details', '')}"
    if kind == "custom_validation_failed":
        return err.get("details") or err.get("message", "failed validation")
    message, details = err.get("message", kind or "invalid"), err.get("details")
    return f"{message}: {details}" if details else message


def describe_node_errors(error: dict, node_errors: dict, prompt: dict | None = None) -> list[str]:
    """A 400 answer of POST /prompt as lines: the overall error, then each failing node's inputs."""
    lines: list[str] = []
    for node_id, entry in (node_errors or {}).items():
        problems = [describe_error(e) for e in entry.get("errors", [])]
        if problems:
            lines.append(f"{_node_label(node_id, entry, prompt)}: " + ", ".join(problems))
    if not lines:
        message = (error or {}).get("message") or "the workflow is not valid"
        details = (error or {}).get("details")
        lines.append(f"{message} ({details})" if details and details != message else message)
    return lines


@dataclass(frozen=True)
class QueuedPrompt:
    prompt_id: str
    number: float
    node_errors: dict
    client_id: str | None = None


@dataclass(frozen=True)
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict
    extra_data: dict
    outputs: list[str]

    @classmethod
    def from_list(cls, item: list) -> QueueItem:
        return cls(item[0], item[1], item[2], item[3] if len(item) > 3 else {}, list(item[4]) if len(item) > 4 else [])


@dataclass(frozen=True)
class QueueState:
    running: list[QueueItem]
    pending: list[QueueItem]

    def position(self, prompt_id: str) -> int | None:
        """0 while running, 1.. while waiting (by ComfyUI's number order), None when absent."""
        if any(item.prompt_id == prompt_id for item in self.running):
            return 0
        ordered = sorted(self.pending, key=lambda item: item.number)
        for index, item in enumerate(ordered, start=1):
            if item.prompt_id == prompt_id:
                return index
        return None


@dataclass(frozen=True)
class Event:
    """One websocket message. Binary previews have type ``preview`` and data {image, format, meta}."""

    type: str
    data: dict

    @property
    def prompt_id(self) -> str | None:
        return self.data.get("prompt_id")


@dataclass
class RunOutcome:
    prompt_id: str
    status: str  # success | error | interrupted
    outputs: dict = field(default_factory=dict)
    error: dict | None = None
    events: list[Event] = field(default_factory=list)

    def files(self) -> list[dict]:
        """Every file named in the outputs: {filename, subfolder, type, node}."""
        found = []
        for node_id, ui in self.outputs.items():
            for key in ("images", "gifs", "videos", "audio"):
                for item in ui.get(key, []) or []:
                    if isinstance(item, dict) and "filename" in item:
                        found.append({**item, "node": node_id})
        return found


def decode_binary(frame: bytes) -> Event:
    """A binary websocket frame: type 1 (format + image) or type 4 (metadata JSON + image)."""
    if len(frame) < 8:
        return Event("binary", {"event_type": None, "size": len(frame)})
    (event_type,) = struct.unpack(">I", frame[:4])
    if event_type == 1:
        (fmt,) = struct.unpack(">I", frame[4:8])
        return Event("preview", {"format": {1: "jpeg", 2: "png"}.get(fmt, str(fmt)), "image": frame[8:], "meta": {}})
    if event_type == 4:
        (length,) = struct.unpack(">I", frame[4:8])
        meta = json.loads(frame[8:8 + length].decode("utf-8"))
        image_type = str(meta.get("image_type", "image/png"))
        return Event("preview", {"format": image_type.split("/")[-1], "image": frame[8 + length:], "meta": meta})
    return Event("binary", {"event_type": event_type, "size": len(frame)})


def _close(sock: websocket.WebSocket) -> None:
    """Close a websocket and its socket (``close()`` alone skips a socket already disconnected)."""
    try:
        sock.close(timeout=1)
    except (OSError, websocket.WebSocketException) as err:
        log.debug("websocket close: %s", err)
    finally:
        sock.shutdown()


def history_status(entry: dict) -> str | None:
    """How a finished prompt ended, from its /history entry: ``interrupted`` when ComfyUI logged an
    execution_interrupted message, else its status_str (``success``, ``error``), None if absent."""
    status = entry.get("status") or {}
    if any(m and m[0] == "execution_interrupted" for m in status.get("messages", [])):
        return "interrupted"
    return status.get("status_str")


class ComfyUIClient:
    """Talks to one ComfyUI at ``base_url`` (``http://host:port``)."""

    def __init__(self, base_url: str, *, client_id: str | None = None, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or f"comfypod-{uuid.uuid4()}"
        self.timeout = timeout
        self.session = session  # None: one short connection per call, nothing left open

    def __repr__(self) -> str:
        return f"ComfyUIClient({self.base_url!r})"

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={self.client_id}"

    # ---- HTTP -----------------------------------------------------------------------
    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        try:
            if self.session is not None:
                return self.session.request(method, url, timeout=timeout or self.timeout, **kwargs)
            return requests.request(method, url, timeout=timeout or self.timeout, **kwargs)
        except requests.ConnectionError:
            message = f"ComfyUI is not answering at {self.base_url} (is it running? see logs/comfyui.log)"
            raise ComfyUIError(message) from None
        except requests.Timeout:
            raise ComfyUIError(f"ComfyUI at {self.base_url} did not answer {method} {path} in time") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code != 200:
            raise ComfyUIError(f"ComfyUI answered {response.status_code} to {method} {path}")
        try:
            return response.json()
        except ValueError:
            raise ComfyUIError(f"ComfyUI sent something that is not JSON for {method} {path}") from None

    def _post_empty(self, path: str, body: dict) -> None:
        response = self._request("POST", path, json=body)
        if response.status_code != 200:
            raise ComfyUIError(f"ComfyUI answered {response.status_code} to POST {path}")

    def is_up(self, timeout: float = 3.0) -> bool:
        try:
            return self._request("GET", "/system_stats", timeout=timeout).status_code == 200
        except ComfyUIError:
            return False

    def wait_until_up(self, timeout: float = 60.0, interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_up():
            if time.monotonic() > deadline:
                raise ComfyUIError(f"ComfyUI did not come up at {self.base_url} within {timeout:.0f}s")
            time.sleep(interval)

    def system_stats(self) -> dict:
        return self._json("GET", "/system_stats")

    def object_info(self, node_class: str | None = None) -> dict:
        path = "/object_info" + (f"/{node_class}" if node_class else "")
        return self._json("GET", path, timeout=max(self.timeout, 60))

    def model_folders(self) -> list[str]:
        return self._json("GET", "/models")

    def models(self, folder: str) -> list[str]:
        """GET /models/<folder>: the file names ComfyUI itself sees in that folder."""
        response = self._request("GET", f"/models/{folder}")
        if response.status_code == 404:
            raise ComfyUIError(f"ComfyUI has no model folder named {folder!r}")
        if response.status_code != 200:
            raise ComfyUIError(f"ComfyUI answered {response.status_code} to GET /models/{folder}")
        return response.json()

    def queue_prompt(self, prompt: dict, *, extra_data: dict | None = None, front: bool = False,
                     prompt_id: str | None = None, client_id: str | None = None) -> QueuedPrompt:
        """POST /prompt; a 400 raises :class:`PromptRejected` naming each failing node."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id or self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        if front:
            body["front"] = True
        if prompt_id:
            body["prompt_id"] = prompt_id
        response = self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            raise PromptRejected(answer.get("error") or {}, answer.get("node_errors") or {}, prompt)
        if response.status_code != 200:
            raise ComfyUIError(f"ComfyUI answered {response.status_code} to POST /prompt: {response.text[:200]}")
        answer = response.json()
        return QueuedPrompt(answer["prompt_id"], answer.get("number", 0), answer.get("node_errors") or {},
                            body["client_id"])

    def queue(self) -> QueueState:
        data = self._json("GET", "/queue")
        return QueueState([QueueItem.from_list(i) for i in data.get("queue_running", [])],
                          [QueueItem.from_list(i) for i in data.get("queue_pending", [])])

    def delete_queued(self, prompt_ids: list[str]) -> None:
        self._post_empty("/queue", {"delete": list(prompt_ids)})

    def clear_queue(self) -> None:
        self._post_empty("/queue", {"clear": True})

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt (only ``prompt_id`` when given); the running node finishes first."""
        self._post_empty("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def cancel(self, prompt_id: str) -> str:
        """Remove a waiting prompt, or interrupt it when it is running; returns what was done."""
        state = self.queue()
        if any(item.prompt_id == prompt_id for item in state.running):
            self.interrupt(prompt_id)
            return "interrupted"
        if any(item.prompt_id == prompt_id for item in state.pending):
            self.delete_queued([prompt_id])
            return "removed"
        return "absent"

    def history(self, prompt_id: str | None = None, max_items: int | None = None) -> dict:
        if prompt_id:
            return self._json("GET", f"/history/{prompt_id}")
        return self._json("GET", "/history", params={"max_items": max_items} if max_items else None)

    def history_entry(self, prompt_id: str) -> dict | None:
        return self.history(prompt_id).get(prompt_id)

    def locate(self, prompt_id: str) -> tuple[dict | None, QueueState | None]:
        """Where a prompt is: ``(history entry, None)`` once finished, ``(None, queue)`` while it runs
        or waits, ``(None, None)`` when ComfyUI knows no such prompt.

        ComfyUI moves a prompt from the queue to the history in one step, but between two reads of
        ours: one that finished after the /history read is in neither, so /history is read again."""
        entry = self.history_entry(prompt_id)
        if entry:
            return entry, None
        state = self.queue()
        if state.position(prompt_id) is not None:
            return None, state
        return self.history_entry(prompt_id) or None, None

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        self._post_empty("/free", {"unload_models": unload_models, "free_memory": free_memory})

    def view_url(self, filename: str, subfolder: str = "", kind: str = "output") -> str:
        return self.base_url + "/view?" + urlencode({"filename": filename, "subfolder": subfolder, "type": kind})

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        response = self._request("GET", "/view", params={"filename": filename, "subfolder": subfolder, "type": kind})
        if response.status_code == 404:
            raise ComfyUIError(f"ComfyUI has no {kind} file {subfolder + '/' if subfolder else ''}{filename}")
        if response.status_code != 200:
            raise ComfyUIError(f"ComfyUI answered {response.status_code} to GET /view for {filename}")
        return response.content

    def upload_image(self, data: bytes | Path, filename: str | None = None, *, subfolder: str = "",
                     kind: str = "input", overwrite: bool = False) -> dict:
        """POST /upload/image; returns {name, subfolder, type} (ComfyUI may rename to "x (1).png")."""
        if isinstance(data, Path):
            filename = filename or data.name
            data = data.read_bytes()
        fields = {"type": kind, "subfolder": subfolder}
        if overwrite:
            fields["overwrite"] = "true"
        response = self._request("POST", "/upload/image", files={"image": (filename or "image.png", data)}, data=fields)
        if response.status_code != 200:
            raise ComfyUIError(f"ComfyUI refused the upload of {filename} ({response.status_code})")
        return response.json()

    # ---- websocket ---------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> websocket.WebSocket:
        sock = websocket.WebSocket()
        try:
            sock.connect(self.ws_url, timeout=timeout)
        except (OSError, websocket.WebSocketException) as err:
            _close(sock)
            raise ComfyUIError(f"cannot open ComfyUI's websocket at {self.ws_url}: {err}") from None
        sock.settimeout(1.0)
        return sock

    def events(self, *, stop: Callable[[], bool] = lambda: False, reconnect_for: float = 120.0,
               on_reconnect: Callable[[], None] | None = None, ticks: bool = False) -> Iterator[Event]:
        """Every websocket message until ``stop()``; reconnects (for up to ``reconnect_for`` s).

        With ``ticks``, a quiet second yields ``Event("tick", {})`` so a caller can do other work.
        """
        sock = self.connect()
        try:
            while not stop():
                try:
                    opcode, payload = sock.recv_data()
                except websocket.WebSocketTimeoutException:
                    if ticks:
                        yield Event("tick", {})
                    continue
                except (OSError, websocket.WebSocketException) as err:
                    log.warning("ComfyUI websocket dropped (%s); reconnecting", err)
                    _close(sock)
                    sock = self._reconnect(reconnect_for, stop)
                    if on_reconnect:
                        on_reconnect()
                    yield Event("reconnected", {})
                    continue
                if opcode == websocket.ABNF.OPCODE_BINARY:
                    yield decode_binary(payload)
                elif opcode == websocket.ABNF.OPCODE_TEXT:
                    try:
                        message = json.loads(payload)
                    except ValueError:
                        continue
                    if isinstance(message, dict) and "type" in message:
                        yield Event(str(message["type"]), message.get("data") or {})
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    _close(sock)
                    sock = self._reconnect(reconnect_for, stop)
                    if on_reconnect:
                        on_reconnect()
                    yield Event("reconnected", {})
        finally:
            _close(sock)

    def _reconnect(self, reconnect_for: float, stop: Callable[[], bool]) -> websocket.WebSocket:
        deadline = time.monotonic() + reconnect_for
        delay = 0.2
        while True:
            if stop():
                raise ComfyUIError("stopped while waiting for ComfyUI to come back")
            try:
                return self.connect(timeout=5.0)
            except ComfyUIError:
                if time.monotonic() > deadline:
                    message = f"ComfyUI did not come back at {self.base_url} within {reconnect_for:.0f}s"
                    raise ComfyUIError(message) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def run(self, prompt: dict, *, extra_data: dict | None = None, on_event: Callable[[Event], None] | None = None,
            timeout: float | None = None, queued: Callable[[QueuedPrompt], None] | None = None) -> RunOutcome:
        """Queue ``prompt`` and follow it to its end over the websocket (opened before queueing)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sock_events = self.events(stop=lambda: deadline is not None and time.monotonic() > deadline)
        first = next(sock_events)  # the greeting status: the socket is open before the prompt goes in
        if on_event:
            on_event(first)
        ticket = self.queue_prompt(prompt, extra_data=extra_data)
        if queued:
            queued(ticket)
        try:
            return self.follow(ticket.prompt_id, sock_events, on_event=on_event)
        finally:
            sock_events.close()

    def follow(self, prompt_id: str, sock_events: Iterator[Event], *,
               on_event: Callable[[Event], None] | None = None) -> RunOutcome:
        """Read events until ``prompt_id`` ends; after a reconnect, ask /history and /queue."""
        outcome = RunOutcome(prompt_id, "running")
        for event in sock_events:
            if event.type == "reconnected":
                finished = self._settle_after_reconnect(prompt_id, outcome)
                if finished:
                    return finished
                continue
            if event.prompt_id not in (None, prompt_id):
                continue
            outcome.events.append(event)
            if on_event:
                on_event(event)
            if event.type == "executed":
                outcome.outputs[str(event.data.get("node"))] = event.data.get("output") or {}
            elif event.type == "execution_success":
                outcome.status = "success"
            elif event.type == "execution_error":
                outcome.status, outcome.error = "error", event.data
            elif event.type == "execution_interrupted":
                outcome.status, outcome.error = "interrupted", event.data
            elif event.type == "executing" and event.data.get("node") is None and event.prompt_id == prompt_id:
                if outcome.status == "running":
                    outcome.status = "success"
                return outcome
        raise ComfyUIError(f"stopped following prompt {prompt_id} before it finished")

    def _settle_after_reconnect(self, prompt_id: str, outcome: RunOutcome) -> RunOutcome | None:
        entry, waiting = self.locate(prompt_id)
        if waiting:
            return None  # still running or waiting: keep following
        if entry:
            outcome.outputs = entry.get("outputs") or outcome.outputs
            ended = history_status(entry)
            outcome.status = ended if ended in ("interrupted", "error") else "success"
            if ended == "error":
                outcome.error = next((m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"), None)
            return outcome
        raise ComfyUIError(f"ComfyUI restarted and lost prompt {prompt_id}: run it again")
