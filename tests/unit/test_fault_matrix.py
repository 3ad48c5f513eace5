"""Issue 6's fault matrix, every fault x every simulated provider: recovered or reported, never paid twice, never lost."""
from benchmarks.fault_matrix import FAULTS, matrix_providers, run_matrix, summarize


async def test_fault_matrix_all_providers(capsys):
    providers = matrix_providers()
    outcomes = await run_matrix(providers)
    summary = summarize(outcomes)
    with capsys.disabled():
        print("\nfault matrix:", summary)
    wrong = [(o.provider, o.fault, o.message) for o in outcomes if o.result == "WRONG"]
    assert not wrong
    assert summary["faults_tried"] == len(providers) * len(FAULTS)
    assert summary["duplicated_submissions"] == 0 and summary["lost_jobs"] == 0
    # Every expected recovery recovered, every expected report was reported (no case may flip).
    assert all(o.result == ("recovered" if o.expected == "recover" else "reported") for o in outcomes)
