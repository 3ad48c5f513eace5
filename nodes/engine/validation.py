"""Check a request against a provider's declared capabilities before any money moves."""
from __future__ import annotations

import unicodedata
from typing import Iterable, Mapping

from .capabilities import ProviderCaps
from .errors import ValidationError, Violation
from .fields import Fix
from .promptcheck import reference_violations
from .request import MODE_TITLES, MODES, VERSIONS, GenerationRequest, MediaInput
from .uploads import check_uploadable

SEED_MAX = 2147483647
AUDIO_SETTINGS = ("auto", "origin")


def prompt_weight(prompt: str, cjk_double: bool) -> int:
    """Length as the hosts count it: CJK characters count twice against the limit (5000 / 2500)."""
    if not cjk_double:
        return len(prompt)
    return sum(2 if _is_cjk(ch) else 1 for ch in prompt)


def _is_cjk(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def providers_supporting(version: str, mode: str, all_caps: Iterable[ProviderCaps]) -> list[str]:
    return [c.name for c in all_caps if c.supports(version, mode)]


def collect_violations(req: GenerationRequest, caps: ProviderCaps,
                       all_caps: Mapping[str, ProviderCaps] | None = None, *, media: bool = True) -> list[Violation]:
    """media=False counts the inputs but never reads or inspects them (enough for a price)."""
    v: list[Violation] = []
    others = list((all_caps or {}).values())

    if req.mode not in MODES:
        return [Violation("mode", f"'{req.mode}' is not a mode; use one of {', '.join(MODES)}")]
    if req.version not in VERSIONS:
        return [Violation("version", f"'{req.version}' is not a HappyHorse version; use 1.0 or 1.1")]
    vcaps = caps.versions.get(req.version)
    if vcaps is None or req.mode not in vcaps.modes:
        where = [p for p in providers_supporting(req.version, req.mode, others) if p != caps.name]
        hint = (f"; providers that offer it: {', '.join(where)}" if where
                else "; no provider offers it" + (" (HappyHorse 1.1 has no video edit: use version 1.0)"
                                                  if req.mode == "edit" and req.version == "1.1" else ""))
        offered = (f"it offers: {', '.join(vcaps.modes)}" if vcaps
                   else f"it serves HappyHorse {' and '.join(sorted(caps.versions))} only")
        v.append(Violation("mode", f"{caps.display_name} does not offer {MODE_TITLES[req.mode]} on HappyHorse "
                                   f"{req.version} ({offered}){hint}"))
        return v

    _check_prompt(req, caps, v)
    if req.resolution not in vcaps.resolutions:
        v.append(Violation("resolution", f"'{req.resolution}' is not allowed; use one of {', '.join(vcaps.resolutions)}"))

    if req.mode in ("t2v", "r2v"):
        ratio = req.effective_aspect_ratio
        if ratio not in vcaps.aspect_ratios:
            v.append(Violation("aspect_ratio", f"'{ratio}' is not offered by {caps.display_name} on "
                                               f"{req.version}; use one of {', '.join(vcaps.aspect_ratios)}"))
    elif req.mode == "edit" and req.aspect_ratio is not None and vcaps.edit_ratio:
        if req.aspect_ratio not in vcaps.aspect_ratios:
            v.append(Violation("aspect_ratio", f"'{req.aspect_ratio}' is not offered for video edit by "
                                               f"{caps.display_name}; use one of {', '.join(vcaps.aspect_ratios)}, "
                                               f"or leave it empty to keep the source video's shape"))
    elif req.aspect_ratio is not None:
        source = "first frame image" if req.mode == "i2v" else "source video"
        v.append(Violation("aspect_ratio", f"does not apply to {MODE_TITLES[req.mode]} at {caps.display_name}: "
                                           f"the video keeps the {source}'s ratio", Fix.LEAVE_EMPTY))

    if req.mode == "edit":
        if req.duration_s is not None:
            v.append(Violation("duration_s", "does not apply to video edit: the output is as long as the source "
                                             "video (at most 15 s)", Fix.LEAVE_EMPTY))
    else:
        d = req.effective_duration_s
        if not isinstance(d, int) or isinstance(d, bool) or not (vcaps.min_duration_s <= d <= vcaps.max_duration_s):
            v.append(Violation("duration_s", f"{d!r} is out of range; use a whole number of seconds "
                                             f"{vcaps.min_duration_s}-{vcaps.max_duration_s}"))

    if req.seed is not None:
        if not caps.takes_seed(req.version):
            v.append(Violation("seed", f"{caps.display_name} takes no seed on HappyHorse {req.version}",
                                       Fix.LEAVE_EMPTY))
        elif not (0 <= req.seed <= SEED_MAX):
            v.append(Violation("seed", f"{req.seed} is out of range; use 0-{SEED_MAX}"))

    if req.watermark and not caps.takes_watermark(req.version):
        v.append(Violation("watermark", f"{caps.display_name} has no watermark option on HappyHorse {req.version}",
                                        Fix.TURN_OFF))

    if req.audio_setting is not None:
        if req.mode != "edit":
            v.append(Violation("audio_setting", "only applies to video edit", Fix.LEAVE_EMPTY))
        elif req.audio_setting not in AUDIO_SETTINGS:
            v.append(Violation("audio_setting", f"'{req.audio_setting}' is not allowed; use auto or origin"))

    _check_media_counts(req, vcaps, caps, others, v)
    if media:
        _check_media_transport(req, caps, v)
        _check_media_content(req, caps, v)
    return v


def validate_request(req: GenerationRequest, caps: ProviderCaps,
                     all_caps: Mapping[str, ProviderCaps] | None = None, *, media: bool = True) -> None:
    """media=False: for a price, which depends on the counts of inputs (and an edit's source length), never on
    the files: nothing is read, probed or checked for an upload route."""
    violations = collect_violations(req, caps, all_caps, media=media)
    if violations:
        raise ValidationError(violations, provider=caps.name)
    # A file that cannot reach this host is a setup problem (ConfigError naming what to configure); checked
    # here, with the automatic upload choice. A run re-checks with its own.
    if media:
        check_uploadable(req, caps)


def _check_prompt(req: GenerationRequest, caps: ProviderCaps, v: list[Violation]) -> None:
    prompt = req.prompt or ""
    if req.mode != "i2v" and not prompt.strip():
        v.append(Violation("prompt", f"is required for {MODE_TITLES[req.mode]}; describe the video you want"))
    elif not prompt.strip() and caps.i2v_prompt_required:
        v.append(Violation("prompt", f"{caps.display_name} requires a prompt in every mode, image-to-video "
                                     f"included; describe the motion you want (or pick a provider where it is "
                                     f"optional)"))
    limit, cjk_double = caps.prompt_limit(req.version)
    weight = prompt_weight(prompt, cjk_double)
    if weight > limit:
        unit = "characters (CJK count double)" if cjk_double else "characters"
        v.append(Violation("prompt", f"is {weight} {unit}; {caps.display_name} takes at most {limit} on "
                                     f"HappyHorse {req.version}: shorten it"))
    v.extend(reference_violations(req, caps))


def _check_media_counts(req: GenerationRequest, vcaps, caps: ProviderCaps, others, v: list[Violation]) -> None:
    refs = len(req.reference_images)
    if req.mode == "i2v":
        if req.first_frame is None:
            v.append(Violation("first_frame", "image-to-video needs exactly one first-frame image", Fix.SUPPLY))
    elif req.first_frame is not None:
        v.append(Violation("first_frame", f"only applies to image-to-video, not {MODE_TITLES[req.mode]}",
                           Fix.REMOVE))

    if req.mode == "r2v":
        if not (vcaps.r2v_min_refs <= refs <= vcaps.r2v_max_refs):
            where = [c.name for c in others if c.name != caps.name and c.supports(req.version, "r2v")
                     and c.versions[req.version].r2v_min_refs <= refs <= c.versions[req.version].r2v_max_refs]
            hint = f"; providers that take {refs}: {', '.join(where)}" if where and refs else ""
            v.append(Violation("reference_images", f"{refs} given; {caps.display_name} takes "
                                                   f"{vcaps.r2v_min_refs}-{vcaps.r2v_max_refs} for reference-to-video{hint}"))
    elif req.mode == "edit":
        if refs > vcaps.edit_max_refs:
            v.append(Violation("reference_images", f"{refs} given; video edit takes at most {vcaps.edit_max_refs}"))
    elif refs:
        v.append(Violation("reference_images", f"only apply to reference-to-video and video edit, "
                                               f"not {MODE_TITLES[req.mode]}", Fix.REMOVE_ALL))

    if req.mode == "edit":
        if req.source_video is None:
            v.append(Violation("source_video", "video edit needs a source video", Fix.SUPPLY))
    elif req.source_video is not None:
        v.append(Violation("source_video", f"only applies to video edit, not {MODE_TITLES[req.mode]}",
                           Fix.REMOVE))


def _check_media_transport(req: GenerationRequest, caps: ProviderCaps, v: list[Violation]) -> None:
    for role, m in req.media():
        if m.url is not None and not (caps.accepts_public_url or m.url.startswith("oss://")):
            v.append(Violation(role, f"{caps.display_name} does not take URLs; pass the file itself"))
        if m.url is not None and m.url.startswith("data:") and not caps.accepts_data_uri:
            v.append(Violation(role, f"{caps.display_name} rejects data: URIs; it needs a public URL "
                                     f"(configure an upload bucket)"))


def _check_media_content(req: GenerationRequest, caps: ProviderCaps, v: list[Violation]) -> None:
    from .media import MediaError, inspect_image  # lazy: Pillow

    lim = caps.image_limits
    images: list[tuple[str, MediaInput, int, int]] = []
    if req.first_frame is not None:
        images.append(("first_frame", req.first_frame, lim.first_frame_min_side, lim.max_bytes))
    # Video-edit references follow the edit page's limits, not reference-to-video's.
    ref_side, ref_bytes = ((lim.edit_reference_min_side, lim.edit_reference_max_bytes) if req.mode == "edit"
                           else (lim.reference_min_side, lim.max_bytes))
    images.extend((f"reference_images[{i + 1}]", m, ref_side, ref_bytes) for i, m in enumerate(req.reference_images))
    for name, m, min_side, max_bytes in images:
        if m.data is None:
            continue  # a URL: the provider checks it
        try:
            info = inspect_image(m.data)
        except MediaError as exc:
            v.append(Violation(name, str(exc)))
            continue
        if info.format not in lim.formats:
            v.append(Violation(name, f"{info.format} is not accepted; use {', '.join(lim.formats)}", fixable=True))
        if len(m.data) > max_bytes:
            v.append(Violation(name, f"is {len(m.data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB: "
                                     f"re-encode as JPEG or scale it down", fixable=True))
        if min(info.width, info.height) < min_side:
            v.append(Violation(name, f"is {info.width}x{info.height}; each side must be at least {min_side} px: "
                                     f"upscale it", fixable=True))
        ratio = max(info.width, info.height) / max(1, min(info.width, info.height))
        if ratio > lim.max_aspect:
            v.append(Violation(name, f"aspect {info.width}:{info.height} is too extreme; keep it between "
                                     f"1:{lim.max_aspect} and {lim.max_aspect}:1 (crop it)", fixable=True))

    if req.source_video is not None and req.source_video.data is not None:
        _check_video(req.source_video, caps, v)


def _check_video(m: MediaInput, caps: ProviderCaps, v: list[Violation]) -> None:
    from .media import MediaError, probe_video_bytes

    lim = caps.video_limits
    if len(m.data or b"") > lim.max_bytes:
        v.append(Violation("source_video", f"is {len(m.data) / 1e6:.0f} MB; the limit is "
                                           f"{lim.max_bytes / 1e6:.0f} MB: trim or re-encode it", fixable=True))
        return
    try:
        info = probe_video_bytes(m.data or b"")
    except MediaError as exc:
        v.append(Violation("source_video", f"cannot be read as a video ({exc}); use an MP4 or MOV file"))
        return
    if info.container.split(",")[0] not in ("mov", "mp4") and not any(f in info.container for f in lim.formats):
        v.append(Violation("source_video", f"container {info.container} is not accepted; use MP4 or MOV",
                           fixable=True))
    if not (lim.min_duration_s <= info.duration_s <= lim.max_duration_s):
        v.append(Violation("source_video", f"is {info.duration_s:.1f} s long; it must be "
                                           f"{lim.min_duration_s:.0f}-{lim.max_duration_s:.0f} s",
                           fixable=info.duration_s > lim.max_duration_s))      # too long is cut; too short is not
    short, long_ = sorted((info.width, info.height))
    if short < lim.min_short_side or long_ > lim.max_long_side:
        v.append(Violation("source_video", f"is {info.width}x{info.height}; the short side must be >= "
                                           f"{lim.min_short_side} and the long side <= {lim.max_long_side}",
                           fixable=True))
    if long_ / max(1, short) > lim.max_aspect:
        v.append(Violation("source_video", f"is {info.width}x{info.height}; its shape must be between "
                                           f"1:{lim.max_aspect:g} and {lim.max_aspect:g}:1 (crop it)"))
    if info.fps <= lim.min_fps:
        v.append(Violation("source_video", f"is {info.fps:.1f} fps; it must be above {lim.min_fps:.0f} fps",
                           fixable=True))
