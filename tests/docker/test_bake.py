"""docker/docker-bake.hcl parses with python-hcl2 and every target resolves to the base images,
torch index and SageAttention arch list of the table (docker/cuda-matrix.json); ci.bake's evaluator."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from ci import bake as bakefile
from ci import matrix as table

ROOT = Path(__file__).resolve().parents[2]
BASE_ARCH = ["8.0", "8.6", "8.9", "9.0"]
BLACKWELL = ["10.0", "12.0"]


@pytest.fixture(scope="module")
def bake() -> bakefile.Bake:
    return bakefile.Bake()


@pytest.fixture(scope="module")
def rows() -> tuple[dict[str, str], ...]:
    return table.load().rows


def test_one_target_per_cuda_version(bake, rows):
    assert [r["cuda"] for r in rows] == ["12.4", "12.5", "12.6", "12.8", "12.9", "13.0"]
    assert sorted(bake.targets) == sorted(r["tag"] for r in rows)
    assert bake.names("all") == [r["tag"] for r in rows]
    assert bake.names("default") == ["cu130"]
    assert table.load().variable("DEFAULT_CUDA") == "13.0"


def test_every_target_resolves_to_its_row(bake, rows):
    for row in rows:
        target = bake.targets[row["tag"]]
        args = target["args"]
        assert args["CUDA_VERSION"] == row["cuda"]
        assert args["BASE_DEVEL"] == row["base_devel"]
        assert args["BASE_RUNTIME"] == row["base_runtime"]
        assert args["TORCH_INDEX"] == row["torch_index"]
        assert args["TORCH_VERSION"] == row["torch"]
        assert args["SAGE_ARCH"] == row["sage_arch"]
        assert args["SAGE_COMMIT"] == table.load().variable("SAGE_COMMIT")
        assert target["dockerfile"] == "docker/Dockerfile" and target["target"] == "runtime"
        assert target["context"] == "."


def test_tag_format(bake, rows):
    version = configparser.ConfigParser()
    version.read(ROOT / "setup.cfg")
    assert bake.variables["VERSION"] == version["metadata"]["version"]
    for row in rows:
        tags = bake.targets[row["tag"]]["tags"]
        suffix = f"py3.13-cu{row['cuda'].replace('.', '')}"
        assert tags == [
            f"docker.io/comfypod/comfypod:base-{suffix}",
            f"docker.io/comfypod/comfypod:{bake.variables['VERSION']}-base-{suffix}",
        ]
        assert row["tag"] == "cu" + row["cuda"].replace(".", "")  # the Makefile derives it so


@pytest.mark.parametrize("cuda", ["12.4", "12.5", "12.6", "12.8", "12.9", "13.0"])
def test_table_pins_are_consistent(cuda):
    row = table.load().row(cuda)
    arch = row["sage_arch"].split()
    expected = BASE_ARCH + (BLACKWELL if tuple(map(int, cuda.split("."))) >= (12, 8) else [])
    assert arch == expected
    assert row["base_devel"].startswith(f"nvidia/cuda:{cuda}.") and "-devel-ubuntu" in row["base_devel"]
    assert row["base_runtime"] == row["base_devel"].replace("-devel-", "-runtime-")
    assert row["torch_index"].startswith("https://download.pytorch.org/whl/cu")
    index_cuda = row["torch_index"].rsplit("/cu", 1)[1]
    if index_cuda != cuda.replace(".", ""):
        assert "never published" in row["why_torch"], "a torch index of another CUDA needs its reason"
    assert all(row[k].strip() for k in ("why_base", "why_torch", "why_sage_arch"))
    assert all(a in row["torch_arch"].split() for a in ("8.0", "8.6", "9.0"))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("row.tag", "cu128"), ("VAR", "x"), ("LIST[1].cuda", "13.0")],
)
def test_lookup(expression, expected):
    scope = {"row": {"tag": "cu128"}, "VAR": "x", "LIST": [{"cuda": "12.8"}, {"cuda": "13.0"}]}
    assert bakefile.lookup(expression, scope) == expected


@pytest.mark.parametrize("expression", ['notequal("", VAR)', "a ? b : c", 'join(",", VAR)', "nothing.here"])
def test_unsupported_or_unknown_expressions_fail(expression):
    with pytest.raises(bakefile.BakeError):
        bakefile.lookup(expression, {"VAR": "x"})


def test_evaluate_templates():
    scope = {"row": {"tag": "cu126"}, "REG": "r"}
    assert bakefile.evaluate('"${REG}:base-${row.tag}"', scope) == "r:base-cu126"
    assert bakefile.evaluate("${row.tag}", scope) == "cu126"
    assert bakefile.evaluate(['"a"', "REG"], scope) == ["a", "r"]
    assert bakefile.evaluate({'"k"': '"v-${REG}"'}, scope) == {"k": "v-r"}


def test_cli_prints_a_target(capsys):
    assert bakefile._main(["print", "cu128"]) == 0
    assert '"TORCH_INDEX": "https://download.pytorch.org/whl/cu128"' in capsys.readouterr().out
    assert bakefile._main(["print", "cu999"]) == 2
