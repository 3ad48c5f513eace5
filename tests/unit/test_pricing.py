from happyhorse.engine.pricing import estimate
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.providers.registry import get_adapter

DS = get_adapter("dashscope")


def est(**kw):
    return estimate(GenerationRequest(prompt="a", **kw), "dashscope", DS.prices)


def test_issue_example_10s_1080p_v10():
    e = est(mode="t2v", version="1.0", resolution="1080p", duration_s=10)
    assert e.usd == 2.40 or abs(e.usd - 2.40) < 1e-9
    assert e.billed_seconds == 10 and e.usd_per_second == 0.24


def test_rates_by_version_and_resolution():
    assert abs(est(mode="t2v", version="1.1", resolution="1080p", duration_s=5).usd - 0.90) < 1e-9
    assert abs(est(mode="i2v", version="1.1", resolution="720p", duration_s=15).usd - 2.10) < 1e-9
    assert abs(est(mode="t2v", version="1.0", resolution="720p", duration_s=3).usd - 0.42) < 1e-9


def test_default_duration_is_5():
    assert est(mode="t2v", version="1.1", resolution="720p").billed_seconds == 5


def test_edit_bills_input_plus_output_capped_at_15():
    video = MediaInput.from_url("https://x/v.mp4", "video")
    e = est(mode="edit", version="1.0", resolution="720p", source_video=video, source_video_duration_s=8)
    assert e.billed_seconds == 16 and abs(e.usd - 16 * 0.14) < 1e-9
    long = est(mode="edit", version="1.0", resolution="1080p", source_video=video, source_video_duration_s=40)
    assert long.billed_seconds == 30 and abs(long.usd - 30 * 0.24) < 1e-9


def test_edit_without_known_length_is_not_invented():
    e = est(mode="edit", version="1.0", resolution="720p",
            source_video=MediaInput.from_url("https://x/v.mp4", "video"))
    assert e.usd is None and "length" in e.note


def test_simulator_is_free():
    e = estimate(GenerationRequest(mode="t2v", prompt="a", duration_s=10), "simulator", get_adapter("simulator").prices)
    assert e.usd == 0.0
