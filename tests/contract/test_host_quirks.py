"""What real hosts may do that their docs do not show, injected into every simulated host: another 2xx code for
the submit, a 2xx submit answer without the task id, a status word the docs never listed. Money rules: a 2xx
with an id is a paid job to follow; a 2xx without one is uncertain and never sent again (hosts with a task list
find the job there: test_lost_submits.py); an unlisted status word is waited on, never an end."""
import logging

import pytest

from happyhorse.engine.errors import JobTimeout, SubmitUncertain
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import RunOptions
from happyhorse.providers.registry import ADAPTERS
from happyhorse.simulator.server import PREFIXES
from tests.contract.helpers import http, make_runner, stats

HOSTS = [name for name in ADAPTERS if name in PREFIXES]
# The code each host documents for an accepted submit, and another 2xx it might send instead.
OTHER_2XX = {"getimg": 200, "apiframe": 200, "dashscope": 201, "apixo": 201, "aimlapi": 202, "reapi": 202}


def _request(name: str) -> GenerationRequest:
    caps = ADAPTERS[name].caps
    return GenerationRequest(mode="t2v", version="1.1" if caps.supports("1.1", "t2v") else "1.0",
                             prompt="a horse on a beach", duration_s=3, resolution="720p")


@pytest.fixture
def keys(monkeypatch):
    for name in HOSTS:
        monkeypatch.setenv(ADAPTERS[name].caps.key_env, "sk-quirk-test")


@pytest.mark.parametrize("name", HOSTS)
async def test_other_2xx_with_a_task_id_is_a_paid_job_followed_to_its_video(sim, tmp_path, keys, name):
    http("POST", sim.url + "/_sim/faults", {"provider": name, "stage": "submit", "kind": "answer_status",
                                            "status": OTHER_2XX[name]})
    runner = make_runner(sim, tmp_path, name)
    res = await runner.run(_request(name), RunOptions(out_dir=str(tmp_path)))
    assert res.path and res.origin == "new"
    assert runner.ledger.find_task(res.task_id, name).status == "done"
    assert stats(sim)["submissions"] == {name: 1}


@pytest.mark.parametrize("name", [n for n in HOSTS if not ADAPTERS[n].lists_tasks])
async def test_2xx_without_task_id_is_uncertain_and_never_sent_again(sim, tmp_path, keys, name):
    http("POST", sim.url + "/_sim/faults", {"provider": name, "stage": "submit", "kind": "no_id"})
    runner = make_runner(sim, tmp_path, name)
    with pytest.raises(SubmitUncertain) as err:
        await runner.run(_request(name), RunOptions(out_dir=str(tmp_path)))
    assert "without a task id" in str(err.value) and "NOT sent again" in str(err.value)
    assert ADAPTERS[name].caps.display_name in str(err.value)
    assert [r.status for r in runner.ledger.recent(5)] == ["uncertain"]
    # The same request again is refused (the host may have it), not re-posted.
    with pytest.raises(SubmitUncertain):
        await runner.run(_request(name), RunOptions(out_dir=str(tmp_path)))
    assert stats(sim)["submissions"] == {name: 1}


@pytest.mark.parametrize("name", HOSTS)
async def test_undocumented_status_word_is_waited_on_logged_once_and_shown(sim, tmp_path, keys, name, caplog):
    for _ in range(3):
        http("POST", sim.url + "/_sim/faults", {"provider": name, "stage": "poll", "kind": "status_word",
                                                "word": "WARMING_UP"})
    runner = make_runner(sim, tmp_path, name)
    lines = []
    with caplog.at_level(logging.WARNING, logger="happyhorse.runner"):
        res = await runner.run(_request(name), RunOptions(out_dir=str(tmp_path)),
                               on_progress=lambda p: lines.append(p.text()))
    assert res.path and stats(sim)["submissions"] == {name: 1}
    warned = [r for r in caplog.records if "WARMING_UP" in r.getMessage()]
    assert len(warned) == 1 and "documents do not list" in warned[0].getMessage()
    assert any("says 'WARMING_UP', a status its documents do not list; still waiting" in line for line in lines)
    assert runner.ledger.find_task(res.task_id, name).status == "done"


async def test_undocumented_words_forever_end_at_the_time_limit_and_stay_collectable(sim, tmp_path, keys):
    name = "dashscope"
    for _ in range(200):
        http("POST", sim.url + "/_sim/faults", {"provider": name, "stage": "poll", "kind": "status_word",
                                                "word": "THINKING"})
    runner = make_runner(sim, tmp_path, name)
    with pytest.raises(JobTimeout) as err:
        await runner.run(_request(name), RunOptions(out_dir=str(tmp_path), timeout_s=1.0))
    record = runner.ledger.find_task(err.value.task_id, name)
    assert record.status == "timed_out"
    sim.core.faults[name].clear()
    res = await runner.collect(err.value.task_id, opts=RunOptions(out_dir=str(tmp_path)))
    assert res.path and stats(sim)["submissions"] == {name: 1}
