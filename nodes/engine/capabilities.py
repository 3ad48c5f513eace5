"""What each provider accepts, declared as data. Validation, the CLI and the node UI all read this table."""
from __future__ import annotations

from dataclasses import dataclass, field

RATIOS_10: tuple[str, ...] = ("16:9", "9:16", "1:1", "4:3", "3:4")
RATIOS_11: tuple[str, ...] = RATIOS_10 + ("21:9", "9:21", "5:4", "4:5")
# Inputs outside a host's limits (below): off, refused; or every repair on (imageprep.py), a refused shape
# cropped or padded. Here, not in imageprep, so the node schemas read it without loading the repair code.
FIT_CHOICES: tuple[str, ...] = ("off", "crop", "pad")


@dataclass(frozen=True)
class ImageLimits:
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP")
    first_frame_min_side: int = 300
    # Docs disagree (300 vs 400); the stricter newer value is used and is one line to change.
    reference_min_side: int = 400
    max_aspect: float = 2.5                 # both 1:2.5 and 2.5:1
    # Docs disagree (10 vs 20 MB); 20 MB is the newer figure.
    max_bytes: int = 20 * 1024 * 1024
    # Video-edit references follow the edit page, not reference-to-video's: short side >= 300 px, <= 10 MB
    # (DashScope HappyHorse video-edit API reference).
    edit_reference_min_side: int = 300
    edit_reference_max_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class VideoLimits:
    formats: tuple[str, ...] = ("mp4", "mov")
    min_duration_s: float = 3.0
    max_duration_s: float = 60.0            # only the first 15 s are used
    max_bytes: int = 100 * 1024 * 1024
    min_short_side: int = 320
    max_long_side: int = 2160
    min_fps: float = 8.0
    max_aspect: float = 2.5                 # the source video's shape: 1:2.5 .. 2.5:1 (video-edit API reference)


@dataclass(frozen=True)
class VersionCaps:
    modes: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...] = ("720p", "1080p")
    min_duration_s: int = 3
    max_duration_s: int = 15
    r2v_min_refs: int = 1
    r2v_max_refs: int = 9
    edit_max_refs: int = 5
    seed: bool | None = None            # per-version override of ProviderCaps.supports_seed
    watermark: bool | None = None       # per-version override of ProviderCaps.supports_watermark
    prompt_max_chars: int | None = None         # per-version override of ProviderCaps.prompt_max_chars
    prompt_cjk_counts_double: bool | None = None
    edit_ratio: bool = False            # video edit takes an optional output ratio (unset keeps the source shape)


@dataclass(frozen=True)
class ProviderCaps:
    name: str
    display_name: str
    key_env: str
    versions: dict[str, VersionCaps]
    prompt_max_chars: int = 5000
    # CJK characters count double where the host documents a separate CJK limit (5000 / 2500).
    prompt_cjk_counts_double: bool = True
    # The host requires a prompt in image-to-video too (the model itself makes it optional there).
    i2v_prompt_required: bool = False
    accepts_data_uri: bool = True
    accepts_public_url: bool = True
    has_temp_store: bool = False            # provider-hosted upload (DashScope's oss:// store)
    supports_seed: bool = True
    supports_watermark: bool = True
    supports_cancel: bool = False
    # How the host's docs name reference images in a prompt: promptcheck.IMAGE_STYLE ("[Image N]"),
    # promptcheck.CHARACTER_STYLE ("characterN"), or None where the host documents neither.
    reference_token_style: str | None = None
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    video_limits: VideoLimits = field(default_factory=VideoLimits)
    notes: str = ""

    def modes_for(self, version: str) -> tuple[str, ...]:
        caps = self.versions.get(version)
        return caps.modes if caps else ()

    def supports(self, version: str, mode: str) -> bool:
        return mode in self.modes_for(version)

    def takes_seed(self, version: str) -> bool:
        v = self.versions.get(version)
        return v.seed if v is not None and v.seed is not None else self.supports_seed

    def prompt_limit(self, version: str) -> tuple[int, bool]:
        """(max characters, CJK counts double) for this version."""
        v = self.versions.get(version)
        limit = v.prompt_max_chars if v is not None and v.prompt_max_chars is not None else self.prompt_max_chars
        cjk = (v.prompt_cjk_counts_double if v is not None and v.prompt_cjk_counts_double is not None
               else self.prompt_cjk_counts_double)
        return limit, cjk

    def takes_watermark(self, version: str) -> bool:
        v = self.versions.get(version)
        return v.watermark if v is not None and v.watermark is not None else self.supports_watermark
