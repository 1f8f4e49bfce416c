"""services/constraints.py: the effective constraints file and pip's refusals in one line."""

from __future__ import annotations

import pytest

from services import constraints

# pip 24-26 output for a conflict with a constraint (recorded from the wheel_index tests)
DIRECT = """\
Looking in indexes: http://127.0.0.1:43177/simple/

The conflict is caused by:
    The user requested cptinyhello==2.0
    The user requested (constraint) cptinyhello==1.0

To fix this you could try to:
1. loosen the range of package versions you've specified
2. remove package versions to allow pip to attempt to solve the dependency conflict

ERROR: Cannot install cptinyhello==2.0 because these package versions have conflicting dependencies.
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""

THROUGH_A_DEPENDENCY = """\
Collecting cpnodedep (from -r /tmp/req.txt (line 1))
  Downloading cpnodedep-0.5-py3-none-any.whl (1.3 kB)

The conflict is caused by:
    cpnodedep 0.5 depends on cptinyhello==2.0
    The user requested (constraint) cptinyhello==1.0

ERROR: Cannot install -r /tmp/req.txt (line 1) because these package versions have conflicting dependencies.
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""

MISSING = """\
ERROR: Could not find a version that satisfies the requirement cpmissing==9 (from versions: none)
ERROR: No matching distribution found for cpmissing==9
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Torch", "torch"), ("comfyui_frontend_package", "comfyui-frontend-package"), ("a.b__c", "a-b-c")],
)
def test_canonical(name, expected):
    assert constraints.canonical(name) == expected


def test_render_generates_pins_for_installed_pinned_packages():
    text = constraints.render_constraints({"torch": "2.7.1+cu128", "numpy": "2.2.6", "pillow": "11.0"}, None)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["torch==2.7.1+cu128", "numpy==2.2.6"]


def test_render_keeps_the_baked_file_and_adds_only_what_it_lacks():
    baked = "torch==2.7.1+cu128 ; sys_platform == 'linux'\ntorchvision==0.22.1+cu128\n"
    text = constraints.render_constraints({"torch": "9.9", "numpy": "2.2.6", "comfyui-frontend-package": "1.2.3"},
                                          baked)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["torch==2.7.1+cu128 ; sys_platform == 'linux'", "torchvision==0.22.1+cu128",
                     "numpy==2.2.6", "comfyui-frontend-package==1.2.3"]


def test_constrained_names_ignores_comments_and_options():
    names = constraints.constrained_names("# c\n-c other.txt\nTorch==1 # pinned\n\nnumpy>=1\n")
    assert names == {"torch": "Torch==1", "numpy": "numpy>=1"}


def test_write_constraints(settings):
    path = constraints.write_constraints(settings, {"numpy": "1.26.4"})
    assert path == constraints.constraints_file(settings)
    assert "numpy==1.26.4" in path.read_text()


@pytest.mark.parametrize(
    ("output", "words"),
    [
        (DIRECT, ["asks for cptinyhello==2.0", "pins cptinyhello==1.0", "constraints"]),
        (THROUGH_A_DEPENDENCY, ["cptinyhello==2.0 (via cpnodedep 0.5)", "pins cptinyhello==1.0"]),
    ],
)
def test_explain_refusal_names_the_request_and_the_constraint(output, words):
    line = constraints.explain_refusal(output, "cptinyhello==1.0\n")
    assert line is not None and "\n" not in line
    for word in words:
        assert word in line


def test_a_missing_package_is_not_a_refusal():
    assert constraints.explain_refusal(MISSING, "torch==2.7.1\n") is None
