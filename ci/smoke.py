"""CPU smoke test of a built image (CI runners have no GPU).

    python -m ci.smoke comfypod/comfypod:base-py3.13-cu128

Starts the image with ComfyUI on the CPU, waits until the admin (/healthz) and ComfyUI
(/system_stats) answer, queues a workflow that needs no model (EmptyImage -> SaveImage), waits for
its image, prints `comfypod doctor --quick`, and removes the container. Requests go through
`docker exec`, so they test the services behind nginx's login without needing the password.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 8421504}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "smoke"}},
}


class SmokeError(Exception):
    pass


def docker(*args: str, input_text: str | None = None, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], input=input_text, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SmokeError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def curl(container: str, url: str, data: str | None = None) -> str:
    argv = ["exec", "-i", container, "curl", "-fsS", "--max-time", "10", url]
    if data is not None:
        argv[5:5] = ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    return docker(*argv, input_text=data)


def wait_for(container: str, url: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            return curl(container, url)
        except SmokeError as err:
            last = str(err)
            state = docker("inspect", "-f", "{{.State.Running}}", container, check=False).strip()
            if state == "false":
                raise SmokeError(f"the container stopped while waiting for {url}") from err
        time.sleep(3)
    raise SmokeError(f"{url} did not answer within {timeout:.0f}s: {last}")


def smoke(image: str, timeout: float) -> None:
    name = f"comfypod-smoke-{uuid.uuid4().hex[:8]}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "-e",
        "COMFYUI_ARGS=--cpu",
        "-e",
        "ACCESS_PASSWORD=smoke-test-password",
        "-e",
        "ENABLE_CODE_SERVER=false",
        "-e",
        "SAGE_ATTENTION=off",
        image,
    )
    try:
        wait_for(name, "http://127.0.0.1:18082/healthz", timeout)
        print("admin answers", flush=True)
        wait_for(name, "http://127.0.0.1:18188/system_stats", timeout)
        print("ComfyUI answers", flush=True)
        queued = json.loads(curl(name, "http://127.0.0.1:18188/prompt", json.dumps({"prompt": WORKFLOW})))
        prompt_id = queued["prompt_id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            history = json.loads(curl(name, f"http://127.0.0.1:18188/history/{prompt_id}"))
            outputs = history.get(prompt_id, {}).get("outputs", {})
            images = outputs.get("2", {}).get("images", [])
            if images:
                print(f"workflow done: {images[0]['filename']}", flush=True)
                break
            time.sleep(2)
        else:
            raise SmokeError("the model-free workflow produced no image within 120s")
        print(docker("exec", name, "comfypod", "doctor", "--quick", check=False), flush=True)
    except SmokeError:
        print(docker("logs", "--tail", "200", name, check=False), file=sys.stderr)
        raise
    finally:
        docker("rm", "-f", name, check=False)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    try:
        smoke(args.image, args.timeout)
    except SmokeError as err:
        print(f"ci.smoke: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
