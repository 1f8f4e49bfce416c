"""ComfyUI workflows, pure code without I/O.

- ``to_api``: the UI format (what people share and ComfyUI saves) to the API format ComfyUI runs,
  exactly as ComfyUI's own frontend converts it (rules in docs/workflows.md).
- ``is_api_format`` / ``is_ui_format`` / ``strip_meta`` / ``as_api``: recognise and clean files.
- ``missing_node_types``: node types ComfyUI lacks, with the custom node pack likely providing each.
- ``parameters`` / ``apply_parameters``: the inputs a user changes before a run (prompt, seed, …).
- ``required_models`` / ``missing_models`` / ``embedded_models``: the model files a workflow loads.

Every function takes ``object_info`` (ComfyUI's ``GET /object_info``) where it needs node types,
and raises ``services.errors.WorkflowError`` (one line, naming the node) for anything broken.
"""

from services.workflow.convert import (
    MissingNodesError,
    MissingNodeType,
    as_api,
    dynamic_prompt,
    is_api_format,
    is_ui_format,
    missing_node_types,
    strip_meta,
    to_api,
)
from services.workflow.models import EmbeddedModel, ModelRef, embedded_models, missing_models, required_models
from services.workflow.params import KINDS, Param, apply_parameters, parameters

__all__ = [
    "KINDS",
    "EmbeddedModel",
    "MissingNodeType",
    "MissingNodesError",
    "ModelRef",
    "Param",
    "apply_parameters",
    "as_api",
    "dynamic_prompt",
    "embedded_models",
    "is_api_format",
    "is_ui_format",
    "missing_models",
    "missing_node_types",
    "parameters",
    "required_models",
    "strip_meta",
    "to_api",
]
