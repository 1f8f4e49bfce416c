"""SageAttention self-test against torch's scaled_dot_product_attention, printed as one JSON object.

Run by ``comfypod doctor`` (and by the launcher's first auto decision) as a separate process, with
the interpreter that runs ComfyUI: ``<comfyui_python> /app/services/sage_check.py``. A kernel that
crashes takes this process down, not the caller. It imports nothing from this project, and torch
and sageattention only inside :func:`run`, so importing it costs nothing.

Cases (fp16, B=2, H=16, N=4096, D=128, the shape of a video/image DiT block):
- ``normal``: q, k, v ~ N(0, 1).
- ``large``: q and k x 24 (a near one-hot softmax) and v x 2000.
- ``v-offset``: v = 50 N(0, 1) + 1000 under a flat softmax: P.V sums of ~1e5 to ~1e7 that overflow
  a float16 accumulator. These two are the large-magnitude activations reported to give NaN and
  black images with SageAttention 2.2 on SM 8.0/8.6 with some video and image models.
- ``k-offset``: k with a common per-channel offset of 40, which SageAttention's K smoothing removes.

Each case is compared with SDPA computed in float32. The test fails on any NaN/Inf, a cosine
similarity below ``MIN_COSINE`` or a relative L1 error above ``MAX_REL_L1`` (loose bounds: INT8/FP8
quantisation costs a few percent; a wrong or overflowing kernel costs far more); the largest
absolute error is reported too. Speed: median time of ``sageattn`` against fp16 SDPA, normal case.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

MIN_COSINE = 0.99
MAX_REL_L1 = 0.10
SHAPE = (2, 16, 4096, 128)
CASES = (
    # name, q/k scale, v scale, k channel offset, v offset
    ("normal", 1.0, 1.0, 0.0, 0.0),
    ("large", 24.0, 2000.0, 0.0, 0.0),
    ("v-offset", 1.0, 50.0, 0.0, 1000.0),
    ("k-offset", 1.0, 1.0, 40.0, 0.0),
)


def verdict(cases: list[dict[str, Any]]) -> tuple[bool, str]:
    """Pure: the pass/fail decision and its one-line reason, from the measured cases."""
    for case in cases:
        name = case["name"]
        if case.get("error"):
            return False, f"{name}: {case['error']}"
        if case["nonfinite"]:
            return False, f"{name}: {case['nonfinite']} NaN/Inf values in the output"
        if case["cosine"] < MIN_COSINE:
            return False, f"{name}: cosine similarity {case['cosine']:.4f} < {MIN_COSINE}"
        if case["rel_l1"] > MAX_REL_L1:
            return False, f"{name}: relative L1 error {case['rel_l1']:.4f} > {MAX_REL_L1}"
    if not cases:
        return False, "no case ran"
    worst = max(cases, key=lambda c: c["rel_l1"])
    return True, f"all {len(cases)} cases within tolerance (worst: {worst['name']}, rel L1 {worst['rel_l1']:.4f})"


def _compare(torch: Any, out: Any, ref: Any) -> dict[str, Any]:
    out32 = out.float()
    nonfinite = int((~torch.isfinite(out32)).sum().item())
    result: dict[str, Any] = {"nonfinite": nonfinite, "ref_max_abs": float(ref.abs().max().item())}
    if nonfinite:
        return {**result, "max_abs_error": None, "rel_l1": None, "cosine": None}
    diff = (out32 - ref).abs()
    cosine = torch.nn.functional.cosine_similarity(out32.flatten(), ref.flatten(), dim=0).item()
    return {
        **result,
        "max_abs_error": float(diff.max().item()),
        "rel_l1": float((diff.sum() / ref.abs().sum()).item()),
        "cosine": float(cosine),
    }


def _time(torch: Any, func: Any, repeat: int = 20) -> float:
    for _ in range(3):
        func()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        func()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def run() -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "reason": "", "cases": [], "speed": None}
    try:
        import torch
    except ImportError as err:
        result["reason"] = f"torch does not import: {err}"
        return result
    result["torch"] = torch.__version__
    result["torch_cuda"] = torch.version.cuda
    if not torch.cuda.is_available():
        result["reason"] = "torch sees no CUDA device"
        return result
    major, minor = torch.cuda.get_device_capability(0)
    result["gpu"] = torch.cuda.get_device_name(0)
    result["sm"] = f"{major}.{minor}"
    result["torch_arch"] = torch.cuda.get_arch_list()
    try:
        import sageattention
        from sageattention import sageattn
    except ImportError as err:
        result["reason"] = f"sageattention does not import: {err}"
        return result
    result["sage_version"] = getattr(sageattention, "__version__", None) or _dist_version("sageattention")
    sdpa = torch.nn.functional.scaled_dot_product_attention
    generator = torch.Generator(device="cuda").manual_seed(0)
    for name, qk_scale, v_scale, k_offset, v_offset in CASES:
        q, k, v = (torch.randn(SHAPE, device="cuda", dtype=torch.float16, generator=generator) for _ in range(3))
        q, k, v = q * qk_scale, k * qk_scale + k_offset, v * v_scale + v_offset
        case: dict[str, Any] = {"name": name}
        try:
            ref = sdpa(q.float(), k.float(), v.float())
            out = sageattn(q, k, v, tensor_layout="HND", is_causal=False)
            torch.cuda.synchronize()
            case.update(_compare(torch, out, ref))
        except RuntimeError as err:  # a kernel missing for this SM, out of memory, ...
            case.update(
                error=(str(err).splitlines() or [type(err).__name__])[0][:300],
                nonfinite=0,
                max_abs_error=None,
                rel_l1=None,
                cosine=None,
            )
        result["cases"].append(case)
        del q, k, v
    ok, reason = verdict(result["cases"])
    result["ok"], result["reason"] = ok, reason
    if not any(c.get("error") for c in result["cases"]):
        q, k, v = (torch.randn(SHAPE, device="cuda", dtype=torch.float16, generator=generator) for _ in range(3))
        sdpa_ms = _time(torch, lambda: sdpa(q, k, v))
        sage_ms = _time(torch, lambda: sageattn(q, k, v, tensor_layout="HND", is_causal=False))
        result["speed"] = {
            "sdpa_ms": round(sdpa_ms, 3),
            "sage_ms": round(sage_ms, 3),
            "ratio": round(sdpa_ms / sage_ms, 2) if sage_ms else None,
        }
    errors = [c["max_abs_error"] for c in result["cases"] if c.get("max_abs_error") is not None]
    result["max_abs_error"] = max(errors) if errors else None
    return result


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main() -> int:
    started = time.monotonic()
    result = run()
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
