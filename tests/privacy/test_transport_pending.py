"""A proxy that answers the SOCKS greeting and then sits on the CONNECT is alive and still
trying the destination (a hidden service with a stale or unpublished descriptor): that is a
"not reachable yet" for health waits, unlike a proxy that never answers at all (wedged), which
fails at once. Seen for real: `nomad up` relaunching a node under the address of the previous
wake failed at the handshake deadline while tor was still trying the old descriptor."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from nomad import launch, privacy
from nomad.launch import UnhealthyError
from nomad.privacy import onion
from nomad.privacy.transport import PENDING, SILENT
from nomad.testing.socks import stuck_socks

URL = "http://" + onion.encode(bytes(32), "onion")


@pytest.fixture
def greeting_only() -> Iterator[str]:
    """A SOCKS5 server that answers the greeting (no auth) and never answers the CONNECT."""
    with stuck_socks(answer_greeting=True) as url:
        yield url


def test_greeting_answered_then_silence_is_pending_and_waited_for(greeting_only: str) -> None:
    proxy = greeting_only
    with httpx.Client(**privacy.sync_client_kwargs(proxy, deadline=0.3)) as http:
        with pytest.raises(httpx.ProxyError) as err:
            http.get(URL + "/system_stats")
        assert PENDING in str(err.value) and SILENT not in str(err.value)
        assert not launch.proxy_is_silent(err.value)
        now = [0.0]
        with pytest.raises(UnhealthyError, match="could not reach the destination"):
            launch.wait_healthy(  # kept polling to the health deadline, then said why
                [URL], timeout_s=1.0, interval_s=0.5, client=http,
                clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s),
            )  # fmt: skip
