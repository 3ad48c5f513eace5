"""Host-neutral description of every node's inputs and outputs, derived from the provider registry.

define_schema (schema.py) turns these into ComfyUI V3 inputs; tests render them as /object_info entries to
check the example workflows without a ComfyUI install. Nothing here imports comfy_api, torch or the server.

Choices that depend on the provider and the model version are nested: provider -> version -> resolution,
aspect ratio, duration. Each level only offers what that provider's capability table accepts for the node's
mode, so the UI cannot build a combination the provider would refuse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.capabilities import FIT_CHOICES, RATIOS_11, VersionCaps
from ..engine.promptcheck import token_for
from ..engine.request import MODE_TITLES
from ..engine.routing import AUTO as AUTO_PROVIDER
from ..engine.routing import NOT_ROUTED
from ..engine.uploads import AUTO, DATA_URI, PROVIDER_STORE, S3
from ..engine.validation import SEED_MAX
from ..providers.registry import ADAPTERS

CATEGORY = "HappyHorse"
ID_PREFIX = "HappyHorsePack."
SIMULATOR = "simulator"
SEARCH_ALIASES = ("happyhorse", "happy horse", "alibaba video", "dashscope")
# The folder name ComfyUI finds the pack under in custom_nodes/ (the registry's name); it lists our nodes'
# python_module as custom_nodes.<folder>.
PACK_FOLDER = "comfyui-happyhorse"

# IMAGE frames are float32; this is the default ceiling for the frames output (see frame_fields).
FRAMES_MAX_MB_DEFAULT = 2048
R2V_SLOTS = 9
EDIT_SLOTS = 5


@dataclass(frozen=True)
class Choice:
    """One option of a dynamic combo and the inputs it brings with it."""

    key: str
    fields: tuple[Field, ...] = ()


@dataclass(frozen=True)
class Field:
    """One input. kind: STRING INT FLOAT BOOLEAN COMBO (widgets), IMAGE VIDEO (sockets), DYNAMIC, AUTOGROW."""

    kind: str
    id: str
    tooltip: str = ""
    default: Any = None
    options: tuple = ()
    min: float | None = None
    max: float | None = None
    step: float | None = None
    multiline: bool = False
    optional: bool = False
    advanced: bool = False
    control_after_generate: bool = False
    choices: tuple[Choice, ...] = ()        # DYNAMIC
    slot_names: tuple[str, ...] = ()        # AUTOGROW (image sockets)
    slot_kind: str = "IMAGE"                # AUTOGROW

    @property
    def is_optional(self) -> bool:
        # Advanced widgets are optional inputs (with defaults), so API prompts written before an advanced
        # option existed keep validating.
        return self.optional or self.advanced


@dataclass(frozen=True)
class Output:
    kind: str
    id: str
    tooltip: str = ""


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    display_name: str
    description: str
    fields: tuple[Field, ...]
    outputs: tuple[Output, ...]
    is_output_node: bool = False
    mode: str | None = None           # the generation mode, None for CostEstimate / CollectJob


# --------------------------------------------------------------------------------------- the registry


def providers_for(mode: str) -> list[str]:
    """Providers that offer this mode on some version, the simulator first (the free default)."""
    names = [n for n, a in ADAPTERS.items() if any(mode in v.modes for v in a.caps.versions.values())]
    return sorted(names, key=lambda n: n != SIMULATOR)


def all_providers() -> list[str]:
    return sorted(ADAPTERS, key=lambda n: n != SIMULATOR)


def routed_caps(mode: str, version: str | None = None) -> list:
    """Capabilities of the hosts provider auto chooses among (not the simulator) that offer the mode."""
    return [a.caps for n, a in ADAPTERS.items() if n not in NOT_ROUTED
            and any(mode in vc.modes for v, vc in a.caps.versions.items() if version in (None, v))]


def versions_for(provider: str, mode: str) -> list[str]:
    """Versions of this provider (or, for auto, of any host auto may choose) that offer the mode, newest first."""
    if provider == AUTO_PROVIDER:
        found = {v for c in routed_caps(mode) for v, vc in c.versions.items() if mode in vc.modes}
        return sorted(found, key=_version_key, reverse=True)
    caps = ADAPTERS[provider].caps
    return sorted((v for v, vc in caps.versions.items() if mode in vc.modes), key=_version_key, reverse=True)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


# --------------------------------------------------------------------------------------- field builders


# The edit ratio's default: nothing is sent and the output keeps the source video's shape.
KEEP_SOURCE = "keep source"


def version_fields(provider: str, version: str, mode: str) -> tuple[Field, ...]:
    vc = _auto_version_caps(version, mode) if provider == AUTO_PROVIDER else ADAPTERS[provider].caps.versions[version]
    fields = [Field("COMBO", "resolution", "Output resolution.", options=tuple(vc.resolutions),
                    default="720p" if "720p" in vc.resolutions else vc.resolutions[0])]
    if mode in ("t2v", "r2v"):
        fields.append(Field("COMBO", "aspect_ratio", "Frame shape of the video.", options=tuple(vc.aspect_ratios),
                            default="16:9" if "16:9" in vc.aspect_ratios else vc.aspect_ratios[0]))
    elif mode == "edit" and vc.edit_ratio:
        fields.append(Field("COMBO", "aspect_ratio", "Frame shape of the edited video; 'keep source' sends nothing "
                                                     "and keeps the source video's shape.",
                            options=(KEEP_SOURCE, *vc.aspect_ratios), default=KEEP_SOURCE,
                            optional=True))     # prompts and workflows saved before it existed keep working
    if mode != "edit":
        fields.append(Field("INT", "duration", "Length of the video in seconds (billed per second).",
                            default=min(max(5, vc.min_duration_s), vc.max_duration_s),
                            min=vc.min_duration_s, max=vc.max_duration_s, step=1))
    return tuple(fields)


def _auto_version_caps(version: str, mode: str) -> VersionCaps:
    """For auto: every value some host offers on this version (the ranking then keeps the hosts that take it)."""
    vcs = [c.versions[version] for c in routed_caps(mode, version) if mode in c.versions[version].modes]
    resolutions = [r for r in ("720p", "1080p") if any(r in vc.resolutions for vc in vcs)]
    ratios = [r for r in RATIOS_11 if any(r in vc.aspect_ratios for vc in vcs)]
    return VersionCaps(modes=(mode,), aspect_ratios=tuple(ratios), resolutions=tuple(resolutions),
                       min_duration_s=min(vc.min_duration_s for vc in vcs),
                       max_duration_s=max(vc.max_duration_s for vc in vcs))


def upload_field(provider: str) -> Field:
    """Only the ways this host can receive files: no data URIs where it refuses them, no store it lacks."""
    if provider == AUTO_PROVIDER:                 # per host at run time; your bucket works for every host
        options = [AUTO, S3]
    else:
        caps = ADAPTERS[provider].caps
        options = [AUTO, *([DATA_URI] if caps.accepts_data_uri else []),
                   *([PROVIDER_STORE] if caps.has_temp_store else []), S3]
    return Field("COMBO", "upload", "How input images and videos reach the provider. auto: inline when small "
                                    "and accepted, else the provider's own store, else your S3 bucket.",
                 options=tuple(options), default=AUTO, advanced=True)


def provider_field(mode: str, with_upload: bool = False) -> Field:
    choices = []
    names = providers_for(mode)
    names.insert(1, AUTO_PROVIDER)      # after the free simulator (the default), before the hosts
    for name in names:
        versions = tuple(Choice(v, version_fields(name, v, mode)) for v in versions_for(name, mode))
        version = Field("DYNAMIC", "version", "HappyHorse model version (only those this provider offers for "
                                              f"{MODE_TITLES[mode]}).", choices=versions)
        choices.append(Choice(name, (version, upload_field(name)) if with_upload else (version,)))
    return Field("DYNAMIC", "provider",
                 "Who runs the job. 'simulator' is free and local; 'auto' picks the cheapest host you have a key "
                 "for that takes this request (ties: [routing] prefer in the config) and fails over to the next "
                 "if that host refuses the job before taking it; the others need their API key in an "
                 "environment variable or the HappyHorse config file (never in the workflow).",
                 choices=tuple(choices))


def reference_styles() -> str:
    """Which hosts document which way of naming references in the prompt (from the capability table)."""
    by_style: dict[str, list[str]] = {}
    for name in all_providers():
        style = ADAPTERS[name].caps.reference_token_style
        if style is not None:
            by_style.setdefault(token_for(style, 1) + ", " + token_for(style, 2) + ", ...", []).append(name)
    return "; ".join(f"{tokens} on {', '.join(names)}" for tokens, names in by_style.items())


def prompt_field(mode: str) -> Field:
    if mode in ("r2v", "edit"):
        tip = (f"What the video shows. Name the reference images in the order given, as the host documents: "
               f"{reference_styles()} (other hosts: either; both styles are recognised). Naming a reference "
               f"that is not connected is refused before sending.")
    elif mode == "i2v":
        tip = "Optional: how the picture should move."
    else:
        tip = "What the video shows."
    return Field("STRING", "prompt", tip, default="", multiline=True)


SEED = Field("INT", "seed", "Same seed + same settings = same video (where the provider honours seeds).",
             default=0, min=0, max=SEED_MAX, step=1, control_after_generate=True)
WATERMARK = Field("BOOLEAN", "watermark", "Ask the provider to add its AI-generated watermark.", default=False,
                  advanced=True)
FORCE_NEW = Field("BOOLEAN", "force_new", "Always submit a new paid job. Off: an identical earlier request "
                                         "reuses its finished video, or re-attaches to the job still running, so "
                                         "nothing is paid twice.", default=False, advanced=True)
MAX_USD = Field("FLOAT", "max_usd", "Refuse the job, before anything is sent, when its estimate is above this many "
                                   "USD (also when the price is unknown). 0 = no limit. Daily / monthly budgets: "
                                   "[budget] in the HappyHorse config file.",
                default=0.0, min=0.0, max=10000.0, step=0.01, advanced=True)
TIMEOUT = Field("INT", "timeout_s", "Give up waiting after this much running time (queueing does not count). "
                                    "The job is not cancelled; collect it later with Collect Job.",
                default=1800, min=60, max=24 * 3600, step=60, advanced=True)


FIT = Field("COMBO", "fit_inputs", "Inputs that break the provider's limits. off: refused, saying why. crop / pad: "
                                  "repaired - small images upscaled, a refused shape cropped to its centre (or "
                                  "padded with black bars), images and videos re-encoded to meet format, size, "
                                  "frame-rate, length and byte limits. Inputs within the limits are never touched; "
                                  "every change is shown.", options=FIT_CHOICES, default="off", advanced=True)


def frame_fields() -> tuple[Field, ...]:
    return (
        Field("INT", "max_frames", "Frames output: at most this many frames, spread evenly over the clip "
                                   "(0 = no count limit).", default=0, min=0, max=100000, step=1, advanced=True),
        Field("INT", "frame_step", "Frames output: keep every Nth frame.", default=1, min=1, max=1000, step=1,
              advanced=True),
        Field("INT", "max_side", "Frames output: scale down so the longer side is at most this (0 = full size).",
              default=0, min=0, max=8192, step=2, advanced=True),
        Field("INT", "frames_max_mb", "Frames output: memory ceiling in MB for the float32 frames. Longer or "
                                      "bigger clips come out with fewer frames, spread evenly, first and last "
                                      "kept. The VIDEO output always has every frame.",
              default=FRAMES_MAX_MB_DEFAULT, min=16, max=262144, step=64, advanced=True),
    )


def reference_slots(count: int, tooltip: str) -> Field:
    return Field("AUTOGROW", "references", tooltip, optional=True,
                 slot_names=tuple(f"image{i}" for i in range(1, count + 1)))


RESULT_OUTPUTS = (
    Output("VIDEO", "video", "The generated video (plays in Save Video / Preview; keeps its audio)."),
    Output("IMAGE", "frames", "Decoded frames, bounded by the frames_max_mb setting."),
    Output("AUDIO", "audio", "The video's own soundtrack (silence if it has none)."),
    Output("STRING", "file_path", "Where the MP4 was saved (ComfyUI output folder, happyhorse/)."),
    Output("STRING", "task_id", "The provider's task id (also kept in the job ledger)."),
    Output("FLOAT", "cost_usd", "What this job cost in USD (0 on the simulator, -1 if the host does not say)."),
)

FRAMES_NOTE = (f" Frames output defaults to at most {FRAMES_MAX_MB_DEFAULT} MB of float32 (a 5 s 720p clip fits "
               "whole; a 15 s 1080p clip, ~9 GB, comes out as 86 of its 360 frames); see the advanced frame options.")


# --------------------------------------------------------------------------------------- the nodes


def _generation(mode: str, name: str, display: str, summary: str, media: tuple[Field, ...],
                extra: tuple[Field, ...] = ()) -> NodeSpec:
    # fit_inputs and max_usd come last: workflows saved before they existed keep every widget value in its place.
    fields = (prompt_field(mode), *media, provider_field(mode, with_upload=mode != "t2v"), *extra, SEED,
              WATERMARK, FORCE_NEW, TIMEOUT, *frame_fields(), *((FIT,) if media else ()), MAX_USD)
    return NodeSpec(ID_PREFIX + name, display, summary + FRAMES_NOTE, fields, RESULT_OUTPUTS, mode=mode)


def text2video() -> NodeSpec:
    return _generation("t2v", "Text2Video", "HappyHorse Text to Video",
                       "Makes a video from a prompt with HappyHorse through the chosen provider.", ())


def image2video() -> NodeSpec:
    first = Field("IMAGE", "first_frame", "The first frame of the video (one image; at least 300 px a side).")
    return _generation("i2v", "Image2Video", "HappyHorse Image to Video",
                       "Animates an image: it becomes the first frame; the video keeps its aspect ratio.",
                       (first,))


def reference2video() -> NodeSpec:
    batch = Field("IMAGE", "images", "Reference images as one batch; they come first: reference 1, 2, ... "
                                     "([Image 1] or character1, ... in the prompt)",
                  optional=True)
    slots = reference_slots(R2V_SLOTS, "More reference images, one per socket, numbered after the batch.")
    return _generation("r2v", "Reference2Video", "HappyHorse Reference to Video",
                       "Makes a video featuring 1-9 reference images (subjects, scenes). The batch input comes "
                       "first, then image1, image2, ...; the prompt calls them [Image 1], [Image 2], ... or "
                       "character1, character2, ... (DashScope's style); a reference the prompt never names gets a "
                       "warning.",
                       (batch, slots))


def video_edit() -> NodeSpec:
    media = (
        Field("VIDEO", "video", "The video to edit (3-60 s; only the first 15 s are used).", optional=True),
        Field("IMAGE", "source_frames", "Or the video as frames (used when no video is connected).", optional=True),
        Field("FLOAT", "source_fps", "Frame rate of source_frames.", default=24.0, min=9.0, max=120.0, step=0.01,
              optional=True),
        reference_slots(EDIT_SLOTS, "Up to 5 reference images: [Image 1], [Image 2], ... (or character1, "
                                    "character2, ...) in the prompt"),
    )
    audio = Field("COMBO", "audio_setting", "auto: the model makes new sound; origin: keep the source audio.",
                  options=("auto", "origin"), default="auto")
    return _generation("edit", "VideoEdit", "HappyHorse Video Edit",
                       "Edits a video following the prompt (restyle, replace, add); output length follows the "
                       "source (at most 15 s), billed on input + output seconds.", media, (audio,))


def cost_estimate() -> NodeSpec:
    choices = []
    for mode in ("t2v", "i2v", "r2v", "edit"):
        extra: tuple[Field, ...] = ()
        if mode == "edit":
            extra = (Field("FLOAT", "source_seconds", "Length of the video to edit (billing uses at most 15 s). "
                                                      "A connected source_video overrides it.",
                           default=5.0, min=3.0, max=60.0, step=0.1),)
        choices.append(Choice(mode, (provider_field(mode), *extra)))
    fields = (
        Field("DYNAMIC", "mode", "What kind of job to price.", choices=tuple(choices)),
        Field("VIDEO", "source_video", "Video edit: the source video, to price on its real length.", optional=True),
    )
    outputs = (Output("FLOAT", "usd", "Estimated price in USD (-1 when the host publishes no USD rate)."),
               Output("STRING", "breakdown", "How the price is made up."))
    return NodeSpec(ID_PREFIX + "CostEstimate", "HappyHorse Cost Estimate",
                    "Prices a HappyHorse job on any provider from the rate tables, without running or sending "
                    "anything. Uses the same rules as the generation nodes.", fields, outputs, is_output_node=True)


def collect_job() -> NodeSpec:
    fields = (
        Field("COMBO", "provider", "Where the job runs.", options=tuple(all_providers()), default=SIMULATOR),
        Field("STRING", "task_id", "The provider's task id (from a generation node, the ledger or the CLI)."),
        TIMEOUT,
        *frame_fields(),
    )
    return NodeSpec(ID_PREFIX + "CollectJob", "HappyHorse Collect Job",
                    "Waits for and downloads a job that was already submitted - after a crash, a timeout, or a "
                    "job started elsewhere - without paying again." + FRAMES_NOTE, fields, RESULT_OUTPUTS)


def hidden_inputs(spec: NodeSpec) -> tuple[str, ...]:
    """What ComfyUI passes the node besides its inputs (io.Hidden names). DYNPROMPT tells a result node which
    of its outputs are linked, so it decodes only those (wiring.py)."""
    return ("unique_id", *(("dynprompt",) if spec.outputs == RESULT_OUTPUTS else ()))


def node_specs() -> list[NodeSpec]:
    return [text2video(), image2video(), reference2video(), video_edit(), cost_estimate(), collect_job()]


# --------------------------------------------------------------------------------------- inputs as executed


def with_defaults(fields: tuple[Field, ...], values: dict[str, Any]) -> dict[str, Any]:
    """The values a node executes with, every widget left out of the prompt set to its default.

    API-format prompts (and workflows saved before an input existed) omit optional inputs. ComfyUI then leaves
    a top-level one out of execute()'s arguments, but hands one inside a dynamic combo over as None.
    """
    out = dict(values)
    for f in fields:
        value = out.get(f.id)
        if f.kind == "DYNAMIC":
            chosen = next((c for c in f.choices if isinstance(value, dict) and c.key == value.get(f.id)), None)
            if chosen is not None:
                out[f.id] = with_defaults(chosen.fields, value)
        elif value is None and f.default is not None:
            out[f.id] = f.default
    return out


# --------------------------------------------------------------------------------------- /object_info shape


def object_info(spec: NodeSpec) -> dict[str, Any]:
    """Render a spec exactly as ComfyUI 0.33's /object_info lists the V3 node schema.py builds from it.

    tests/integration/golden_object_info.json freezes this; the integration tests check that a live ComfyUI
    reports exactly the same, so this rendering cannot drift from what users' ComfyUI shows.
    """
    required, optional = _inputs_dict(spec.fields)
    # ComfyUI adds prompt and extra_pnginfo to the hidden inputs of every output node.
    hidden = [*hidden_inputs(spec), *(["prompt", "extra_pnginfo"] if spec.is_output_node else [])]
    inputs = {"required": required, **({"optional": optional} if optional else {}),
              "hidden": {name: [name.upper()] for name in hidden}}
    return {
        "input": inputs,
        "input_order": {section: list(names) for section, names in inputs.items()},
        "is_input_list": False,
        "output": [o.kind for o in spec.outputs],
        "output_is_list": [False for _ in spec.outputs],
        "output_name": [o.id for o in spec.outputs],
        "output_tooltips": [o.tooltip or None for o in spec.outputs],
        "output_matchtypes": None,
        "name": spec.node_id,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": f"custom_nodes.{PACK_FOLDER}",
        "category": CATEGORY,
        "output_node": spec.is_output_node,
        "deprecated": False,
        "experimental": False,
        "dev_only": False,
        "api_node": False,
        "price_badge": None,
        "search_aliases": list(SEARCH_ALIASES),
        "essentials_category": None,
        "has_intermediate_output": False,
    }


def _inputs_dict(fields: tuple[Field, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    for f in fields:
        (optional if f.is_optional else required)[f.id] = _input_entry(f)
    return required, optional


def _input_entry(f: Field) -> list:
    opts: dict[str, Any] = {}
    if f.tooltip:
        opts["tooltip"] = f.tooltip
    if f.kind == "DYNAMIC":
        options = []
        for c in f.choices:
            req, opt = _inputs_dict(c.fields)
            options.append({"key": c.key, "inputs": {"required": req, **({"optional": opt} if opt else {})}})
        return ["COMFY_DYNAMICCOMBO_V3", {**opts, "options": options}]
    if f.kind == "AUTOGROW":
        template = {"input": {"required": {"image": [f.slot_kind, {}]}}, "names": list(f.slot_names), "min": 0}
        return ["COMFY_AUTOGROW_V3", {**opts, "template": template}]
    if f.default is not None:
        opts["default"] = f.default
    for key in ("min", "max", "step"):
        value = getattr(f, key)
        if value is not None:
            opts[key] = value
    if f.kind == "STRING":
        opts["multiline"] = f.multiline
    if f.kind == "COMBO":
        opts["multiselect"] = False
        opts["options"] = list(f.options)
    if f.control_after_generate:
        opts["control_after_generate"] = True
    if f.kind == "INT":
        opts["display"] = "number"
    if f.advanced:
        opts["advanced"] = True
    return [f.kind, opts]
