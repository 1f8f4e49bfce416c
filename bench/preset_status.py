"""Time ``presets.status.preset_status`` over a models tree of 10,000 files (goal: < 50 ms).

    .venv/bin/python bench/preset_status.py [--files 10000] [--runs 20]

Two cases, both on the same tree (sparse files, so the tree costs no disk):
1. the default catalog (56 presets), every catalog file present among 10,000 files;
2. a catalog whose presets name every one of the 10,000 files (the worst case).
Prints the best and median time of ``--runs`` runs for each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from presets.catalog import DEFAULT_PATH, Catalog, ModelFile, Preset, load_catalog  # noqa: E402
from presets.status import preset_status  # noqa: E402
from services.paths import MODEL_FOLDERS  # noqa: E402

GOAL_MS = 50.0


def make_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


def build_tree(models: Path, catalog: Catalog, total: int) -> list[str]:
    """Every catalog file (sparse, at its expected size) plus filler up to ``total`` files."""
    paths: list[str] = []
    for preset in catalog:
        for item in preset.files:
            if item.path not in paths:
                paths.append(item.path)
                make_file(models / item.path, item.expected_size or 1)
    n = 0
    while len(paths) < total:
        folder = MODEL_FOLDERS[n % len(MODEL_FOLDERS)]
        rel = f"{folder}/bench/{n // 500:03d}/model_{n:05d}.safetensors"
        make_file(models / rel, 1000 + n)
        paths.append(rel)
        n += 1
    return paths


def synthetic(paths: list[str], per_preset: int = 20) -> Catalog:
    presets: dict[str, Preset] = {}
    for start in range(0, len(paths), per_preset):
        chunk = paths[start:start + per_preset]
        pid = f"BENCH_{start // per_preset:04d}"
        files = tuple(ModelFile(p, f"https://example.org/{p}", None, None, False, {"type": "direct"}) for p in chunk)
        presets[pid] = Preset(pid, pid, "image", "Image Generation", "", files, (), "", None, None)
    return Catalog(presets)


def measure(catalog: Catalog, models: Path, runs: int) -> tuple[float, float]:
    preset_status(catalog, models)  # warm the dentry cache like a live pod
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        preset_status(catalog, models)
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    catalog = load_catalog(DEFAULT_PATH)
    with tempfile.TemporaryDirectory(prefix="comfypod-bench-") as tmp:
        models = Path(tmp) / "models"
        paths = build_tree(models, catalog, args.files)
        distinct = len({f.path for p in catalog for f in p.files})
        best, median = measure(catalog, models, args.runs)
        ok = "ok" if median < GOAL_MS else "over the goal"
        print(f"default catalog ({len(catalog)} presets, {distinct} distinct files) over {len(paths)} files: "
              f"best {best:.2f} ms, median {median:.2f} ms (goal < {GOAL_MS:.0f} ms: {ok})")
        big = synthetic(paths)
        best, median = measure(big, models, max(3, args.runs // 4))
        print(f"catalog naming all {len(paths)} files ({len(big)} presets): best {best:.1f} ms, median {median:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
