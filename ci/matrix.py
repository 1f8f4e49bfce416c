"""The CUDA matrix (docker/cuda-matrix.json): one row per image tag, read by make, CI and the build.

Standard library only: it runs under the system python3 (``make build``) and inside the image
build (``python -m ci.matrix image-info``), where the project's own packages are not installed.

    python -m ci.matrix versions           # 12.4 12.5 12.6 12.8 12.9 13.0
    python -m ci.matrix target 12.6        # cu126 (exit 2 listing the supported ones otherwise)
    python -m ci.matrix github-matrix      # {"include": [...]} for the CI build matrix
    python -m ci.matrix image-info ...     # /app/image.json: what this image was built with
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MATRIX_FILE = ROOT / "docker" / "cuda-matrix.json"
ROW_FIELDS = (
    "cuda",
    "tag",
    "base_devel",
    "base_runtime",
    "min_driver",
    "torch",
    "torch_index",
    "torch_arch",
    "sage_arch",
    "why_base",
    "why_torch",
    "why_sage_arch",
)


class MatrixError(Exception):
    """An unknown CUDA version or a malformed table; the message is one line."""


@dataclass(frozen=True)
class Matrix:
    variables: dict[str, Any]
    rows: tuple[dict[str, str], ...]

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(row["cuda"] for row in self.rows)

    def variable(self, name: str) -> Any:
        return self.variables[name]["default"]

    def row(self, cuda: str) -> dict[str, str]:
        for row in self.rows:
            if row["cuda"] == cuda:
                return row
        raise MatrixError(f"unknown CUDA {cuda!r}: supported versions are {' '.join(self.versions)}")

    def image_tag(self, row: dict[str, str], flavor: str = "base") -> str:
        return f"{flavor}-py{self.variable('PYTHON_VERSION')}-{row['tag']}"


def load(path: Path = MATRIX_FILE) -> Matrix:
    data = json.loads(Path(path).read_text())
    variables = data["variable"]
    rows = tuple(variables["CUDA_MATRIX"]["default"])
    for row in rows:
        missing = [name for name in ROW_FIELDS if not str(row.get(name, "")).strip()]
        if missing:
            raise MatrixError(f"{path}: row {row.get('cuda', '?')} lacks {', '.join(missing)}")
    return Matrix(variables=variables, rows=rows)


def arch_list(text: str) -> list[str]:
    """'8.0 8.6' -> ['8.0', '8.6'] (the table's space-separated form)."""
    return text.split()


def github_matrix(matrix: Matrix) -> dict[str, list[dict[str, str]]]:
    include = [{"cuda": row["cuda"], "target": row["tag"], "image_tag": matrix.image_tag(row)} for row in matrix.rows]
    return {"include": include}


_TORCH_PROBE = (
    "import json, torch\n"
    "flags = torch._C._cuda_getArchFlags() if hasattr(torch._C, '_cuda_getArchFlags') else ''\n"
    "print(json.dumps({'torch': torch.__version__, 'torch_cuda': torch.version.cuda, "
    "'torch_arch_flags': flags.split()}))\n"
)


def probe_torch(python: str) -> dict[str, Any]:
    """torch's version and compiled arch list, asked of ``python`` (no GPU needed)."""
    out = subprocess.run([python, "-c", _TORCH_PROBE], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def image_info(matrix: Matrix, cuda: str, torch_facts: dict[str, Any], sage: dict[str, Any]) -> dict[str, Any]:
    """The facts ``comfypod doctor`` reads from /app/image.json."""
    row = matrix.row(cuda)
    torch_arch = [a for a in torch_facts.get("torch_arch_flags", []) if a.startswith(("sm_", "compute_"))]
    return {
        "tag": matrix.image_tag(row),
        "cuda": row["cuda"],
        "python": matrix.variable("PYTHON_VERSION"),
        "min_driver": row["min_driver"],
        "torch": torch_facts.get("torch") or row["torch"],
        "torch_cuda": torch_facts.get("torch_cuda"),
        "torch_arch": torch_arch or [f"sm_{a.replace('.', '')}" for a in arch_list(row["torch_arch"])],
        "sage_arch": arch_list(row["sage_arch"]),
        "sage": sage,
    }


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ci.matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=MATRIX_FILE)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("versions", help="the supported CUDA versions, space separated")
    target = sub.add_parser("target", help="the bake target of one CUDA version")
    target.add_argument("cuda")
    row = sub.add_parser("row", help="one row as JSON")
    row.add_argument("cuda")
    sub.add_parser("github-matrix", help="the CI build matrix as JSON")
    info = sub.add_parser("image-info", help="write /app/image.json at the end of an image build")
    info.add_argument("--cuda", required=True)
    info.add_argument("--python", required=True, help="the image venv's interpreter (has torch)")
    info.add_argument("--sage-status", type=Path, required=True, help="sage-build.json from ci.sage")
    info.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        matrix = load(args.file)
        if args.command == "versions":
            print(" ".join(matrix.versions))
        elif args.command == "target":
            print(matrix.row(args.cuda)["tag"])
        elif args.command == "row":
            print(json.dumps(matrix.row(args.cuda), indent=2))
        elif args.command == "github-matrix":
            print(json.dumps(github_matrix(matrix)))
        elif args.command == "image-info":
            sage = json.loads(args.sage_status.read_text()) if args.sage_status.is_file() else {}
            facts = image_info(matrix, args.cuda, probe_torch(args.python), sage)
            args.out.write_text(json.dumps(facts, indent=2) + "\n")
            print(json.dumps(facts, indent=2))
    except MatrixError as err:
        print(f"ci.matrix: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
