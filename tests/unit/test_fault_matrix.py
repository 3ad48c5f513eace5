"""Issue 6's fault matrix, every fault x every simulated provider: recovered or reported, never paid twice, never lost."""
import pytest

from benchmarks.fault_matrix import (FAULTS, ROUTING_CASES, matrix_providers, run_matrix, run_routing_matrix,
                                     summarize)


@pytest.mark.parametrize("provider", matrix_providers())
async def test_fault_matrix_all_providers(provider, capsys):
    """One host per test, so the hosts' matrices run on separate workers; within one, every case runs at once."""
    outcomes = await run_matrix([provider])
    summary = summarize(outcomes)
    with capsys.disabled():
        print(f"\nfault matrix, {provider}:", summary)
    wrong = [(o.provider, o.fault, o.message) for o in outcomes if o.result == "WRONG"]
    assert not wrong
    assert summary["faults_tried"] == sum(f.applies_to(provider) for f in FAULTS)
    assert summary["duplicated_submissions"] == 0 and summary["lost_jobs"] == 0
    # Every expected recovery recovered, every expected report was reported (no case may flip).
    assert all(o.result == ("recovered" if o.expected == "recover" else "reported") for o in outcomes)


async def test_fault_matrix_routing_cases(capsys):
    """Provider auto: failover on a refusal that proves no job exists, a stop on an uncertain submit; 0 double-paid."""
    outcomes = await run_routing_matrix()
    with capsys.disabled():
        print("\nrouting cases:", summarize(outcomes))
    assert [(o.fault, o.result) for o in outcomes] == [
        (c.name, "recovered" if c.expect == "recover" else "reported") for c in ROUTING_CASES]
    assert sum(o.duplicates for o in outcomes) == 0 and sum(o.lost for o in outcomes) == 0
    assert all(o.submissions == 1 for o in outcomes)      # exactly one job paid for in every case
