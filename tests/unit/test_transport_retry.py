"""Retries wait between tries, never after the last one: the error is reported as soon as it is final."""
import socket

import pytest

from happyhorse.engine.errors import ProviderError
from happyhorse.engine.http import HttpCall, RetryPolicy, Transport


def refused_url():
    """A port on this machine that nothing listens on (bound, then closed): connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("send", ["call", "submit"])
async def test_refused_connect_sleeps_only_between_tries(send):
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    transport = Transport(refused_url(), {}, retry=RetryPolicy(attempts=4), sleep=sleep)
    async with transport:
        with pytest.raises(ProviderError):
            await getattr(transport, send)(HttpCall("GET" if send == "call" else "POST", "/x"))
    assert len(waits) == 3, waits
