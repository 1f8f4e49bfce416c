"""`comfypod doctor`: driver, CUDA, SM and SageAttention checks, one line each.

Exit status: 0 when nothing failed, 1 when a check failed (a failed SageAttention self-test: the
pod still works with PyTorch attention), 11 (BuildError) when this image cannot work on this host;
its message names the image tag to use instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from services import doctor, doctor_probe, gpu
from services.errors import BuildError
from services.settings import Settings

_MARK = {doctor.OK: "ok", doctor.WARN: "WARN", doctor.FAIL: "FAIL", doctor.SKIP: "skip", doctor.INFO: "info"}


def diagnose(settings: Settings, *, self_test: bool = True) -> doctor.Report:
    """Every check; runs the SageAttention self-test (and refreshes its cached verdict) if asked."""
    gpus = gpu.gpus()
    image = doctor_probe.load_image(settings)
    host = doctor.host_report(gpus, gpu.gpu_error(), image, doctor_probe.load_tags(settings))
    checks = list(host.checks)
    extra: dict = {}
    if gpus and host.fatal is None:
        version = doctor_probe.sage_version(settings)
        precheck = doctor.sage_precheck(gpus[0], image)
        if version is None:
            why = image.sage_reason if image is not None and image.sage_built is False else "not installed"
            checks.append(doctor.Check("sage", doctor.WARN, f"sageattention {why}: ComfyUI uses PyTorch attention"))
        elif precheck is not None:
            checks.append(doctor.Check("sage", doctor.WARN, precheck.reason))
        elif self_test:
            result = doctor_probe.run_self_test(settings)
            doctor_probe.store_verdict(settings, doctor.verdict_key(gpus[0], version), result)
            checks.extend(doctor.sage_checks(result))
            extra["self_test"] = result
    flags, reason = doctor.attention_flag(settings, run_test=False)
    checks.append(doctor.Check("attention", doctor.INFO, f"{' '.join(flags) or 'no flag'}: {reason}"))
    return doctor.Report(tuple(checks), fatal=host.fatal, extra=extra)


@click.command("doctor")
@click.option("--quick", is_flag=True, help="skip the SageAttention self-test (no torch import)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def doctor_command(quick: bool, as_json: bool) -> None:
    """Check driver, CUDA, GPU architecture and SageAttention (error and speed against SDPA)."""
    from services.cli import get_settings

    ctx = click.get_current_context()
    report = diagnose(get_settings(ctx), self_test=not quick)
    if as_json:
        click.echo(
            json.dumps({"checks": [asdict(c) for c in report.checks], "fatal": report.fatal, **report.extra}, indent=2)
        )
    else:
        width = max((len(c.name) for c in report.checks), default=8)
        for check in report.checks:
            click.echo(f"{check.name:<{width}}  {_MARK.get(check.status, check.status):<4}  {check.detail}")
    if report.fatal:
        raise BuildError(report.fatal)
    if report.failed:
        ctx.exit(1)
