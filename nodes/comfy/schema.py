"""specs.NodeSpec -> ComfyUI V3 io.Schema. The only translation layer between the table and comfy_api."""
from __future__ import annotations

from comfy_api.latest import io

from .specs import CATEGORY, SEARCH_ALIASES, Field, NodeSpec, Output, hidden_inputs

_SOCKETS = {"IMAGE": io.Image, "VIDEO": io.Video, "AUDIO": io.Audio}
_OUTPUTS = {"VIDEO": io.Video, "IMAGE": io.Image, "AUDIO": io.Audio, "STRING": io.String, "FLOAT": io.Float}


def to_input(f: Field) -> io.Input:
    common = {"optional": f.is_optional, "tooltip": f.tooltip or None}
    widget = {**common, "advanced": f.advanced or None}
    if f.kind == "STRING":
        return io.String.Input(f.id, default=f.default, multiline=f.multiline, **widget)
    if f.kind == "INT":
        return io.Int.Input(f.id, default=f.default, min=f.min, max=f.max, step=f.step,
                            display_mode=io.NumberDisplay.number,
                            control_after_generate=True if f.control_after_generate else None, **widget)
    if f.kind == "FLOAT":
        return io.Float.Input(f.id, default=f.default, min=f.min, max=f.max, step=f.step, **widget)
    if f.kind == "BOOLEAN":
        return io.Boolean.Input(f.id, default=f.default, **widget)
    if f.kind == "COMBO":
        return io.Combo.Input(f.id, options=list(f.options), default=f.default, **widget)
    if f.kind in _SOCKETS:
        return _SOCKETS[f.kind].Input(f.id, **common)
    if f.kind == "DYNAMIC":
        options = [io.DynamicCombo.Option(c.key, [to_input(x) for x in c.fields]) for c in f.choices]
        return io.DynamicCombo.Input(f.id, options=options, **common)
    if f.kind == "AUTOGROW":
        template = io.Autogrow.TemplateNames(_SOCKETS[f.slot_kind].Input("image"), names=list(f.slot_names), min=0)
        return io.Autogrow.Input(f.id, template=template, **common)
    raise ValueError(f"no ComfyUI input for field kind {f.kind!r}")


def to_output(o: Output) -> io.Output:
    return _OUTPUTS[o.kind].Output(o.id, display_name=o.id, tooltip=o.tooltip or None)


def build_schema(spec: NodeSpec) -> io.Schema:
    return io.Schema(
        node_id=spec.node_id,
        display_name=spec.display_name,
        category=CATEGORY,
        description=spec.description,
        inputs=[to_input(f) for f in spec.fields],
        outputs=[to_output(o) for o in spec.outputs],
        hidden=[io.Hidden[name] for name in hidden_inputs(spec)],
        is_output_node=spec.is_output_node,
        search_aliases=list(SEARCH_ALIASES),
    )
