"""Node input specs come from the provider registry; inputs become canonical requests; prices and progress text."""
from __future__ import annotations

import dataclasses

import pytest
from happyhorse.comfy import specs
from happyhorse.comfy.display import progress_fraction, progress_text
from happyhorse.comfy.estimates import breakdown, nest, pill_label, price, price_for_widgets, price_from_mode_combo
from happyhorse.comfy.params import build_request, read_choice, slot_order
from happyhorse.engine.errors import HappyHorseError
from happyhorse.engine.pricing import estimate
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import Progress
from happyhorse.providers import registry
from happyhorse.providers.simulator import SimulatorAdapter

from tests.integration import golden


def field(fields, name):
    return next(f for f in fields if f.id == name)


def choices(f):
    return {c.key: c.fields for c in f.choices}


@pytest.fixture
def one_more_provider(monkeypatch):
    """A provider that offers only text-to-video on 1.0 at 720p, takes no seed, and has no USD rate."""
    base = SimulatorAdapter()
    caps = dataclasses.replace(base.caps, name="tiny", display_name="Tiny host", key_env="TINY_API_KEY",
                               supports_seed=False, versions={"1.0": dataclasses.replace(
                                   base.caps.versions["1.0"], modes=("t2v",), resolutions=("720p",),
                                   max_duration_s=8)})
    prices = dataclasses.replace(base.prices, usd_per_second={}, credits_per_second={("1.0", "720p"): 30.0})
    adapter = type("TinyAdapter", (SimulatorAdapter,), {"name": "tiny", "caps": caps, "prices": prices})()
    monkeypatch.setitem(registry.ADAPTERS, "tiny", adapter)
    return adapter


def test_node_ids_are_prefixed_unique_and_in_one_category():
    ids = [s.node_id for s in specs.node_specs()]
    assert len(set(ids)) == 6 and all(i.startswith("HappyHorsePack.") for i in ids)
    assert all(specs.object_info(s)["category"] == "HappyHorse" for s in specs.node_specs())


def test_specs_render_exactly_the_committed_object_info():
    """A schema change must come with a regenerated golden file: the diff is what reviewers see."""
    assert set(golden.load()) == {s.node_id for s in specs.node_specs()}
    problem = golden.mismatch(golden.render(), "the specs' rendering")
    assert not problem, problem


def test_no_widget_can_hold_a_secret():
    def names(fields):
        for f in fields:
            yield f.id
            for c in f.choices:
                yield from names(c.fields)
    for spec in specs.node_specs():
        for name in names(spec.fields):
            assert not any(word in name.lower() for word in ("key", "token", "secret", "password", "auth"))


def test_provider_choices_follow_the_capability_tables():
    for mode, spec in (("t2v", specs.text2video()), ("i2v", specs.image2video()), ("r2v", specs.reference2video()),
                       ("edit", specs.video_edit())):
        providers = choices(field(spec.fields, "provider"))
        expected = [n for n, a in registry.ADAPTERS.items() if any(mode in v.modes for v in a.caps.versions.values())]
        assert sorted(providers) == sorted([*expected, "auto"])
        assert list(providers)[:2] == ["simulator", "auto"]        # the free default first, then auto
        auto = providers.pop("auto")
        assert field(auto, "upload").options == ("auto", "s3") if mode != "t2v" else not [f for f in auto
                                                                                           if f.id == "upload"]
        for version, fields in choices(field(auto, "version")).items():
            # auto offers every value some host (not the simulator) offers; the ranking keeps the hosts that fit.
            hosts = [registry.ADAPTERS[n].caps.versions[version] for n in expected
                     if n != "simulator" and version in registry.ADAPTERS[n].caps.versions
                     and mode in registry.ADAPTERS[n].caps.versions[version].modes]
            assert hosts and set(field(fields, "resolution").options) == {r for vc in hosts for r in vc.resolutions}
            if mode in ("t2v", "r2v"):
                assert set(field(fields, "aspect_ratio").options) == {r for vc in hosts for r in vc.aspect_ratios}
        for name, provider_fields in providers.items():
            caps = registry.ADAPTERS[name].caps
            upload = [f for f in provider_fields if f.id == "upload"]
            if mode == "t2v":
                assert not upload                                 # nothing to upload
            else:
                assert ("data-uri" in upload[0].options) == caps.accepts_data_uri
                assert ("provider-store" in upload[0].options) == caps.has_temp_store
            for version, fields in choices(field(provider_fields, "version")).items():
                vc = caps.versions[version]
                assert mode in vc.modes
                assert field(fields, "resolution").options == vc.resolutions
                ratio = [f for f in fields if f.id == "aspect_ratio"]
                if mode in ("t2v", "r2v"):
                    assert ratio[0].options == vc.aspect_ratios
                elif mode == "edit" and vc.edit_ratio:      # optional; the default sends nothing
                    assert ratio[0].options == (specs.KEEP_SOURCE, *vc.aspect_ratios)
                    assert ratio[0].default == specs.KEEP_SOURCE
                else:
                    assert not ratio
                duration = [f for f in fields if f.id == "duration"]
                if mode == "edit":
                    assert not duration
                else:
                    assert (duration[0].min, duration[0].max) == (vc.min_duration_s, vc.max_duration_s)


def test_video_edit_offers_only_versions_with_edit():
    for name, provider_fields in choices(field(specs.video_edit().fields, "provider")).items():
        version_field = field(provider_fields, "version")
        if name == "auto":
            assert set(choices(version_field)) == {"1.0"}          # HappyHorse 1.1 has no edit anywhere
            continue
        assert set(choices(version_field)) == {v for v, vc in registry.ADAPTERS[name].caps.versions.items()
                                               if "edit" in vc.modes}
        assert "1.1" not in choices(version_field)          # HappyHorse 1.1 has no video edit


def test_a_newly_registered_provider_appears_with_its_own_limits(one_more_provider):
    providers = choices(field(specs.text2video().fields, "provider"))
    assert "tiny" in providers and "tiny" not in choices(field(specs.image2video().fields, "provider"))
    versions = choices(providers["tiny"][0])
    assert list(versions) == ["1.0"]
    assert field(versions["1.0"], "resolution").options == ("720p",)
    assert field(versions["1.0"], "duration").max == 8
    collect = field(specs.collect_job().fields, "provider")
    assert collect.options[0] == "simulator" and "tiny" in collect.options


CHOICE = {"provider": "simulator", "version": {"version": "1.1", "resolution": "1080p", "aspect_ratio": "9:16",
                                               "duration": 7}}


def test_inputs_become_the_canonical_request():
    built = build_request("t2v", CHOICE, prompt="a horse", seed=12, watermark=True)
    req = built.request
    assert built.provider == "simulator" and built.notes == ()
    assert (req.mode, req.version, req.resolution, req.aspect_ratio, req.duration_s, req.seed, req.watermark) == \
        ("t2v", "1.1", "1080p", "9:16", 7, 12, True)
    assert req.audio_setting is None
    edit = build_request("edit", {"provider": "simulator", "version": {"version": "1.0", "resolution": "720p"}},
                         prompt="x", audio_setting="origin").request
    assert (edit.duration_s, edit.aspect_ratio, edit.audio_setting) == (None, None, "origin")
    kept = build_request("edit", {"provider": "dashscope", "version": {"version": "1.0", "resolution": "720p",
                                                                       "aspect_ratio": "keep source"}},
                         prompt="x").request
    assert kept.aspect_ratio is None and kept.effective_aspect_ratio is None       # nothing sent
    square = build_request("edit", {"provider": "dashscope", "version": {"version": "1.0", "resolution": "720p",
                                                                         "aspect_ratio": "1:1"}}, prompt="x").request
    assert square.effective_aspect_ratio == "1:1"


def test_absent_optional_inputs_take_their_defaults():
    # As ComfyUI executes an API prompt that leaves optional inputs out: absent at the top level, None inside
    # a dynamic combo.
    given = {"prompt": "a horse", "seed": 5, "first_frame": "pixels",
             "provider": {"provider": "simulator", "upload": None,
                          "version": {"version": "1.1", "resolution": "1080p", "duration": 4}}}
    v = specs.with_defaults(specs.image2video().fields, given)
    assert v["provider"]["upload"] == "auto" and v["provider"]["version"]["resolution"] == "1080p"
    assert (v["watermark"], v["force_new"], v["timeout_s"], v["frames_max_mb"]) == (False, False, 1800, 2048)
    assert (v["prompt"], v["seed"], v["first_frame"]) == ("a horse", 5, "pixels")     # given values stay
    assert build_request("i2v", v["provider"], prompt="x").upload == "auto"
    edit = specs.with_defaults(specs.video_edit().fields, {"prompt": "x", "provider": CHOICE})
    assert (edit["audio_setting"], edit["source_fps"], edit.get("video")) == ("auto", 24.0, None)  # no socket default
    cost = specs.with_defaults(specs.cost_estimate().fields, {"mode": {"mode": "edit", "source_seconds": None,
                                                                        "provider": CHOICE}})
    assert cost["mode"]["source_seconds"] == 5.0


def test_choices_missing_from_this_installation_are_clear_errors():
    with pytest.raises(HappyHorseError, match="'nowhere' is not available.*simulator"):
        read_choice({"provider": "nowhere"}, "t2v")
    with pytest.raises(HappyHorseError, match="saved in this workflow is not available"):
        read_choice(None, "t2v")
    with pytest.raises(HappyHorseError, match="Version '1.1' is not offered by simulator.*1.0"):
        read_choice({"provider": "simulator", "version": {"version": "1.1", "resolution": "720p"}}, "edit")


def test_seed_is_dropped_for_hosts_without_seeds(one_more_provider):
    built = build_request("t2v", {"provider": "tiny", "version": {"version": "1.0", "resolution": "720p",
                                                                  "aspect_ratio": "16:9", "duration": 5}},
                          prompt="a horse", seed=3)
    assert built.request.seed is None and "takes no seed" in built.notes[0]


def test_autogrow_slots_in_numeric_order():
    assert slot_order({"image10": "j", "image2": "b", "image1": "a", "image3": None}) == ["a", "b", "j"]
    assert slot_order(None) == [] and slot_order({}) == []


def test_widget_names_nest_like_comfyui_does():
    flat = {"mode": "edit", "mode.provider": "dashscope", "mode.provider.version": "1.0",
            "mode.provider.version.resolution": "720p", "mode.source_seconds": 8.0, "references.image1": "x"}
    assert nest(flat) == {"mode": {"mode": "edit", "source_seconds": 8.0, "provider": {
        "provider": "dashscope", "version": {"version": "1.0", "resolution": "720p"}}},
        "references": {"image1": "x"}}


def test_prices_match_the_engine_tables():
    dash = registry.ADAPTERS["dashscope"]
    choice = {"provider": "dashscope", "version": {"version": "1.1", "resolution": "1080p", "aspect_ratio": "16:9",
                                                   "duration": 10}}
    est = price("t2v", choice)
    expected = estimate(GenerationRequest(mode="t2v", prompt="x", version="1.1", resolution="1080p",
                                          duration_s=10), "dashscope", dash.prices)
    assert est.usd == pytest.approx(expected.usd) == pytest.approx(1.8)
    assert pill_label(est) == "~1.80 USD" and breakdown(est).startswith("Estimated: 1.80 USD")
    assert pill_label(price("t2v", CHOICE)) == "free" and breakdown(price("t2v", CHOICE)).startswith("Free")


def test_edit_price_needs_the_source_length():
    edit = {"mode": "edit", "provider": {"provider": "dashscope", "version": {"version": "1.0",
                                                                              "resolution": "720p"}}}
    assert price_from_mode_combo({**edit, "source_seconds": 20.0}).usd == pytest.approx(0.14 * 30)  # 15 s used
    assert price_from_mode_combo(edit, source_seconds=4.0).usd == pytest.approx(0.14 * 8)
    per_second = price("edit", edit["provider"])
    assert per_second.usd is None and pill_label(per_second) == "0.14 USD/s x (input + output)"
    with pytest.raises(HappyHorseError, match="Pick what to price"):
        price_from_mode_combo({"mode": "nope"})


def test_price_for_widgets_serves_every_priced_node(one_more_provider):
    widgets = {"provider": "tiny", "provider.version": "1.0", "provider.version.resolution": "720p",
               "provider.version.aspect_ratio": "16:9", "provider.version.duration": 5}
    answer = price_for_widgets("HappyHorsePack.Text2Video", widgets)
    assert answer["usd"] is None and "150 credits" in answer["label"]
    with pytest.raises(HappyHorseError):
        price_for_widgets("HappyHorsePack.CollectJob", {})


def test_progress_text_and_bar():
    est = price("t2v", {"provider": "dashscope", "version": {"version": "1.1", "resolution": "720p",
                                                             "aspect_ratio": "16:9", "duration": 5}})
    running = Progress("running", 12.4, expected_s=40.0, task_id="abc", estimate=est)
    text = progress_text(running, "DashScope", ("seed ignored",))
    assert text.splitlines() == ["Status: generating (DashScope)", "Time elapsed: 12s (~28s remaining)",
                                 "Price: 0.70 USD", "Task: abc", "seed ignored"]
    late = Progress("running", 45.0, expected_s=40.0, estimate=est)
    assert "(any moment now)" in progress_text(late, "DashScope")
    assert progress_fraction(Progress("submitting", 1.0)) < progress_fraction(running) < \
        progress_fraction(Progress("downloading", 50.0)) < progress_fraction(Progress("done", 51.0)) == 1.0
