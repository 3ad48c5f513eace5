"""The opt-in fixes: nothing changes unless asked, every change is reported."""
import io

import numpy as np
import pytest
from PIL import Image

from happyhorse.engine.capabilities import ImageLimits, VideoLimits
from happyhorse.engine.errors import ValidationError
from happyhorse.engine.imageprep import MediaFixes, apply_fixes, fit_all, fit_image, fit_video
from happyhorse.engine.media import decode_image, inspect_image, probe_video
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.validation import collect_violations
from happyhorse.providers.registry import all_caps, get_adapter
from tests.conftest import png_bytes
from tests.contract.test_uploads_checks import write_video

DS = get_adapter("dashscope").caps
LIMITS = ImageLimits()


def noise_png(w: int, h: int) -> bytes:
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def probe(data: bytes):
    import os
    import tempfile
    fd, path = tempfile.mkstemp(suffix=".bin")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    try:
        return probe_video(path)
    finally:
        os.unlink(path)


# ------------------------------------------------------------------------------------------ image fixes


def test_nothing_changes_unless_asked():
    small_wide = png_bytes(1000, 200)                   # breaks min side and aspect
    data, changes = fit_image(small_wide, "first_frame", 300, LIMITS, MediaFixes())
    assert data == small_wide and changes == []
    req = GenerationRequest(mode="i2v", first_frame=MediaInput.image_bytes(small_wide))
    assert apply_fixes(req, DS, MediaFixes()) == (req, [])


def test_upscale_to_minimum_side_and_say_so():
    data, changes = fit_image(png_bytes(200, 150), "first_frame", 300, LIMITS, MediaFixes(upscale=True))
    info = inspect_image(data)
    assert (info.width, info.height, info.format) == (400, 300, "PNG")
    assert changes == ["upscaled 200x150 -> 400x300 to reach the 300 px minimum side"]
    same, none = fit_image(png_bytes(640, 480), "first_frame", 300, LIMITS, MediaFixes(upscale=True))
    assert none == [] and same == png_bytes(640, 480)


def test_crop_into_the_aspect_range_keeps_the_centre():
    img = Image.new("RGB", (1000, 300), (255, 0, 0))
    img.paste((0, 0, 255), (375, 0, 625, 300))          # a blue centre strip
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data, changes = fit_image(buf.getvalue(), "first_frame", 300, LIMITS, MediaFixes(reframe="crop"))
    pixels = decode_image(data)
    assert pixels.shape[:2] == (300, 750)
    assert tuple(pixels[150, 375]) == (0, 0, 255) and tuple(pixels[150, 10]) == (255, 0, 0)
    assert changes == ["cropped 1000x300 -> 750x300 to the allowed range 1:2.5..2.5:1"]


def test_pad_to_a_chosen_ratio_loses_no_pixel():
    data, changes = fit_image(png_bytes(800, 600), "first_frame", 300, LIMITS, MediaFixes(reframe="pad", ratio="16:9"))
    pixels = decode_image(data)
    assert pixels.shape[:2] == (600, 1067)
    assert pixels[:, :133].max() == 0 and pixels[:, -133:].max() == 0            # black bars
    assert (pixels[:, 133:933] == decode_image(png_bytes(800, 600))).all()          # centred, untouched
    assert changes == ["padded 800x600 -> 1067x600 to 16:9"]
    _, none = fit_image(png_bytes(1920, 1080), "first_frame", 300, LIMITS, MediaFixes(reframe="pad", ratio="16:9"))
    assert none == []


def test_crop_then_upscale_in_one_go():
    data, changes = fit_image(png_bytes(500, 100), "reference_images[1]", 400, LIMITS,
                              MediaFixes(reframe="crop", upscale=True))
    info = inspect_image(data)
    assert (info.width, info.height) == (1000, 400)
    assert [c.split(" ")[0] for c in changes] == ["cropped", "upscaled"]


def test_reencode_steps_jpeg_quality_down_to_fit():
    big = noise_png(600, 600)                            # ~1 MB of incompressible pixels
    limits = ImageLimits(max_bytes=250_000)
    data, changes = fit_image(big, "first_frame", 300, limits, MediaFixes(reencode=True))
    assert len(data) <= 250_000 and inspect_image(data).format == "JPEG"
    assert len(changes) == 1 and changes[0].startswith("re-encoded PNG 1.1 MB -> JPEG quality ")
    with pytest.raises(ValidationError) as err:
        fit_image(big, "first_frame", 300, ImageLimits(max_bytes=5_000), MediaFixes(reencode=True))
    assert "first_frame" in str(err.value) and "scale it down" in str(err.value)


def test_reencode_converts_a_refused_format_losslessly_when_it_fits():
    bmp = png_bytes(400, 400, fmt="BMP")
    data, changes = fit_image(bmp, "first_frame", 300, ImageLimits(formats=("JPEG", "PNG", "WEBP")),
                              MediaFixes(reencode=True))
    assert inspect_image(data).format == "PNG" and (decode_image(data) == decode_image(bmp)).all()
    assert changes[0].startswith("re-encoded BMP") and "-> PNG" in changes[0]


def test_apply_fixes_on_a_request_reports_per_role_and_passes_validation():
    req = GenerationRequest(mode="r2v", prompt="[Image 1] and [Image 2]", reference_images=(
        MediaInput.image_bytes(png_bytes(300, 300), name="a.png"),
        MediaInput.image_bytes(png_bytes(600, 600), name="b.png"),
        MediaInput.from_url("https://example.com/c.png", "image")))
    assert "reference_images[1]" in {v.field for v in collect_violations(req, DS, all_caps())}
    fixed, notes = apply_fixes(req, DS, MediaFixes(upscale=True))
    assert notes == ["reference_images[1]: upscaled 300x300 -> 400x400 to reach the 400 px minimum side"]
    assert fixed.reference_images[1] is req.reference_images[1] and fixed.reference_images[2] is req.reference_images[2]
    assert fixed.reference_images[0].name == "a.png"
    assert collect_violations(fixed, DS, all_caps()) == []


def test_fixes_use_the_same_limits_as_validation_for_edit_references():
    # Video-edit references need 300 px a side (reference-to-video's need 400): a 350 px one is fine for an edit
    # and must be left alone there, but is upscaled for reference-to-video.
    ref = MediaInput.image_bytes(png_bytes(350, 350), name="r.png")
    edit = GenerationRequest(mode="edit", version="1.0", prompt="x", reference_images=(ref,),
                             source_video=MediaInput.from_url("https://example.com/v.mp4", "video"))
    assert apply_fixes(edit, DS, fit_all("crop")) == (edit, [])
    r2v = GenerationRequest(mode="r2v", prompt="[Image 1]", reference_images=(ref,))
    _, notes = apply_fixes(r2v, DS, fit_all("crop"))
    assert notes == ["reference_images[1]: upscaled 350x350 -> 400x400 to reach the 400 px minimum side"]


def test_ratio_option_is_checked():
    with pytest.raises(ValueError, match="W:H"):
        MediaFixes(reframe="crop", ratio="wide")
    with pytest.raises(ValueError, match="off, crop, pad"):
        MediaFixes(reframe="stretch")


# ------------------------------------------------------------------------------------------ video fixes


def test_video_reencode_fixes_container_size_and_fps_keeping_audio():
    source = write_video(200, 150, fps=5, seconds=3.2, fmt="matroska")
    req = GenerationRequest(mode="edit", version="1.0", prompt="night",
                            source_video=MediaInput(kind="video", data=source, name="clip.mkv"))
    assert len(collect_violations(req, DS, all_caps())) >= 2          # too small and too choppy
    fixed, notes = apply_fixes(req, DS, MediaFixes(reencode_video=True))
    info = probe(fixed.source_video.data)
    assert (info.container, info.width, info.height, info.fps) == ("mp4", 428, 320, 24.0)
    assert info.has_audio and info.audio_codec == "aac" and abs(info.duration_s - 3.2) < 0.15
    assert fixed.source_video.name == "clip.mp4" and fixed.source_video.mime == "video/mp4"
    assert len(notes) == 1 and notes[0].startswith("source_video: re-encoded as MP4 (H.264): container matroska")
    assert "200x150 -> 428x320" in notes[0] and "5 fps -> 24 fps" in notes[0]
    assert collect_violations(fixed, DS, all_caps()) == []


def test_video_over_the_length_limit_is_cut_to_the_used_part():
    source = write_video(320, 320, fps=10, seconds=6)
    data, changes = fit_video(source, "source_video", VideoLimits(max_duration_s=4))
    info = probe(data)
    assert abs(info.duration_s - 4) < 0.15 and info.fps == 10 and info.has_audio
    assert changes == ["re-encoded as MP4 (H.264): cut from 6.0 s to the first 4 s (hosts use only the first "
                       "15 s; at most 4 s accepted)"]


def test_video_within_limits_is_not_touched_and_too_short_is_left_to_validation():
    fine = write_video(320, 320, fps=10, seconds=3.5, audio=False)
    assert fit_video(fine, "source_video", VideoLimits()) == (fine, [])
    short = write_video(320, 320, fps=10, seconds=1, audio=False)
    assert fit_video(short, "source_video", VideoLimits()) == (short, [])
