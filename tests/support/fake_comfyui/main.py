"""A fake ComfyUI for tests, runnable the way ComfyUI's own main.py is run.

It speaks ComfyUI's HTTP + websocket protocol with the shapes recorded from a real server in
shared/reference/comfyui-api/ and simulates nodes (KSampler steps, SaveImage PNGs with the prompt
and workflow embedded). Unknown command-line options are ignored, as a real launcher may pass
flags (--use-sage-attention, COMFYUI_ARGS) the fake has no use for.

Environment knobs (tests only): FAKE_COMFYUI_STEP_DELAY (seconds per sampler step, default 0.02),
FAKE_COMFYUI_NODE_DELAY (seconds per node, default 0), FAKE_COMFYUI_STARTUP_DELAY (seconds before
listening, default 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web  # noqa: E402
from fake_server import FakeComfyUI  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main.py")
    parser.add_argument("--listen", nargs="?", const="0.0.0.0", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--extra-model-paths-config", nargs="+", action="append")
    parser.add_argument("--output-directory")
    parser.add_argument("--input-directory")
    parser.add_argument("--temp-directory")
    args, _unknown = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    print(f"Total VRAM 0 MB (fake ComfyUI, pid {os.getpid()})", flush=True)
    print("Python version: " + sys.version.split()[0], flush=True)
    print(f"ComfyUI version: 0.3.64 (fake); arguments: {' '.join(argv)}", flush=True)
    for group in args.extra_model_paths_config or []:
        for path in group:
            print(f"Adding extra search path comfypod {path}", flush=True)
    delay = float(os.environ.get("FAKE_COMFYUI_STARTUP_DELAY", "0"))
    if delay:
        time.sleep(delay)
    server = FakeComfyUI(args, ["main.py", *argv])
    host = args.listen.split(",")[0]
    print("Starting server\n", flush=True)
    print(f"To see the GUI go to: http://{host}:{args.port}", flush=True)
    web.run_app(server.app(), host=host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
