"""List every shell script of the repository (tracked or new, not ignored): `*.sh` or a sh/bash shebang.

python -m ci.shell_scripts | xargs shellcheck        # make lint-docker
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SHEBANGS = (b"#!/bin/sh", b"#!/bin/bash", b"#!/usr/bin/env sh", b"#!/usr/bin/env bash")


def is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    if path.suffix:
        return False
    try:
        with path.open("rb") as handle:
            first = handle.readline(64)
    except OSError:
        return False
    return first.startswith(_SHEBANGS)


def shell_scripts(root: Path = ROOT) -> list[Path]:
    listed = (
        subprocess.run(
            ["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    paths = (root / name for name in listed if name)
    return sorted(path for path in paths if path.is_file() and is_shell_script(path))


if __name__ == "__main__":
    for script in shell_scripts():
        sys.stdout.write(f"{script.relative_to(ROOT)}\n")
