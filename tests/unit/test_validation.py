"""Every validation rule refuses bad input before sending, naming the field and what is allowed."""
import pytest

from happyhorse.engine.errors import ValidationError
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.validation import collect_violations, prompt_weight, validate_request
from happyhorse.providers.registry import all_caps, get_adapter
from tests.conftest import png_bytes

DS = get_adapter("dashscope").caps


def fields(req, caps=DS):
    return {v.field: v.message for v in collect_violations(req, caps, all_caps())}


def img(w=640, h=480, fmt="PNG"):
    return MediaInput.image_bytes(png_bytes(w, h, fmt=fmt))


def test_valid_t2v_passes():
    validate_request(GenerationRequest(mode="t2v", prompt="a horse", duration_s=5), DS, all_caps())


def test_unknown_mode_and_version():
    assert "mode" in fields(GenerationRequest(mode="x2v", prompt="a"))
    assert "1.0 or 1.1" in fields(GenerationRequest(mode="t2v", prompt="a", version="2.0"))["version"]


def test_edit_on_11_names_version_10():
    msg = fields(GenerationRequest(mode="edit", version="1.1", prompt="a"))["mode"]
    assert "1.1" in msg and "use version 1.0" in msg


def test_prompt_required_except_i2v():
    assert "required" in fields(GenerationRequest(mode="t2v", prompt="  "))["prompt"]
    assert "prompt" not in fields(GenerationRequest(mode="i2v", prompt="", first_frame=img()))


def test_prompt_length_counts_cjk_double():
    assert prompt_weight("ab", True) == 2 and prompt_weight("馬馬", True) == 4
    assert "prompt" not in fields(GenerationRequest(mode="t2v", prompt="a" * 5000))
    assert "at most 5000" in fields(GenerationRequest(mode="t2v", prompt="a" * 5001))["prompt"]
    assert "prompt" in fields(GenerationRequest(mode="t2v", prompt="馬" * 2501))


def test_resolution_ratio_duration_seed():
    f = fields(GenerationRequest(mode="t2v", prompt="a", resolution="4k", aspect_ratio="2:1", duration_s=2,
                                 seed=-1))
    assert "720p, 1080p" in f["resolution"]
    assert "16:9" in f["aspect_ratio"]
    assert "3-15" in f["duration_s"]
    assert "0-2147483647" in f["seed"]
    assert "duration_s" in fields(GenerationRequest(mode="t2v", prompt="a", duration_s=16))
    assert "seed" in fields(GenerationRequest(mode="t2v", prompt="a", seed=2147483648))


def test_ratio_depends_on_version():
    assert "aspect_ratio" in fields(GenerationRequest(mode="t2v", prompt="a", version="1.0", aspect_ratio="21:9"))
    assert "aspect_ratio" not in fields(GenerationRequest(mode="t2v", prompt="a", version="1.1", aspect_ratio="21:9"))


def test_ratio_not_for_i2v_and_duration_not_for_edit():
    assert "first frame" in fields(GenerationRequest(mode="i2v", first_frame=img(), aspect_ratio="1:1"))["aspect_ratio"]
    f = fields(GenerationRequest(mode="edit", version="1.0", prompt="a", duration_s=5,
                                 source_video=MediaInput.from_url("https://x/v.mp4", "video")))
    assert "source video" in f["duration_s"]


def test_media_counts_per_mode():
    assert "first_frame" in fields(GenerationRequest(mode="i2v", prompt="a"))
    assert "first_frame" in fields(GenerationRequest(mode="t2v", prompt="a", first_frame=img()))
    assert "1-9" in fields(GenerationRequest(mode="r2v", prompt="a"))["reference_images"]
    ten = tuple(img() for _ in range(10))
    assert "reference_images" in fields(GenerationRequest(mode="r2v", prompt="a", reference_images=ten))
    six = tuple(img() for _ in range(6))
    f = fields(GenerationRequest(mode="edit", version="1.0", prompt="a", reference_images=six))
    assert "at most 5" in f["reference_images"] and "source_video" in f
    assert "reference_images" in fields(GenerationRequest(mode="t2v", prompt="a", reference_images=(img(),)))
    assert "source_video" in fields(GenerationRequest(mode="t2v", prompt="a",
                                                      source_video=MediaInput.from_url("https://x/v.mp4", "video")))


def test_audio_setting_rules():
    assert "only applies" in fields(GenerationRequest(mode="t2v", prompt="a", audio_setting="auto"))["audio_setting"]
    f = fields(GenerationRequest(mode="edit", version="1.0", prompt="a", audio_setting="loud",
                                 source_video=MediaInput.from_url("https://x/v.mp4", "video")))
    assert "auto or origin" in f["audio_setting"]


def test_image_checks():
    small = fields(GenerationRequest(mode="i2v", first_frame=img(200, 400)))["first_frame"]
    assert "at least 300" in small
    wide = fields(GenerationRequest(mode="i2v", first_frame=img(1500, 400)))["first_frame"]
    assert "aspect" in wide
    ref = fields(GenerationRequest(mode="r2v", prompt="a", reference_images=(img(350, 350),)))
    assert "at least 400" in ref["reference_images[1]"]
    gif = fields(GenerationRequest(mode="i2v", first_frame=MediaInput(kind="image", data=png_bytes(fmt="GIF"))))
    assert "GIF" in gif["first_frame"]
    junk = fields(GenerationRequest(mode="i2v", first_frame=MediaInput(kind="image", data=b"not an image")))
    assert "first_frame" in junk


def test_violations_all_reported_at_once():
    with pytest.raises(ValidationError) as err:
        validate_request(GenerationRequest(mode="t2v", prompt="", resolution="8k", duration_s=99), DS, all_caps())
    names = {v.field for v in err.value.violations}
    assert {"prompt", "resolution", "duration_s"} <= names
    assert "before sending" in str(err.value)
