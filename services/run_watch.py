"""Follow one prompt for a viewer that may arrive late (the admin's live run panel).

ComfyUI sends a prompt's events only to the websocket whose clientId matches the prompt's
client_id, so the admin gives every run its own client id (``run_client_id``) and a viewer opens
the socket with it. The socket is opened first, then /history and /queue give the state so far;
events follow. ComfyUI re-sends the running node on connect and every ``progress_state`` carries
the whole node map, so a late viewer catches up. A restart of ComfyUI is survived by reconnecting.

One clientId holds one socket in ComfyUI: a newer socket replaces an older one, and when the older
one closes ComfyUI forgets the clientId altogether, so the newer socket hears nothing more (a second
tab, or a browser reconnecting its event stream, does exactly that). So while the run is live and
the socket has been quiet for ``idle_poll`` seconds, the watch asks /history and /queue and opens its
socket again, which registers it anew (ComfyUI then re-sends the running node).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from services.comfyui_client import ComfyUIClient, Event
from services.errors import ComfyUIError
from services.run_progress import RunProgress, nodes_to_run

CLIENT_PREFIX = "comfypod-run-"


def run_client_id(prompt_id: str) -> str:
    return CLIENT_PREFIX + prompt_id


def snapshot(client: ComfyUIClient, prompt_id: str) -> RunProgress | None:
    """The state of a prompt from /history (finished) or /queue (running or waiting); None if unknown."""
    entry, state = client.locate(prompt_id)
    if entry:
        return RunProgress.from_history(prompt_id, entry)
    if state is None:
        return None
    item = next(i for i in state.running + state.pending if i.prompt_id == prompt_id)
    progress = RunProgress.for_prompt(prompt_id, item.prompt, nodes_to_run(item.prompt, item.outputs))
    progress.queue_position = state.position(prompt_id)
    progress.status = "running" if progress.queue_position == 0 else "queued"
    return progress


def watch(base_url: str, prompt_id: str, *, stop: Callable[[], bool] = lambda: False,
          idle_poll: float = 3.0, timeout: float = 6 * 3600) -> Iterator[dict | None]:
    """Yield progress snapshots (``RunProgress.to_dict()``) until the prompt ends.

    ``None`` is yielded about once a second while nothing happens (for SSE heartbeats).
    """
    client = ComfyUIClient(base_url, client_id=run_client_id(prompt_id), timeout=10)
    deadline = time.monotonic() + timeout

    def open_socket() -> Iterator[Event]:
        stream = client.events(stop=lambda: stop() or time.monotonic() > deadline, ticks=True)
        next(stream)  # the greeting (or a tick): the socket is open
        return stream

    events: Iterator[Event] | None = None
    try:
        events = open_socket()
        progress = snapshot(client, prompt_id)
        if progress is None:
            yield {"prompt_id": prompt_id, "status": "unknown", "percent": 0, "nodes": [],
                   "error": "ComfyUI knows no such prompt (finished long ago, or lost in a restart)"}
            return
        yield progress.to_dict()
        if progress.finished:
            return
        last_change = time.monotonic()
        while True:
            event = next(events, None)
            if event is None:
                return
            if event.type == "reconnected":
                fresh = snapshot(client, prompt_id)
                if fresh is None:
                    progress.status, progress.error = "error", "ComfyUI restarted and lost this run"
                    yield progress.to_dict()
                    return
                progress = fresh if fresh.finished else progress
            elif event.type == "status" and progress.status == "queued":
                fresh = snapshot(client, prompt_id)
                if fresh is not None and fresh.queue_position != progress.queue_position:
                    progress.queue_position = fresh.queue_position
                    yield progress.to_dict()
                continue
            elif not progress.apply(event):
                if event.type == "tick":
                    yield None
                if time.monotonic() - last_change > idle_poll:
                    last_change = time.monotonic()
                    fresh = snapshot(client, prompt_id)
                    if fresh is not None and fresh.finished:
                        yield fresh.to_dict()
                        return
                    if fresh is not None:  # running or waiting, and quiet: perhaps deaf (see above)
                        events.close()
                        events = None
                        events = open_socket()
                continue
            last_change = time.monotonic()
            yield progress.to_dict()
            if progress.finished:
                entry = client.history_entry(prompt_id)
                if entry:
                    final = RunProgress.from_history(prompt_id, entry)
                    final.nodes = progress.nodes if final.status == progress.status else final.nodes
                    yield final.to_dict()
                return
    except ComfyUIError as err:
        yield {"prompt_id": prompt_id, "status": "unknown", "percent": 0, "nodes": [], "error": str(err)}
    finally:
        if events is not None:
            events.close()
