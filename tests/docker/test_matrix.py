"""ci.matrix: the table's CLI (make, CI) and the image facts the doctor reads."""

from __future__ import annotations

import json

import pytest

from ci import matrix
from services.doctor import ImageFacts


def test_versions_and_targets(capsys):
    assert matrix._main(["versions"]) == 0
    assert capsys.readouterr().out.split() == ["12.4", "12.5", "12.6", "12.8", "12.9", "13.0"]
    assert matrix._main(["target", "12.8"]) == 0
    assert capsys.readouterr().out.strip() == "cu128"


def test_unknown_cuda_lists_the_supported(capsys):
    assert matrix._main(["target", "11.8"]) == 2
    assert "supported versions are 12.4 12.5 12.6 12.8 12.9 13.0" in capsys.readouterr().err


def test_github_matrix(capsys):
    assert matrix._main(["github-matrix"]) == 0
    include = json.loads(capsys.readouterr().out)["include"]
    assert include[3] == {"cuda": "12.8", "target": "cu128", "image_tag": "base-py3.13-cu128"}


def test_a_row_missing_a_reason_is_rejected(tmp_path):
    data = json.loads(matrix.MATRIX_FILE.read_text())
    del data["variable"]["CUDA_MATRIX"]["default"][0]["why_torch"]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(matrix.MatrixError, match="row 12.4 lacks why_torch"):
        matrix.load(path)


def test_image_info_feeds_the_doctor():
    table = matrix.load()
    facts = matrix.image_info(
        table,
        "12.8",
        {"torch": "2.9.1+cu128", "torch_cuda": "12.8", "torch_arch_flags": ["sm_75", "sm_80", "sm_90", "sm_120"]},
        {"built": False, "reason": "pip wheel failed"},
    )
    image = ImageFacts.from_dict(json.loads(json.dumps(facts)))
    assert image.tag == "base-py3.13-cu128" and image.cuda == "12.8" and image.torch == "2.9.1+cu128"
    assert image.torch_arch == ("sm_75", "sm_80", "sm_90", "sm_120")
    assert image.sage_arch == ("8.0", "8.6", "8.9", "9.0", "10.0", "12.0")
    assert image.sage_built is False and image.sage_reason == "pip wheel failed"
    fallback = matrix.image_info(table, "12.4", {}, {})
    assert fallback["torch_arch"] == ["sm_75", "sm_80", "sm_86", "sm_90"] and fallback["torch"] == "2.6.0"
