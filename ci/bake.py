"""Resolve docker/docker-bake.hcl + docker/cuda-matrix.json the way `docker buildx bake --print` does.

Only the subset the bake file uses is understood: variables with defaults, a matrix over a list
of objects, ``name``, and values that are literals, references (``row.tag``, ``VAR``) or strings
with ``${...}`` references. Anything else raises :class:`BakeError`, which keeps the bake file
simple enough for the tests to check every target against the table without Docker.

    python -m ci.bake print cu126        # the resolved target, as JSON
    python -m ci.bake targets            # every target name
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BAKE_FILE = ROOT / "docker" / "docker-bake.hcl"
MATRIX_FILE = ROOT / "docker" / "cuda-matrix.json"
_REFERENCE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*")
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


class BakeError(Exception):
    """An expression outside the supported subset, or a reference to nothing."""


def _parse_hcl(path: Path) -> dict[str, Any]:
    import hcl2  # python-hcl2, a test dependency

    with path.open() as handle:
        return hcl2.load(handle, serialization_options=hcl2.SerializationOptions(with_comments=False))


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _blocks(data: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for block in data.get(kind, []):
        for name, body in block.items():
            result[_unquote(name)] = {k: v for k, v in body.items() if k != "__is_block__"}
    return result


def lookup(expression: str, scope: dict[str, Any]) -> Any:
    """Evaluate a plain reference such as ``row.tag`` or ``CUDA_MATRIX[0].cuda``."""
    expression = expression.strip()
    if not _REFERENCE.fullmatch(expression):
        raise BakeError(f"unsupported expression {expression!r} (only references like row.tag)")
    parts = re.findall(r"[A-Za-z_][A-Za-z0-9_-]*|\[\d+\]", expression)
    head, rest = parts[0], parts[1:]
    if head not in scope:
        raise BakeError(f"unknown variable {head!r}")
    value = scope[head]
    for part in rest:
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError) as err:
            raise BakeError(f"{expression}: no {part}") from err
    return value


def evaluate(value: Any, scope: dict[str, Any]) -> Any:
    """One attribute value as python-hcl2 serialises it, evaluated in ``scope``."""
    if isinstance(value, list):
        return [evaluate(item, scope) for item in value]
    if isinstance(value, dict):
        return {_unquote(key): evaluate(item, scope) for key, item in value.items()}
    if not isinstance(value, str):
        return value
    if len(value) >= 2 and value[0] == value[-1] == '"':  # a template string
        return _INTERPOLATION.sub(lambda m: str(lookup(m.group(1), scope)), _unquote(value))
    whole = _INTERPOLATION.fullmatch(value)
    return lookup(whole.group(1) if whole else value, scope)


class Bake:
    def __init__(
        self, bake_file: Path = BAKE_FILE, matrix_file: Path = MATRIX_FILE, overrides: dict[str, str] | None = None
    ) -> None:
        data = _parse_hcl(bake_file)
        table = json.loads(Path(matrix_file).read_text())
        self.variables: dict[str, Any] = {}
        for name, body in _blocks(data, "variable").items():
            self.variables[name] = evaluate(body.get("default", '""'), {})
        for name, body in table.get("variable", {}).items():
            self.variables[name] = body.get("default")
        self.variables.update(overrides or {})
        self.groups = {name: evaluate(body.get("targets", []), {}) for name, body in _blocks(data, "group").items()}
        self.targets: dict[str, dict[str, Any]] = {}
        self.families: dict[str, list[str]] = {}
        for name, body in _blocks(data, "target").items():
            self._expand(name, body)

    def _expand(self, name: str, body: dict[str, Any]) -> None:
        matrix = body.get("matrix")
        if not matrix:
            self.targets[name] = {k: evaluate(v, self.variables) for k, v in body.items()}
            return
        if len(matrix) != 1:
            raise BakeError(f"target {name}: only a one-axis matrix is supported")
        ((axis, source),) = matrix.items()
        members = []
        for item in evaluate(source, self.variables):
            scope = {**self.variables, axis: item}
            resolved = {k: evaluate(v, scope) for k, v in body.items() if k not in ("matrix", "name")}
            generated = evaluate(body.get("name", '"' + name + '"'), scope)
            if not re.fullmatch(r"[A-Za-z0-9_-]+", str(generated)):
                raise BakeError(f"target {name}: generated name {generated!r} is not a valid target name")
            if generated in self.targets:
                raise BakeError(f"target {name}: {generated} generated twice")
            self.targets[generated] = resolved
            members.append(generated)
        self.families[name] = members

    def names(self, target: str) -> list[str]:
        """Target names a bake argument (group, matrix family or target) builds."""
        if target in self.groups:
            return [n for member in self.groups[target] for n in self.names(member)]
        if target in self.families:
            return list(self.families[target])
        if target in self.targets:
            return [target]
        raise BakeError(f"no target or group named {target!r}")


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.bake", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("print", help="the resolved targets of a bake argument")
    show.add_argument("target", nargs="?", default="default")
    sub.add_parser("targets", help="every target name")
    args = parser.parse_args(argv)
    try:
        bake = Bake()
        if args.command == "targets":
            print("\n".join(sorted(bake.targets)))
        else:
            print(json.dumps({name: bake.targets[name] for name in bake.names(args.target)}, indent=2))
    except BakeError as err:
        print(f"ci.bake: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
