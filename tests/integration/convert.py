"""Saved UI workflow (what the ComfyUI frontend writes) -> API prompt (what POST /prompt takes).

ComfyUI has no server-side converter; the frontend walks its live widgets. This replays that walk on the
saved JSON with /object_info as the schema: widget values are matched to inputs by name when the workflow
carries `widgets_values_named`, else by position (input_order, dynamic combos expanded in place, one extra
slot after control_after_generate widgets). Links override widget values. Notes and reroutes are skipped,
muted nodes dropped, bypassed nodes passed through.
"""
from __future__ import annotations

from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
FRONTEND_ONLY = {"control_after_generate", "control_filter_list", "upload", "audioUI"}
VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MUTED, BYPASSED = 2, 4


class ConversionError(ValueError):
    pass


def is_widget(spec: list) -> bool:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if opts.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES or kind == DYNAMIC_COMBO


def has_control_slot(name: str, spec: list) -> bool:
    """The frontend adds a 'fixed/randomize/...' value after such widgets; it is never sent to the API."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    flag = opts.get("control_after_generate")
    if kind == "INT":
        return bool(flag) if flag is not None else name in ("seed", "noise_seed")
    return bool(flag) and (kind == "COMBO" or isinstance(kind, list))


def widget_layout(inputs: dict, order: dict | None = None, prefix: str = "",
                  chosen: dict[str, Any] | None = None) -> list[tuple[str, list]]:
    """The widgets of a node in the order the frontend lists them, as (api name, spec).

    `chosen` gives dynamic combo selections by api name (needed to know which nested widgets exist).
    A (name, None) entry marks the control value slot.
    """
    out: list[tuple[str, list]] = []
    for section in ("required", "optional"):
        names = (order or {}).get(section) or list(inputs.get(section, {}))
        for name in names:
            spec = inputs.get(section, {}).get(name)
            if spec is None or not is_widget(spec):
                continue
            full = prefix + name
            out.append((full, spec))
            if has_control_slot(name, spec):
                out.append((full + "#control", None))
            if spec[0] == DYNAMIC_COMBO:
                key = (chosen or {}).get(full)
                option = next((o for o in spec[1]["options"] if o["key"] == key), None)
                if option is not None:
                    out.extend(widget_layout(option["inputs"], None, full + ".", chosen))
    return out


def combo_options(spec: list) -> list:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list):
        return kind
    if kind == DYNAMIC_COMBO:
        return [o["key"] for o in opts["options"]]
    return list(opts.get("options", []))


def widget_values(node: dict, info: dict, prefer_named: bool = True) -> dict[str, Any]:
    """API name -> value for every widget of one saved node."""
    inputs, order = info["input"], info.get("input_order")
    named = node.get("widgets_values_named")
    raw = node.get("widgets_values")
    if isinstance(raw, dict):
        named, raw = raw, None
    if named is not None and (prefer_named or raw is None):
        return {k: v for k, v in named.items() if k not in FRONTEND_ONLY}
    values = list(raw or [])
    chosen: dict[str, Any] = {}
    # Dynamic combos decide which widgets follow, so walk and read at the same time.
    result: dict[str, Any] = {}
    position = 0
    while True:
        layout = widget_layout(inputs, order, "", chosen)
        if position >= len(layout) or position >= len(values):
            break
        name, spec = layout[position]
        value = values[position]
        position += 1
        if spec is None:
            continue
        result[name] = value
        if spec[0] == DYNAMIC_COMBO:
            chosen[name] = value
    return result


def convert(workflow: dict, object_info: dict[str, dict], prefer_named: bool = True) -> dict[str, dict]:
    if workflow.get("definitions", {}).get("subgraphs"):
        raise ConversionError("subgraphs are not supported by this converter")
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt: dict[str, dict] = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in VIRTUAL or node.get("mode") in (MUTED, BYPASSED):
            continue
        if kind not in object_info:
            raise ConversionError(f"node {node['id']}: type {kind} is not installed")
        values = widget_values(node, object_info[kind], prefer_named)
        for slot in node.get("inputs", []):
            if slot.get("link") is None:
                continue
            source = _resolve_source(links[slot["link"]], nodes, links)
            if source is not None:
                values[slot["name"]] = source
        api_inputs = {k: ({"__value__": v} if isinstance(v, list) and not _is_link(v) else v)
                      for k, v in values.items()}
        prompt[str(node["id"])] = {"class_type": kind, "inputs": api_inputs,
                                   "_meta": {"title": node.get("title") or object_info[kind].get("display_name", kind)}}
    return prompt


def _is_link(value: list) -> bool:
    return len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _resolve_source(link: list, nodes: dict, links: dict) -> list | None:
    """[origin id, slot], following reroutes and bypassed nodes upstream; None if it leads nowhere."""
    _, origin_id, origin_slot, _, _, link_type = link[:6]
    origin = nodes[origin_id]
    if origin["type"] in VIRTUAL - {"Reroute"}:
        raise ConversionError(f"node {origin_id}: links from {origin['type']} are not supported")
    if origin["type"] == "Reroute" or origin.get("mode") == BYPASSED:
        for slot in origin.get("inputs", []):
            if slot.get("link") is not None and (origin["type"] == "Reroute" or slot.get("type") == link_type):
                return _resolve_source(links[slot["link"]], nodes, links)
        return None
    if origin.get("mode") == MUTED:
        return None
    return [str(origin_id), origin_slot]
