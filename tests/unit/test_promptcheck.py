"""Prompt check: both reference styles recognised; naming a missing reference is refused before sending."""
import pytest

from benchmarks.simctl import sim_stats
from happyhorse.engine.errors import ValidationError
from happyhorse.engine.promptcheck import reference_tokens, reference_warnings
from happyhorse.engine.request import GenerationRequest, MediaInput
from happyhorse.engine.runner import JobRunner, RunOptions
from happyhorse.providers.registry import all_caps, get_adapter, resolve_endpoint
from tests.conftest import png_bytes

from tests.unit.test_cli import run


def refs(n):
    return tuple(MediaInput.image_bytes(png_bytes(640, 480, color=(10 * i, 90, 40))) for i in range(n))


def test_both_styles_are_recognised_in_order():
    toks = reference_tokens("[Image 2] meets Character1 under [image 10]; characters and character2x stay text")
    assert [(t.text, t.index) for t in toks] == [("[Image 2]", 2), ("Character1", 1), ("[image 10]", 10)]


@pytest.mark.parametrize("prompt,token", [("[Image 3] rides past [Image 1]", "[Image 3]"),
                                          ("character1 waves at character3", "character3")])
@pytest.mark.parametrize("provider", ["dashscope", "apiframe", "reapi", "getimg"])
def test_naming_a_missing_reference_is_refused_naming_token_and_count(prompt, token, provider):
    from happyhorse.engine.validation import collect_violations

    caps = get_adapter(provider).caps
    version = max(v for v in caps.versions if caps.supports(v, "r2v"))
    req = GenerationRequest(mode="r2v", version=version, prompt=prompt, reference_images=refs(2))
    msgs = [v.message for v in collect_violations(req, get_adapter(provider).caps, all_caps()) if v.field == "prompt"]
    assert len(msgs) == 1 and token in msgs[0] and "only 2 reference images are given" in msgs[0]


def test_edit_counts_its_references_too():
    from happyhorse.engine.validation import collect_violations

    req = GenerationRequest(mode="edit", version="1.0", prompt="swap the hat for [Image 1]",
                            source_video=MediaInput.from_url("https://example.com/a.mp4", "video"))
    msgs = [v.message for v in collect_violations(req, get_adapter("dashscope").caps) if v.field == "prompt"]
    assert msgs and "no reference images are given" in msgs[0]
    # Text-to-video takes no references: the same words are just text there.
    assert not [v for v in collect_violations(GenerationRequest(mode="t2v", prompt="[Image 4] at dawn"),
                                              get_adapter("dashscope").caps) if v.field == "prompt"]


def test_unnamed_references_warn_in_the_chosen_hosts_style():
    req = GenerationRequest(mode="r2v", version="1.1", prompt="character1 walks", reference_images=refs(3))
    ds = reference_warnings(req, get_adapter("dashscope").caps)
    assert len(ds) == 1 and "character2, character3" in ds[0] and "DashScope names them character1" in ds[0]
    rp = reference_warnings(req, get_adapter("reapi").caps)
    assert "[Image 2], [Image 3]" in rp[0] and "reAPI names them [Image 1]" in rp[0]
    assert "both are recognised" in reference_warnings(req, get_adapter("getimg").caps)[0]
    assert reference_warnings(req.with_(prompt="character1, [Image 2] and character3"),
                              get_adapter("dashscope").caps) == []


async def test_refused_before_anything_reaches_the_host(sim):
    runner = JobRunner(resolve_endpoint("simulator", base_url=sim.base_url("dashscope")), all_caps=all_caps())
    req = GenerationRequest(mode="r2v", version="1.1", prompt="character1 hugs character2",
                            reference_images=refs(1))
    with pytest.raises(ValidationError, match="character2"):
        await runner.run(req, RunOptions(force_new=True))
    assert sim_stats(sim.url)["submissions"] == {} and not sim_stats(sim.url)["requests"]


def test_cli_refuses_and_warns(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png_bytes(640, 480))
    b.write_bytes(png_bytes(640, 480, color=(1, 2, 3)))
    r = run("estimate", "--provider", "apiframe", "--mode", "r2v", "--image", str(a), "--image", str(b),
            "--prompt", "[Image 1] beside [Image 5]")
    assert r.returncode == 2 and "[Image 5]" in r.stderr and "only 2 reference images" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("estimate", "--provider", "dashscope", "--mode", "r2v", "--image", str(a), "--image", str(b),
            "--prompt", "character1 alone")
    assert r.returncode == 0 and "warning: the prompt never names character2" in r.stderr
