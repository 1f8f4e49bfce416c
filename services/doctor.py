"""Verdicts on driver, CUDA, SM and SageAttention; picks ComfyUI's attention flag.

The verdict functions are pure: they take facts (GPUs from :mod:`services.gpu`, the image's build
facts from ``/app/image.json``, the tags of ``docker/cuda-matrix.json``, a self-test result) and
return checks and messages. Gathering those facts is :mod:`services.doctor_probe`'s job. Two entry
points tie them together:

- :func:`startup_step` (a step of ``comfypod up``): fast checks only. No GPU: one log line. A driver
  too old for the image's CUDA, or a GPU whose SM torch has no kernels for, stops start-up with a
  :class:`BuildError` naming the image tag to use instead.
- :func:`attention_flag` (called by the launcher): ``SAGE_ATTENTION`` off never adds
  ``--use-sage-attention``; on always does (warning when the self-test failed here); auto only when
  the cached self-test verdict for this GPU, driver and SageAttention version passed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.errors import BuildError
from services.gpu import GPU

log = logging.getLogger("comfypod.doctor")

SAGE_FLAG = "--use-sage-attention"
OK, WARN, FAIL, SKIP, INFO = "ok", "warn", "fail", "skip", "info"


@dataclass(frozen=True)
class ImageFacts:
    """What the image was built with (``/app/image.json``, written by ``ci.matrix image-info``)."""

    tag: str
    cuda: str
    python: str = ""
    torch: str = ""
    torch_arch: tuple[str, ...] = ()
    sage_arch: tuple[str, ...] = ()
    sage_built: bool | None = None
    sage_reason: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageFacts:
        sage = data.get("sage") or {}
        return cls(
            tag=str(data.get("tag", "")),
            cuda=str(data.get("cuda", "")),
            python=str(data.get("python", "")),
            torch=str(data.get("torch", "")),
            torch_arch=tuple(data.get("torch_arch", ())),
            sage_arch=tuple(data.get("sage_arch", ())),
            sage_built=sage.get("built"),
            sage_reason=str(sage.get("reason", "")),
        )


@dataclass(frozen=True)
class Tag:
    """One image tag the project builds (a row of docker/cuda-matrix.json)."""

    cuda: str
    name: str  # base-py3.13-cu128
    torch_arch: tuple[str, ...]  # ("7.5", "8.0", ...)
    sage_arch: tuple[str, ...]
    min_driver: str


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip | info
    detail: str


@dataclass(frozen=True)
class Verdict:
    """A cached self-test outcome for one (GPU, driver, SageAttention version)."""

    ok: bool
    reason: str
    max_abs_error: float | None = None
    speed_ratio: float | None = None

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Verdict:
        speed = result.get("speed") or {}
        return cls(
            ok=bool(result.get("ok")),
            reason=str(result.get("reason") or "no reason given"),
            max_abs_error=result.get("max_abs_error"),
            speed_ratio=speed.get("ratio"),
        )


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...] = ()
    fatal: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.fatal is not None or any(c.status == FAIL for c in self.checks)


# ---- version and architecture arithmetic -------------------------------------------------------


def version_tuple(text: str | None) -> tuple[int, ...]:
    """'12.8' -> (12, 8); '2.9.1+cu128' -> (2, 9, 1); '' -> ()."""
    parts = []
    for piece in (text or "").split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _sm_pair(arch: str) -> tuple[str, tuple[int, int]] | None:
    """'sm_90a' -> ('sm', (9, 0)); 'compute_120' -> ('compute', (12, 0)); '8.6' -> ('sm', (8, 6))."""
    kind, _, number = arch.lower().partition("_")
    if not number:
        kind, number = "sm", arch.replace(".", "")
    number = number.rstrip("af")
    if not number.isdigit() or len(number) < 2:
        return None
    return kind, (int(number[:-1]), int(number[-1]))


def sm_supported(sm: str, arch_list: Iterable[str]) -> bool:
    """Can code built for ``arch_list`` run on a GPU of compute capability ``sm``?

    A cubin runs on the same major version with an equal or higher minor (sm_86 runs on 8.9);
    PTX (``compute_XY``) is compiled on the fly for any equal or newer GPU.
    """
    target = version_tuple(sm)
    if len(target) < 2:
        return False
    for arch in arch_list:
        parsed = _sm_pair(arch)
        if parsed is None:
            continue
        kind, (major, minor) = parsed
        if kind == "sm" and major == target[0] and minor <= target[1]:
            return True
        if kind == "compute" and (major, minor) <= target[:2]:
            return True
    return False


def suggest_tag(tags: Sequence[Tag], driver_cuda: str | None, sms: Iterable[str]) -> Tag | None:
    """The newest tag whose CUDA this driver runs and whose torch has kernels for every GPU."""
    fitting = [
        tag
        for tag in tags
        if (driver_cuda is None or version_tuple(tag.cuda) <= version_tuple(driver_cuda))
        and all(sm_supported(sm, tag.torch_arch) for sm in sms)
    ]
    return max(fitting, key=lambda t: version_tuple(t.cuda), default=None)


def _instead(tags: Sequence[Tag], driver_cuda: str | None, sms: list[str], current: str) -> str:
    tag = suggest_tag(tags, driver_cuda, sms)
    if tag is not None and tag.name != current:
        return f"use image tag {tag.name} instead"
    newer = [t for t in tags if all(sm_supported(sm, t.torch_arch) for sm in sms)]
    if newer:
        oldest = min(newer, key=lambda t: version_tuple(t.cuda))
        return f"no ComfyPod tag fits this driver: update the host driver to {oldest.min_driver} or newer"
    return "no ComfyPod tag supports this GPU"


# ---- host checks (driver, CUDA, SM) -------------------------------------------------------------


def host_report(gpus: Sequence[GPU], gpu_error: str | None, image: ImageFacts | None, tags: Sequence[Tag]) -> Report:
    """Driver and CUDA against the image, torch's kernels against each GPU's SM."""
    if not gpus:
        return Report((Check("gpu", SKIP, f"no GPU: {gpu_error or 'NVML found none'}"),))
    first = gpus[0]
    checks = [Check("driver", OK, f"{first.driver}, CUDA {first.cuda_driver or 'unknown'} at most")]
    names: dict[tuple[str, str | None], int] = {}
    for g in gpus:
        names[(g.name, g.sm)] = names.get((g.name, g.sm), 0) + 1
    for (name, sm), count in names.items():
        prefix = f"{count} x " if count > 1 else ""
        checks.append(Check("gpu", OK if sm else WARN, f"{prefix}{name}, SM {sm or 'unknown'}"))
    sms = [g.sm for g in gpus if g.sm]
    if image is None:
        checks.append(Check("image", SKIP, "not a ComfyPod image (no image.json): CUDA and SM checks skipped"))
        return Report(tuple(checks))
    checks.append(Check("image", INFO, f"{image.tag}: CUDA {image.cuda}, torch {image.torch or 'unknown'}"))
    fatal = None
    driver_cuda = first.cuda_driver
    if driver_cuda is None:
        checks.append(Check("cuda", WARN, "the driver does not report its CUDA version; not checked"))
    elif version_tuple(driver_cuda) < version_tuple(image.cuda):
        fatal = (
            f"this image is built for CUDA {image.cuda} but the host driver {first.driver} runs CUDA "
            f"{driver_cuda} at most: {_instead(tags, driver_cuda, sms, image.tag)}"
        )
        checks.append(Check("cuda", FAIL, fatal))
    else:
        checks.append(Check("cuda", OK, f"driver CUDA {driver_cuda} runs this image's CUDA {image.cuda}"))
    for sm in dict.fromkeys(sms):
        gpu_name = next(g.name for g in gpus if g.sm == sm)
        if not image.torch_arch:
            checks.append(Check("sm", WARN, f"the image does not list torch's architectures; SM {sm} not checked"))
        elif sm_supported(sm, image.torch_arch):
            checks.append(Check("sm", OK, f"torch has kernels for SM {sm}"))
        else:
            message = (
                f"torch {image.torch or ''} in this image has no kernels for {gpu_name} (SM {sm}; it has "
                f"{' '.join(image.torch_arch)}): {_instead(tags, driver_cuda, sms, image.tag)}"
            )
            fatal = fatal or message
            checks.append(Check("sm", FAIL, message))
    return Report(tuple(checks), fatal=fatal)


# ---- SageAttention ------------------------------------------------------------------------------


def verdict_key(gpu: GPU, sage_version: str) -> str:
    """Cache key of a self-test verdict: GPU name, driver and SageAttention version."""
    return f"{gpu.name}|{gpu.driver}|{sage_version}"


def sage_precheck(gpu: GPU, image: ImageFacts | None) -> Verdict | None:
    """A failed verdict known without running anything (this image has no kernels for the SM)."""
    if image is None or not image.sage_arch or not gpu.sm:
        return None
    if gpu.sm in image.sage_arch:
        return None
    return Verdict(False, f"this image's SageAttention kernels are for SM {' '.join(image.sage_arch)}, not {gpu.sm}")


def decide_attention(mode: str, gpu_name: str, verdict: Verdict | None) -> tuple[list[str], str]:
    """ComfyUI's attention flags and the reason, from the mode and the cached verdict."""
    if mode == "off":
        return [], "SAGE_ATTENTION=off: PyTorch attention"
    if mode == "on":
        if verdict is None:
            return [SAGE_FLAG], "SAGE_ATTENTION=on: SageAttention (no self-test verdict on this GPU yet)"
        if not verdict.ok:
            return [
                SAGE_FLAG
            ], f"SAGE_ATTENTION=on: SageAttention forced although its self-test failed on {gpu_name}: {verdict.reason}"
        return [SAGE_FLAG], f"SAGE_ATTENTION=on: SageAttention (self-test passed on {gpu_name})"
    if verdict is None:
        return (
            [],
            f"SAGE_ATTENTION=auto: no self-test verdict for {gpu_name} yet: PyTorch attention (run `comfypod doctor`)",
        )
    if verdict.ok:
        speed = f", {verdict.speed_ratio}x SDPA" if verdict.speed_ratio else ""
        return [SAGE_FLAG], f"SAGE_ATTENTION=auto: SageAttention, its self-test passed on {gpu_name}{speed}"
    return (
        [],
        f"SAGE_ATTENTION=auto: PyTorch attention, the SageAttention self-test failed on {gpu_name}: {verdict.reason}",
    )


def sage_checks(result: dict[str, Any]) -> list[Check]:
    """Lines for ``comfypod doctor`` from one self-test result (see services/sage_check.py)."""
    if not result.get("sage_version") and not result.get("cases"):
        reason = str(result.get("reason") or "the self-test did not run")
        status = WARN if reason.startswith("sageattention") else SKIP if "no CUDA device" in reason else FAIL
        return [Check("sage", status, reason)]
    checks = [
        Check("sage", OK, f"sageattention {result.get('sage_version') or '?'} imports on SM {result.get('sm', '?')}")
    ]
    for case in result.get("cases", []):
        if case.get("error"):
            checks.append(Check("self-test", FAIL, f"{case['name']}: {case['error']}"))
        elif case.get("nonfinite"):
            checks.append(Check("self-test", FAIL, f"{case['name']}: {case['nonfinite']} NaN/Inf values"))
        else:
            checks.append(
                Check(
                    "self-test",
                    OK,
                    f"{case['name']}: max abs error {case['max_abs_error']:.4g} (output up to "
                    f"{case['ref_max_abs']:.4g}), rel L1 {case['rel_l1']:.4f}, cosine {case['cosine']:.5f}",
                )
            )
    speed = result.get("speed")
    if speed:
        checks.append(
            Check("speed", OK, f"sageattn {speed['sage_ms']} ms vs SDPA {speed['sdpa_ms']} ms: {speed['ratio']}x")
        )
    checks.append(Check("verdict", OK if result.get("ok") else FAIL, result.get("reason", "")))
    return checks


# ---- entry points (facts come from services.doctor_probe) ---------------------------------------


def startup_step(settings) -> Report | None:
    """Fast checks at ``comfypod up``: stop with the tag to use when this image cannot work here."""
    from services import doctor_probe, gpu

    gpus = gpu.gpus()
    if not gpus:
        log.info("no GPU (%s): driver and CUDA checks skipped", gpu.gpu_error() or "NVML found none")
        return None
    report = host_report(gpus, gpu.gpu_error(), doctor_probe.load_image(settings), doctor_probe.load_tags(settings))
    if report.fatal:
        raise BuildError(report.fatal)
    for check in report.checks:
        level = logging.WARNING if check.status == WARN else logging.INFO
        log.log(level, "doctor: %s %s", check.name, check.detail)
    return report


def attention_flag(settings, *, run_test: bool = True) -> tuple[list[str], str]:
    """(flags for ComfyUI, reason to log) following SAGE_ATTENTION; never raises for a missing GPU."""
    from services import doctor_probe, gpu

    mode = settings.sage_attention
    if mode == "off":
        return decide_attention(mode, "", None)
    gpus = gpu.gpus()
    if not gpus:
        return [], f"SAGE_ATTENTION={mode} ignored: no GPU ({gpu.gpu_error() or 'NVML found none'}): PyTorch attention"
    image = doctor_probe.load_image(settings)
    version = doctor_probe.sage_version(settings)
    if version is None:
        why = image.sage_reason if image is not None and image.sage_built is False else "sageattention is not installed"
        return [], f"SAGE_ATTENTION={mode} ignored: {why}: PyTorch attention"
    first = gpus[0]
    verdict = sage_precheck(first, image) or doctor_probe.cached_verdict(settings, verdict_key(first, version))
    if verdict is None and mode == "auto" and run_test:
        log.info("SageAttention self-test on %s (once per GPU, driver and version)", first.name)
        verdict = doctor_probe.record_self_test(settings, verdict_key(first, version))
    flags, reason = decide_attention(mode, first.name, verdict)
    if mode == "on" and verdict is not None and not verdict.ok:
        log.warning("%s", reason)
    return flags, reason
