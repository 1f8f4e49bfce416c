""".github/workflows: the test job runs the suite; the image matrix comes from the table, builds
without a GPU, smoke-tests each image on the CPU and pushes only on version tags."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from ci import matrix
from ci.smoke import WORKFLOW

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    return YAML(typ="safe").load((WORKFLOWS / name).read_text())  # YAML 1.2: `on` stays a string


def steps(job: dict) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


def test_test_job_runs_make_test():
    data = load("test.yml")
    assert "push" in data["on"] and "pull_request" in data["on"]
    assert ".ci/run" in steps(data["jobs"]["test"])


def test_image_matrix_builds_every_row_and_pushes_on_tags():
    data = load("images.yml")
    assert data["on"]["push"]["tags"] == ["v*"]
    jobs = data["jobs"]
    assert "python3 -m ci.matrix github-matrix" in steps(jobs["matrix"])
    build = jobs["build"]
    assert build["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.include) }}"
    assert build["env"] == {"MAX_JOBS": "2", "FORCE_CUDA": "1"}
    text = steps(build)
    assert "rm -rf /usr/share/dotnet" in text  # disk clean-up
    assert "make build CUDA=${{ matrix.cuda }}" in text and "type=gha" in text  # build cache
    assert 'python3 -m ci.smoke "docker.io/comfypod/comfypod:${{ matrix.image_tag }}"' in text
    push = next(s for s in build["steps"] if s.get("name") == "push")
    assert push["if"] == "startsWith(github.ref, 'refs/tags/v')" and "make push" in push["run"]
    assert len(matrix.github_matrix(matrix.load())["include"]) == 6


def test_smoke_workflow_needs_no_model():
    classes = {node["class_type"] for node in WORKFLOW.values()}
    assert classes == {"EmptyImage", "SaveImage"}
