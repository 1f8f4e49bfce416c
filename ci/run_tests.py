"""Run the test suite; a run that collects no tests fails loudly (pytest exit 5)."""

from __future__ import annotations

import sys

import pytest


def main(argv: list[str]) -> int:
    code = int(pytest.main(argv))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("FAIL: pytest collected no tests (exit 5); the suite must never be empty", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
