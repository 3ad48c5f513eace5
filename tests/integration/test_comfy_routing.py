"""Provider auto and max_usd in a real ComfyUI: the choice is shown, a refused host is failed over, a run over
its limit is refused before anything is sent."""
from __future__ import annotations

import pytest

from benchmarks.simctl import inject_fault, sim_stats

from .conftest import ledger_rows, t2v_prompt
from .server import run_prompt

pytestmark = pytest.mark.integration


def auto_prompt(text: str, seed: int, **extra) -> dict:
    # HappyHorse 1.0, 720p, 3 s: APIXO 0.375 USD is cheapest, DashScope 0.42 next (both simulated, both keyed).
    prompt = t2v_prompt(text, seed, provider="auto", extra=extra)
    prompt["1"]["inputs"]["provider.version"] = "1.0"
    return prompt


async def test_auto_shows_its_choice_and_fails_over_when_the_first_host_is_out_of_credits(comfy, external_sim):
    before = sim_stats(external_sim.url)["submissions"]
    inject_fault(external_sim.url, {"provider": "apixo", "stage": "submit", "kind": "status", "status": 402})
    result = await run_prompt(comfy, auto_prompt("auto failover in comfy", 401))
    assert result.status == "success", result.error_message()
    texts = [t for _, node, t in result.texts if node == "1"]
    assert any("auto chose apixo" in t and "runner-up: dashscope" in t for t in texts)
    assert any("failing over to dashscope" in t for t in texts)
    after = sim_stats(external_sim.url)["submissions"]
    assert after.get("apixo", 0) == before.get("apixo", 0)                  # refused: nothing created there
    assert after["dashscope"] == before.get("dashscope", 0) + 1             # paid once, at the next host
    rows = [r for r in ledger_rows(comfy) if r["prompt"] == "auto failover in comfy"]
    assert [(r["provider"], r["status"]) for r in rows] == [("apixo", "rejected"), ("dashscope", "done")]
    assert "failed over to dashscope" in rows[0]["error"]


async def test_max_usd_refuses_before_anything_is_sent(comfy, external_sim):
    before, subs = len(ledger_rows(comfy)), sim_stats(external_sim.url)["submissions"]
    result = await run_prompt(comfy, t2v_prompt("too dear", 402, provider="dashscope", extra={"max_usd": 0.1}))
    assert result.status == "error"
    assert "0.42 USD, over the max_usd limit of 0.10 USD" in result.error_message()
    assert len(ledger_rows(comfy)) == before and sim_stats(external_sim.url)["submissions"] == subs
