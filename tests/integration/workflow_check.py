"""Static checks of saved workflows against node schemas (/object_info entries), and schema comparison.

Used offline by tests/unit/test_workflows.py (our specs + the checked-in core_nodes.json) and online by the
integration tests (live /object_info), so a workflow that passes CI also loads in a real ComfyUI.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .convert import DYNAMIC_COMBO, VIRTUAL, combo_options, is_widget, widget_layout, widget_values

AUTOGROW = "COMFY_AUTOGROW_V3"
CORE_SPEC = Path(__file__).with_name("core_nodes.json")
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
# Option keys that define what a workflow may contain; tooltips, display hints and the like are cosmetic.
MEANINGFUL = ("default", "min", "max", "step", "options", "multiline", "control_after_generate", "forceInput",
              "hidden", "advanced")


def load_core_spec() -> dict[str, dict]:
    return json.loads(CORE_SPEC.read_text())


def is_upload(spec: list) -> bool:
    opts = spec[1] if len(spec) > 1 else {}
    return any(opts.get(flag) for flag in UPLOAD_FLAGS)


# --------------------------------------------------------------------------------------- schema comparison


def normalize_input(spec: list) -> Any:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list) or kind == "COMBO":
        out: dict[str, Any] = {"type": "COMBO"}
        if not is_upload(spec):           # upload combos list the files in the input folder
            out["options"] = combo_options(spec)
        out.update({k: opts[k] for k in MEANINGFUL if k in opts and k != "options"})
        return out
    if kind == DYNAMIC_COMBO:
        return {"type": kind, "options": [{"key": o["key"], "inputs": normalize_inputs(o["inputs"])}
                                          for o in opts["options"]]}
    if kind == AUTOGROW:
        template = opts["template"]
        slot = next(iter(next(iter(template["input"].values())).values()))
        return {"type": kind, "slot": slot[0], "names": template.get("names"), "prefix": template.get("prefix"),
                "min": template.get("min"), "max": template.get("max")}
    return {"type": kind, **{k: opts[k] for k in MEANINGFUL if k in opts}}


def normalize_inputs(inputs: dict) -> dict:
    return {section: {name: normalize_input(spec) for name, spec in inputs.get(section, {}).items()}
            for section in ("required", "optional") if inputs.get(section)}


def normalize_node(info: dict) -> dict:
    order = {k: v for k, v in (info.get("input_order") or {}).items() if k in ("required", "optional") and v}
    return {"input": normalize_inputs(info["input"]), "input_order": order, "output": list(info["output"]),
            "output_name": list(info.get("output_name") or info["output"])}


# --------------------------------------------------------------------------------------- workflow checks


def check_workflow(workflow: dict, object_info: dict[str, dict], input_files: set[str]) -> list[str]:
    """Everything a user would hit when loading and queueing the workflow; returns readable problems."""
    problems: list[str] = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        kind = node["type"]
        where = f"node {node['id']} ({kind})"
        if kind in VIRTUAL:
            continue
        info = object_info.get(kind)
        if info is None:
            problems.append(f"{where}: no such node type")
            continue
        problems.extend(f"{where}: {p}" for p in _check_node(node, info, input_files))
    for link in workflow.get("links", []):
        link_id, origin, origin_slot, target, target_slot, link_type = link[:6]
        src, dst = nodes.get(origin), nodes.get(target)
        if src is None or dst is None:
            problems.append(f"link {link_id}: missing node")
            continue
        if src["type"] in object_info:
            outputs = object_info[src["type"]]["output"]
            if origin_slot >= len(outputs) or outputs[origin_slot] != link_type:
                problems.append(f"link {link_id}: node {origin} output {origin_slot} is not {link_type}")
        if target_slot >= len(dst.get("inputs", [])) or dst["inputs"][target_slot].get("link") != link_id:
            problems.append(f"link {link_id}: node {target} input slot {target_slot} does not hold it")
    return problems


def _check_node(node: dict, info: dict, input_files: set[str]) -> list[str]:
    problems: list[str] = []
    values = widget_values(node, info)
    has_both = isinstance(node.get("widgets_values"), list) and node.get("widgets_values_named") is not None
    if has_both and widget_values(node, info, prefer_named=False) != values:
        problems.append("widgets_values and widgets_values_named disagree")
    chosen = dict(values)
    layout = dict(widget_layout(info["input"], info.get("input_order"), "", chosen))
    layout = {k: v for k, v in layout.items() if v is not None}
    for name, value in values.items():
        spec = layout.get(name)
        if spec is None:
            problems.append(f"widget {name!r} does not exist")
            continue
        problem = _check_value(name, spec, value, input_files)
        if problem:
            problems.append(problem)
    sockets = _sockets(info["input"], "", chosen)
    linked = set()
    for slot in node.get("inputs", []):
        name = slot["name"]
        if name in sockets:
            if slot.get("link") is not None:
                linked.add(name)
                if sockets[name][0] not in (slot.get("type"), "*"):
                    problems.append(f"input {name!r} is {sockets[name][0]}, the saved slot says {slot.get('type')}")
        elif name not in layout:
            problems.append(f"input {name!r} does not exist")
    for name, (kind, required) in sockets.items():
        if required and name not in linked:
            problems.append(f"required input {name!r} ({kind}) is not connected")
    for name, spec in layout.items():
        if _is_required(info["input"], name, chosen) and name not in values and not _linked_widget(node, name):
            problems.append(f"required widget {name!r} has no value")
    return problems


def _check_value(name: str, spec: list, value: Any, input_files: set[str]) -> str | None:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if is_upload(spec):
        return None if value in input_files else f"{name}: file {value!r} is not shipped in workflows/input"
    if isinstance(kind, list) or kind in ("COMBO", DYNAMIC_COMBO):
        options = combo_options(spec)
        return None if value in options else f"{name}: {value!r} is not one of {options}"
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{name}: {value!r} is not an integer"
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{name}: {value!r} is not a number"
    too_low, too_high = "min" in opts and value < opts["min"], "max" in opts and value > opts["max"]
    if kind in ("INT", "FLOAT") and (too_low or too_high):
        return f"{name}: {value} is outside {opts.get('min')}..{opts.get('max')}"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{name}: {value!r} is not true/false"
    if kind == "STRING" and not isinstance(value, str):
        return f"{name}: {value!r} is not text"
    return None


def _sockets(inputs: dict, prefix: str, chosen: dict) -> dict[str, tuple[str, bool]]:
    """Socket inputs (name -> (type, required)), including autogrow slots and those of chosen dynamic options."""
    out: dict[str, tuple[str, bool]] = {}
    for section in ("required", "optional"):
        for name, spec in inputs.get(section, {}).items():
            full = prefix + name
            if spec[0] == AUTOGROW:
                template = spec[1]["template"]
                slot_type = next(iter(next(iter(template["input"].values())).values()))[0]
                names = template.get("names") or [f"{template['prefix']}{i}" for i in range(template["max"])]
                for i, slot in enumerate(names):
                    out[f"{full}.{slot}"] = (slot_type, section == "required" and i < template.get("min", 0))
            elif spec[0] == DYNAMIC_COMBO:
                option = next((o for o in spec[1]["options"] if o["key"] == chosen.get(full)), None)
                if option is not None:
                    out.update(_sockets(option["inputs"], full + ".", chosen))
            elif not is_widget(spec):
                out[full] = (spec[0], section == "required")
    return out


def _is_required(inputs: dict, name: str, chosen: dict) -> bool:
    parts = name.split(".")
    current, prefix = inputs, ""
    for i, part in enumerate(parts):
        section = "required" if part in current.get("required", {}) else "optional"
        spec = current.get(section, {}).get(part)
        if spec is None or section == "optional":
            return False
        if i < len(parts) - 1:
            prefix = ".".join(parts[:i + 1])
            option = next((o for o in spec[1].get("options", []) if o["key"] == chosen.get(prefix)), None)
            if option is None:
                return False
            current = option["inputs"]
    return True


def _linked_widget(node: dict, name: str) -> bool:
    return any(s.get("name") == name and s.get("link") is not None for s in node.get("inputs", []))
