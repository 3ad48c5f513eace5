"""Never lose an uncertain submit: DashScope's task list (simulated GET /api/v1/tasks) finds the job of a submit
whose answer was lost; when the list does not have it, the user is told so and offered --new."""
import pytest

from happyhorse.engine.errors import SubmitUncertain
from happyhorse.engine.ledger import LedgerStatus
from happyhorse.engine.request import GenerationRequest
from happyhorse.engine.runner import RunOptions
from tests.contract.helpers import http, make_runner, sent, stats

NAME = "dashscope"


@pytest.fixture
def runner(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-lost-submit")
    return make_runner(sim, tmp_path, NAME)


def _fault(sim, **fault):
    http("POST", sim.url + "/_sim/faults", {"provider": NAME, **fault})


def _req(prompt="a horse in the rain"):
    return GenerationRequest(mode="t2v", version="1.1", prompt=prompt, duration_s=3)


def _listed(sim):
    return [r for r in sent(sim, NAME, "GET", faults=False) if r["path"].startswith("/dashscope/api/v1/tasks?")]


@pytest.mark.parametrize("kind", ["drop_after", "no_id"])
async def test_accepted_job_whose_answer_was_lost_is_found_and_followed(runner, sim, tmp_path, kind):
    _fault(sim, stage="submit", kind=kind)
    res = await runner.run(_req(), RunOptions(out_dir=str(tmp_path)))
    assert res.path and stats(sim)["submissions"] == {NAME: 1}          # followed, never re-sent
    listing = _listed(sim)[0]["path"]
    assert "model_name=happyhorse-1.1-t2v" in listing and "start_time=" in listing and "end_time=" in listing
    record = runner.ledger.find_task(res.task_id, NAME)
    assert record.status == LedgerStatus.DONE and [r.status for r in runner.ledger.recent(5)] == ["done"]


async def test_job_not_in_the_list_is_reported_with_new_offered(runner, sim, tmp_path):
    _fault(sim, stage="submit", kind="drop")          # the connection closes before the host takes the job
    with pytest.raises(SubmitUncertain) as err:
        await runner.run(_req(), RunOptions(out_dir=str(tmp_path)))
    text = str(err.value)
    assert "task list was checked: it lists no task with this model" in text and "--new" in text
    # The next identical run looks again (still nothing), and --new submits once.
    with pytest.raises(SubmitUncertain, match="lists no task with this model"):
        await runner.run(_req(), RunOptions(out_dir=str(tmp_path)))
    assert stats(sim)["submissions"] == {}
    res = await runner.run(_req(), RunOptions(out_dir=str(tmp_path), force_new=True))
    assert res.path and stats(sim)["submissions"] == {NAME: 1}


async def test_list_unreachable_now_is_searched_again_by_the_next_run(runner, sim, tmp_path):
    _fault(sim, stage="submit", kind="drop_after")
    for _ in range(6):                                # every retry of the listing fails this time
        _fault(sim, stage="list", kind="status", status=503)
    with pytest.raises(SubmitUncertain, match="task list could not be read either"):
        await runner.run(_req(), RunOptions(out_dir=str(tmp_path)))
    assert [r.status for r in runner.ledger.recent(5)] == ["uncertain"]
    res = await runner.run(_req(), RunOptions(out_dir=str(tmp_path)))      # no --new: the list finds it now
    assert res.path and res.origin == "attached" and stats(sim)["submissions"] == {NAME: 1}


async def test_another_prompt_or_a_known_task_is_not_taken_for_ours(runner, sim, tmp_path):
    # A finished task of the same model with another prompt, and one already recorded, around the same time.
    other = await make_runner(sim, tmp_path / "other", NAME).run(_req("something else"),
                                                                  RunOptions(out_dir=str(tmp_path)))
    mine_before = await runner.run(_req("known"), RunOptions(out_dir=str(tmp_path)))
    _fault(sim, stage="submit", kind="drop")
    with pytest.raises(SubmitUncertain, match="lists no task"):
        await runner.run(_req(), RunOptions(out_dir=str(tmp_path)))
    assert other.task_id and mine_before.task_id and stats(sim)["submissions"] == {NAME: 2}


async def test_hosts_without_a_task_list_keep_the_refusal(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("REAPI_API_KEY", "rk_live_x")
    http("POST", sim.url + "/_sim/faults", {"provider": "reapi", "stage": "submit", "kind": "drop_after"})
    r = make_runner(sim, tmp_path, "reapi")
    with pytest.raises(SubmitUncertain, match="may have accepted it"):
        await r.run(_req(), RunOptions(out_dir=str(tmp_path)))
    with pytest.raises(SubmitUncertain, match="Check the provider's dashboard"):
        await r.run(_req(), RunOptions(out_dir=str(tmp_path)))
    assert stats(sim)["submissions"] == {"reapi": 1}


def test_simulated_task_list(sim):
    hdrs = {"Authorization": "Bearer sk-x"}
    url = sim.base_url(NAME) + "/api/v1/tasks"
    status, reply = http("GET", url + "?page_size=500", None, hdrs)
    assert status == 400 and reply["code"] == "InvalidParameter"
    status, reply = http("GET", url + "?start_time=yesterday", None, hdrs)
    assert status == 400
    status, reply = http("GET", url, None, {})
    assert status == 401
    status, reply = http("GET", url + "?page_no=1&page_size=10", None, hdrs)
    assert status == 200 and reply["data"] == [] and reply["total"] == 0 and reply["total_page"] == 1
