"""The on-node watchdog: exits after the idle period (injected clock), stays up while a prompt runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from nomad.backends.local.process import free_port
from nomad.testing.comfy import FakeComfy
from nomad.watchdog import IdlePolicy, Observation, observe, run
from tests.comfy.conftest import t2i_graph

IDLE = Observation(busy=False, last_prompt=None)
BUSY = Observation(busy=True, last_prompt=None)


def test_policy_exits_only_after_the_full_idle_period() -> None:
    """Idle observations trigger exit exactly when idle_seconds have passed since the last work."""
    p = IdlePolicy(idle_seconds=600, started_at=0)
    assert not p.observe(300, {"a": IDLE})
    assert not p.observe(599, {"a": IDLE})
    assert p.observe(600, {"a": IDLE})


def test_policy_busy_on_any_gpu_resets_the_clock() -> None:
    """Work on one of several endpoints keeps the node up; the idle period restarts from it."""
    p = IdlePolicy(idle_seconds=600, started_at=0)
    assert not p.observe(590, {"a": IDLE, "b": BUSY})
    assert not p.observe(1000, {"a": IDLE, "b": IDLE})
    assert p.observe(1190, {"a": IDLE, "b": IDLE})


def test_policy_counts_prompts_finished_between_polls() -> None:
    """A new newest-history entry (a job that ran between two polls) counts as activity."""
    p = IdlePolicy(idle_seconds=600, started_at=0)
    assert not p.observe(100, {"a": Observation(False, "p1")})
    assert not p.observe(650, {"a": Observation(False, "p2")})
    assert not p.observe(1200, {"a": Observation(False, "p2")})
    assert p.observe(1250, {"a": Observation(False, "p2")})


def test_unreachable_comfy_counts_as_idle() -> None:
    """A dead ComfyUI (nothing can be running) does not keep the node alive forever."""
    url = f"http://127.0.0.1:{free_port()}"
    assert observe(url).busy is None
    p = IdlePolicy(idle_seconds=60, started_at=0)
    assert p.observe(60, {url: observe(url)})


class FakeTime:
    """Virtual time: sleep() advances the clock instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def held_comfy() -> Iterator[FakeComfy]:
    """A FakeComfy whose sampler holds at step 1 until released (a prompt 'running')."""
    fc = FakeComfy.start_in_thread(hold_at_step=1, hold_timeout=120)
    yield fc
    fc.release()
    fc.stop()


def _queue_prompt(fc: FakeComfy) -> str:
    r = httpx.post(fc.url + "/prompt", json={"prompt": t2i_graph(), "client_id": "wd"}, timeout=10)
    r.raise_for_status()
    return str(r.json()["prompt_id"])


def test_watchdog_stays_up_while_a_prompt_runs_then_exits_when_idle(held_comfy: FakeComfy) -> None:
    """Against a real HTTP double: 60 virtual minutes of a running prompt keep it up; once done, it exits."""
    prompt_id = _queue_prompt(held_comfy)
    t = FakeTime()
    stayed = run(
        [held_comfy.url],
        idle_minutes=10,
        poll_s=60,
        clock=t.clock,
        sleep=t.sleep,
        log=lambda _m: None,
        max_polls=60,
    )
    assert stayed is False and t.now >= 3600  # never decided to exit while busy

    done = threading.Event()
    held_comfy.release()
    with httpx.Client(timeout=5) as http:
        for _ in range(200):  # bounded: the double finishes a released 4-step prompt quickly
            if prompt_id in http.get(held_comfy.url + f"/history/{prompt_id}").json():
                done.set()
                break
            done.wait(0.05)
    assert done.is_set()
    t2 = FakeTime()
    logs: list[str] = []
    assert (
        run(
            [held_comfy.url],
            idle_minutes=10,
            poll_s=60,
            clock=t2.clock,
            sleep=t2.sleep,
            log=logs.append,
            max_polls=100,
        )
        is True
    )
    assert 600 <= t2.now <= 660 and "idle for" in logs[0]


def test_garbled_or_cut_off_replies_read_as_unreachable_not_a_crash() -> None:
    """An IncompleteRead or a non-object JSON reply is busy=None; the switch keeps running."""
    import http.client

    def cut_off(url: str) -> Any:
        raise http.client.IncompleteRead(b"{")

    assert observe("http://x", cut_off).busy is None
    assert observe("http://x", lambda url: ["not", "an", "object"]).busy is None


def test_cli_rejects_non_positive_idle_minutes(capsys: Any) -> None:
    """`python -m nomad.watchdog --idle-minutes 0` is a usage error, not a silent exit."""
    from nomad.watchdog import main

    with pytest.raises(SystemExit) as info:
        main(["--url", "http://127.0.0.1:1", "--idle-minutes", "0"])
    assert info.value.code == 2 and "idle-minutes" in capsys.readouterr().err
