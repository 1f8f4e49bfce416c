"""ComfyUI stand-in for the Python-environment tests (copied into a test's COMFYUI_DIR).

Loads custom nodes the way ComfyUI does (each custom_nodes folder from extra_model_paths.yaml,
then its own), prints ComfyUI's "Import times for custom nodes" block, writes what it saw to
``<output dir>/pyenv-report.json`` (interpreter, sys.path, pip variables, node results), then
serves HTTP on --port until stopped, or exits at once with --quick-test-for-ci.
"""

import argparse
import http.server
import importlib.util
import json
import os
import re
import sys
import time
import traceback

parser = argparse.ArgumentParser()
parser.add_argument("--listen", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8188)
parser.add_argument("--extra-model-paths-config", action="append", default=[])
parser.add_argument("--output-directory", default=".")
parser.add_argument("--quick-test-for-ci", action="store_true")
args, _unknown = parser.parse_known_args()

here = os.path.dirname(os.path.abspath(__file__))
node_paths = []
for config in args.extra_model_paths_config:
    with open(config) as handle:
        for line in handle:
            match = re.match(r"^\s+custom_nodes:\s*(\S.*?)\s*$", line)
            if match:
                node_paths.insert(0, match.group(1))
node_paths.append(os.path.join(here, "custom_nodes"))

results = {}
times = []
for folder in node_paths:
    if not os.path.isdir(folder):
        continue
    for entry in sorted(os.listdir(os.path.realpath(folder))):
        path = os.path.join(folder, entry)
        if entry == "__pycache__" or entry.endswith(".disabled"):
            continue
        if os.path.isfile(path) and not entry.endswith(".py"):
            continue
        started = time.perf_counter()
        module_name = entry[:-3] if entry.endswith(".py") else entry
        target = path if os.path.isfile(path) else os.path.join(path, "__init__.py")
        try:
            spec = importlib.util.spec_from_file_location(module_name, target)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            results[entry] = {"ok": True, "error": "", "value": repr(getattr(module, "VALUE", None))}
        except Exception as err:  # noqa: BLE001 - report like ComfyUI does
            print(traceback.format_exc(), flush=True)
            print(f"Cannot import {path} module for custom nodes: {err}", flush=True)
            results[entry] = {"ok": False, "error": str(err), "value": None}
        times.append((time.perf_counter() - started, path, results[entry]["ok"]))

if times:
    print("\nImport times for custom nodes:")
    for seconds, path, ok in sorted(times):
        print("{:6.1f} seconds{}: {}".format(seconds, "" if ok else " (IMPORT FAILED)", path))
    print(flush=True)

report = {
    "executable": sys.executable,
    "prefix": sys.prefix,
    "path": sys.path,
    "env": {k: os.environ.get(k) for k in ("PIP_CONSTRAINT", "PIP_PREFIX", "PIP_NO_INDEX", "JUPYTER_PATH")},
    "nodes": results,
}
os.makedirs(args.output_directory, exist_ok=True)
tmp = os.path.join(args.output_directory, ".pyenv-report.json.tmp")
with open(tmp, "w") as handle:
    json.dump(report, handle, indent=1)
os.replace(tmp, os.path.join(args.output_directory, "pyenv-report.json"))

if args.quick_test_for_ci:
    sys.exit(0)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps({"system": {"comfyui_version": "pyenv-standin"}, "devices": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer((args.listen, args.port), Handler).serve_forever()
