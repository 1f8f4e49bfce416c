"""The image's constraints file: the packages no install may change, and pip's refusals explained.

The image bakes ``APP_DIR/constraints.txt`` at build time from its own installed builds of
``PINNED``. At start the effective file (``constraints_file(settings)``, exported as
``PIP_CONSTRAINT``) is that file plus a line for every pinned package it does not mention but the
interpreter has, so a local image without a baked file is protected the same way.

``render_constraints`` and ``explain_refusal`` are pure; ``write_constraints`` writes the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from services.files import write_atomic
from services.settings import Settings

# Packages whose build belongs to the image: a node asking for another version is refused.
# comfyui-frontend-package is here so that no install can put an older frontend in front of the
# image's own (ComfyUI serves the frontend from whatever package version is importable).
PINNED: tuple[str, ...] = (
    "torch",
    "torchvision",
    "torchaudio",
    "triton",
    "xformers",
    "sageattention",
    "numpy",
    "comfyui-frontend-package",
)

BAKED_NAME = "constraints.txt"
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalized project name: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def baked_file(settings: Settings) -> Path:
    return settings.app_dir / BAKED_NAME


def constraints_file(settings: Settings) -> Path:
    """The effective constraints file every pip call uses (``PIP_CONSTRAINT``)."""
    return settings.run_dir / "constraints.txt"


def constrained_names(text: str) -> dict[str, str]:
    """Canonical name -> the whole requirement line, for each constraint in ``text``."""
    names: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _REQ_NAME.match(line)
        if match:
            names.setdefault(canonical(match.group(1)), line)
    return names


def render_constraints(installed: Mapping[str, str], baked: str | None) -> str:
    """The effective constraints: the baked lines, then ``name==version`` for each pinned package
    the interpreter has that the baked file does not mention. ``installed`` is keyed by canonical
    name."""
    lines = ["# Written by ComfyPod at start: the image's own builds, which no install may change."]
    mentioned: dict[str, str] = {}
    if baked:
        lines.append(f"# from the image's {BAKED_NAME}")
        lines.extend(line.rstrip() for line in baked.splitlines() if line.strip())
        mentioned = constrained_names(baked)
    added = [f"{name}=={installed[name]}" for name in PINNED if name in installed and name not in mentioned]
    if added:
        lines.append("# found installed in the image")
        lines.extend(added)
    return "\n".join(lines) + "\n"


def write_constraints(settings: Settings, installed: Mapping[str, str]) -> Path:
    """Write the effective constraints file atomically; return its path."""
    baked_path = baked_file(settings)
    baked = baked_path.read_text() if baked_path.is_file() else None
    path = constraints_file(settings)
    return write_atomic(path, render_constraints(installed, baked))


_CONSTRAINT_LINE = re.compile(r"\(constraint\)\s+(\S+)")
_CONFLICT_SUBJECT = re.compile(r"Cannot install (.+?) because these package versions have conflicting dependencies")


def explain_refusal(pip_output: str, constraints_text: str) -> str | None:
    """When pip refused because of a constraint, one line naming the request and the constraint.

    Returns None when the failure is not a constraint conflict (say a missing package).
    """
    pinned = constrained_names(constraints_text)
    hits: list[str] = []
    for match in _CONSTRAINT_LINE.finditer(pip_output):
        requirement = match.group(1).strip().rstrip(",")
        if requirement not in hits:
            hits.append(requirement)
    if not hits:
        # pip may only say it found no version inside the constraint's range
        for name, line in pinned.items():
            pattern = rf"(?i)(?:requirement|version that satisfies the requirement)\s+({re.escape(name)}\S*)"
            found = re.search(pattern, pip_output.replace("_", "-"))
            if found and "conflict" in pip_output.lower():
                hits.append(line)
    if not hits:
        return None
    asked = _asked_for(pip_output, hits)
    subject = _CONFLICT_SUBJECT.search(pip_output)
    pins = ", ".join(hits)
    if asked:
        return f"asks for {asked}, but the image pins {pins} (constraints file)"
    if subject:
        return f"cannot install {subject.group(1)}: the image pins {pins} (constraints file)"
    return f"conflicts with the image's pinned {pins} (constraints file)"


def _asked_for(pip_output: str, hits: list[str]) -> str | None:
    """The requests that clash with the pins, from pip's "The conflict is caused by" list."""
    names = {canonical(_REQ_NAME.match(h).group(1)) for h in hits if _REQ_NAME.match(h)}
    asked: list[str] = []
    for raw in pip_output.splitlines():
        line = raw.strip()
        if "(constraint)" in line:
            continue
        requested = re.match(r"The user requested (\S+)", line)
        depends = re.match(r"(\S+ \S+) depends on (\S+)", line)
        requirement = requested.group(1) if requested else depends.group(2) if depends else None
        if requirement is None:
            continue
        match = _REQ_NAME.match(requirement)
        if match and canonical(match.group(1)) in names:
            text = f"{requirement} (via {depends.group(1)})" if depends else requirement
            if text not in asked:
                asked.append(text)
    return ", ".join(asked) or None
