"""Status edits are paced in simulated time: a long wake, a busy group, honest "longer than usual".

The bot is the real PTB Application against BotApiStub; time is a
``VirtualClock`` shared by the bot (its clock and its sleeps) and the stub
(call timestamps), so minutes pass in about a second and nothing depends on
the machine's speed. PTB's wall-clock rate limiter is off in these tests
(it would wait in real time); the bot's own pacing (bot/pacing.py) is on,
with its production intervals.
"""

from __future__ import annotations

import itertools
from typing import Any

from nomad.queue.base import JobStatus
from nomad.testing.botapi import BotApiStub, Call, VirtualClock
from nomad_bot.pacing import GROUP_LIMIT, Pacer

ALICE, BOB = 1001, 1002
GROUP = -100777
PNG = b"\x89PNG\r\n\x1a\n" + b"result" * 50
_CHAT_CALLS = {"sendMessage", "editMessageText", "sendPhoto", "sendDocument", "sendVideo"}


def publish(
    queue: Any, vc: VirtualClock, started: float, usual: float, state: str = "waking"
) -> None:
    """What `nomad serve`'s autoscaler publishes while a wake is under way."""
    queue.put_state(
        "autoscaler",
        "status",
        {
            "state": state,
            "clusters": [{"name": "c1", "requested_at": started}],
            "cold_start_median_s": usual,
            "updated_at": vc.now,
        },
    )


async def run_for(vc: VirtualClock, rt: Any, seconds: float, every: Any = None) -> None:
    """Advance simulated time second by second, calling ``every()`` before each step."""
    for _ in range(int(seconds)):
        if every is not None:
            every()
        await vc.advance(1.0, rt.tracker.active)


def sends_in(calls: list[Call], chat: int) -> list[Call]:
    return [
        c for c in calls if c.method in _CHAT_CALLS and str(c.params.get("chat_id")) == str(chat)
    ]


def busiest_minute(calls: list[Call]) -> int:
    """The most calls in any 60-second window (simulated time)."""
    times = sorted(c.at for c in calls)
    return max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)


def sim_bot(make_bot: Any, vc: VirtualClock, botapi: BotApiStub) -> Any:
    botapi.clock = vc
    return make_bot(
        clock=vc,
        sleep=vc.sleep,
        poll_interval=2.0,
        edit_interval=5.0,
        app_kwargs={"wall_clock_limits": False},
    )


async def test_five_minute_wake_is_at_most_sixty_edits(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """A 5-minute cold start (usual: 3) is ≤ 60 edits, never repeats a text, says "longer than usual" and notifies once."""
    vc = VirtualClock()
    async with sim_bot(make_bot, vc, botapi) as rt:
        botapi.user_sends_text(ALICE, "/f an astronaut")
        first = await botapi.wait_for_text(ALICE, "⏳ queued")
        [job] = queue.list(user=str(ALICE))
        started = vc.now
        queue.set_status([job.id], JobStatus.WAKING, times={"cluster_requested_at": started})
        await run_for(vc, rt, 300, lambda: publish(queue, vc, started, usual=180.0))
        publish(queue, vc, started, usual=180.0, state="ready")
        leased = queue.lease("w")
        queue.heartbeat(job.id, leased.lease_token, progress=0.5)
        await run_for(vc, rt, 20)
        storage.put_bytes(f"outputs/{job.id}/0.png", PNG)
        queue.complete(job.id, leased.lease_token, outputs=[f"outputs/{job.id}/0.png"])
        await run_for(vc, rt, 10)
        await botapi.wait_for(lambda c: c.method == "sendPhoto")
    status = (ALICE, first.result["message_id"])
    edits = [c for c in botapi.calls_to("editMessageText", ok_only=False) if c.at <= started + 300]
    history = [first.params["text"], *botapi.edits[status]]
    assert 3 <= len(edits) <= 60
    assert all(a != b for a, b in itertools.pairwise(history))  # never the same text twice
    assert [c for c in botapi.calls if c.status == 400] == []  # no "message is not modified"
    assert any("taking longer than usual" in t for t in history)
    slow = [c for c in botapi.calls_to("sendMessage") if "longer than usual" in c.params["text"]]
    assert len(slow) == 1 and slow[0].at > started + 180  # once, and only past the estimate


async def test_group_with_four_cold_jobs_stays_under_twenty_a_minute(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """Four jobs waking together in a group: < 20 sends+edits in any minute; each result goes out on the next poll."""
    vc = VirtualClock()
    async with sim_bot(make_bot, vc, botapi) as rt:
        for user, prompt in ((ALICE, "a cat"), (ALICE, "a dog"), (BOB, "a fox"), (BOB, "an owl")):
            mark = botapi.mark()
            botapi.user_sends_text(user, f"/f {prompt}", chat_id=GROUP)
            await botapi.wait_for_text(GROUP, "⏳ queued", since=mark)
        jobs = list(reversed(queue.list()))
        started = vc.now
        queue.set_status(
            [j.id for j in jobs], JobStatus.WAKING, times={"cluster_requested_at": started}
        )
        await run_for(vc, rt, 150, lambda: publish(queue, vc, started, usual=120.0))
        done_at: dict[str, float] = {}
        for job in jobs:  # one GPU: the jobs run one after another, ~30 s each, 10% every 3 s
            publish(queue, vc, started, usual=120.0, state="ready")
            leased = queue.lease("w")
            assert leased is not None and leased.id == job.id
            for step in range(1, 10):
                queue.heartbeat(job.id, leased.lease_token, progress=step / 10)
                await run_for(vc, rt, 3)
            storage.put_bytes(f"outputs/{job.id}/0.png", PNG)
            queue.complete(job.id, leased.lease_token, outputs=[f"outputs/{job.id}/0.png"])
            done_at[job.id] = vc.now
        await run_for(vc, rt, 120)
    calls = sends_in(botapi.calls, GROUP)
    photos = [c for c in calls if c.method == "sendPhoto"]
    assert len(photos) == 4
    assert busiest_minute(calls) < GROUP_LIMIT
    for photo, job in zip(photos, jobs, strict=True):  # results are never held back by edits
        assert photo.at - done_at[job.id] <= 2.0


def test_pacer_spaces_edits_of_a_chatty_message() -> None:
    """Even a text that changes on every 2 s poll is edited at most every 5 s: ≤ 60 in 5 minutes."""
    vc = VirtualClock(0.0)
    pacer, last, edits = Pacer(vc), None, 0
    for _ in range(150):
        if pacer.may_edit(ALICE, last):
            pacer.record(ALICE)
            last, edits = vc.now, edits + 1
        vc.now += 2.0
    assert edits <= 60 and edits >= 50


def test_pacer_group_budget_and_bounded_memory() -> None:
    """A group with 10 sends in its last minute gets no optional edit; old sends are forgotten."""
    vc = VirtualClock(0.0)
    pacer = Pacer(vc)
    for _ in range(10):
        pacer.record(GROUP)
    assert not pacer.may_edit(GROUP, None)
    vc.now += 61
    pacer.record(GROUP)
    assert pacer.recent(GROUP) == 1 and pacer.may_edit(GROUP, None)
    pacer.record(ALICE)  # private chats keep no log at all
    assert pacer.recent(ALICE) == 0
