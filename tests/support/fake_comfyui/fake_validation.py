"""POST /prompt validation of the fake ComfyUI, with the error shapes the real server returns.

Written from the recorded responses in shared/reference/comfyui-api/prompt-responses.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fake_models import INPUT_FILE_NODES, combo_options

TRACEBACK = ['  File "/opt/ComfyUI/execution.py", line 0, in validate_inputs\n    <fake>\n']


class PromptRejected(Exception):
    """A 400 answer: ``body`` is the JSON the server sends."""

    def __init__(self, body: dict) -> None:
        super().__init__(body["error"]["message"])
        self.body = body


def _error(kind: str, message: str, details: str = "", extra: dict | None = None) -> dict:
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def _reject(kind: str, message: str, details: str = "", node_errors: dict | None = None) -> PromptRejected:
    return PromptRejected({"error": _error(kind, message, details), "node_errors": node_errors or {}})


@dataclass
class Result:
    ok: bool
    errors: list[dict] = field(default_factory=list)


def _input_type(config: list) -> str:
    if combo_options(config) is not None:
        return "COMBO"
    return str(config[0])


def _types_match(received: str, wanted: str) -> bool:
    if received == wanted or "*" in (received, wanted):
        return True
    got = {t.strip() for t in str(received).split(",")}
    want = {t.strip() for t in str(wanted).split(",")}
    return bool(got & want) and (got <= want or want <= got)


class Validator:
    def __init__(self, prompt: dict, object_info: dict, file_exists: Callable[[str], bool]) -> None:
        self.prompt = prompt
        self.info = object_info
        self.file_exists = file_exists
        self.validated: dict[str, Result] = {}

    def inputs_of(self, node_id: str) -> tuple[dict, dict]:
        spec = self.info[self.prompt[node_id]["class_type"]]["input"]
        return spec.get("required", {}), spec.get("optional", {})

    def validate(self, node_id: str) -> Result:
        if node_id in self.validated:
            return self.validated[node_id]
        node = self.prompt[node_id]
        class_type = node["class_type"]
        inputs = node.get("inputs") or {}
        required, optional = self.inputs_of(node_id)
        errors: list[dict] = []
        ok = True
        for name, config in [*required.items(), *optional.items()]:
            if name not in inputs:
                if name in required:
                    errors.append(_error("required_input_missing", "Required input is missing", name,
                                         {"input_name": name}))
                    ok = False
                continue
            value = inputs[name]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(_error("bad_linked_input",
                                         "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                         name, {"input_name": name, "input_config": config, "received_value": value}))
                    ok = False
                    continue
                source_id, slot = str(value[0]), value[1]
                source = self.prompt[source_id]  # KeyError is reported by the caller, as ComfyUI does
                outputs = tuple(self.info[source["class_type"]]["output"])
                received = outputs[slot]  # IndexError ends validation of the whole output
                wanted = _input_type(config)
                if not _types_match(received, wanted):
                    errors.append(_error(
                        "return_type_mismatch", "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({wanted})",
                        {"input_name": name, "input_config": config, "received_type": received, "linked_node": value}))
                    ok = False
                    continue
                try:
                    upstream = self.validate(source_id)
                except (KeyError, IndexError, TypeError) as err:
                    self.validated[source_id] = Result(False, [_error(
                        "exception_during_inner_validation", "Exception when validating inner node", str(err),
                        {"input_name": name, "input_config": config, "exception_message": str(err),
                         "exception_type": type(err).__name__, "traceback": TRACEBACK, "linked_node": value})])
                    ok = False
                    continue
                if not upstream.ok:
                    ok = False
                continue
            error = self._check_value(class_type, name, config, value)
            if error:
                errors.append(error)
                ok = False
        result = Result(ok and not errors, errors)
        self.validated[node_id] = result
        return result

    def _check_value(self, class_type: str, name: str, config: list, value) -> dict | None:
        kind = _input_type(config)
        options = config[1] if len(config) > 1 and isinstance(config[1], dict) else {}
        converters = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
        if kind in converters:
            try:
                value = converters[kind](value)
            except (TypeError, ValueError) as err:
                return _error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                              f"{name}, {value}, {err}",
                              {"input_name": name, "input_config": config, "received_value": value,
                               "exception_message": str(err)})
            if kind in ("INT", "FLOAT"):
                if "min" in options and value < options["min"]:
                    return _error("value_smaller_than_min", f"Value {value} smaller than min of {options['min']}", name,
                                  {"input_name": name, "input_config": config, "received_value": value})
                if "max" in options and value > options["max"]:
                    return _error("value_bigger_than_max", f"Value {value} bigger than max of {options['max']}", name,
                                  {"input_name": name, "input_config": config, "received_value": value})
            return None
        if (class_type, name) in INPUT_FILE_NODES:
            if not isinstance(value, str) or not self.file_exists(value):
                return _error("custom_validation_failed", "Custom validation failed for node",
                              f"{name} - Invalid image file: {value}", {"input_name": name})
            return None
        choices = combo_options(config)
        if choices is not None and value not in choices:
            if len(choices) > 20:
                listed, shown = f"(list of length {len(choices)})", None
            else:
                listed, shown = repr(choices), [config[0], config[1] if len(config) > 1 else {}]
            return _error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}",
                          {"input_name": name, "input_config": shown, "received_value": value})
        return None


def validate_prompt(prompt, object_info: dict, file_exists: Callable[[str], bool]) -> tuple[list[str], dict]:
    """Return (outputs to execute, node_errors) or raise PromptRejected with the 400 body."""
    if not isinstance(prompt, dict):
        raise _reject("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                      "Node ID '#'")
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise _reject("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                          f"Node ID '#{node_id}'")
        if node["class_type"] not in object_info:
            raise _reject("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.",
                          f"Node ID '#{node_id}'")
    outputs = [nid for nid, node in prompt.items() if object_info[node["class_type"]].get("output_node")]
    if not outputs:
        raise _reject("prompt_no_outputs", "Prompt has no outputs")
    validator = Validator(prompt, object_info, file_exists)
    good: list[str] = []
    failed: list[tuple[str, list[dict]]] = []
    for output in outputs:
        try:
            result = validator.validate(output)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            result = Result(False, [_error("exception_during_validation", "Exception when validating node", str(err),
                                           {"exception_type": type(err).__name__, "traceback": TRACEBACK})])
            validator.validated[output] = result
        if result.ok:
            good.append(output)
        else:
            failed.append((output, result.errors))
    node_errors: dict[str, dict] = {}
    for output, _errors in failed:
        for node_id, result in validator.validated.items():
            if result.ok or not result.errors:
                continue
            entry = node_errors.setdefault(node_id, {
                "errors": result.errors, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]})
            entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _o, errors in failed for e in errors)
        raise _reject("prompt_outputs_failed_validation", "Prompt outputs failed validation", details, node_errors)
    return good, node_errors
