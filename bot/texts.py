"""Every sentence the bot says, in one place (plain words, Telegram-sized).

Pure functions of jobs, configs and clocks: no I/O, no telegram import, so
they are cheap to test and to translate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from nomad.errors import LimitExceeded, NomadError
from nomad.queue.base import Job, JobStatus

STALE_AFTER_S = 30.0  # an autoscaler status older than this: `nomad serve` is not running
MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024

_EXAMPLES = {
    "image": "an astronaut riding a horse --seed 42",
    "edit": "put a red t-shirt on him (reply to a photo, or send a photo with this caption)",
    "video": "a goose walking on a beach at sunset",
}


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Fit Telegram's length limits without breaking mid-way silently (ends with …)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def welcome(user_id: int, allowed: bool) -> str:
    if allowed:
        return (
            "Hi! I make images and videos on a GPU that wakes up when you ask.\n"
            "Send /help to see what I can do."
        )
    return (
        "Hi! This bot runs on paid GPUs, so it only works for people on its allowlist.\n"
        f"Your Telegram user id is {user_id} — send it to the bot's admin to be added."
    )


def help_text(commands: Mapping[str, str], kinds: Mapping[str, str]) -> str:
    """One line per configured command with an example (kinds: workflow -> image|edit|video)."""
    lines = ["What I can do:"]
    for cmd, workflow in sorted(commands.items()):
        kind = kinds.get(workflow, "image")
        example = _EXAMPLES.get(kind, _EXAMPLES["image"])
        lines.append(f"/{cmd} — {workflow} ({kind})\n   e.g. /{cmd} {example}")
    lines += [
        "",
        "Options go in the message: --seed 42 --steps 8 (each workflow lists its own).",
        "/status — the GPU, your jobs and their place in the queue",
        "/cancel [job id] — cancel your last job (or the one you name)",
        "/prefs --ar 16:9 — your default options (/prefs clear)",
    ]
    return clip("\n".join(lines))


def not_allowed(user_id: int) -> str:
    return (
        "Sorry — this bot runs on paid GPUs and is limited to people on its allowlist. "
        f"Nothing was queued. Your Telegram user id is {user_id}; ask the admin to add it."
    )


def limit_text(exc: LimitExceeded, now: float) -> str:
    """Refusal that says when the quota resets."""
    when = ""
    if exc.resets_at is not None:
        stamp = time.strftime("%H:%M UTC", time.gmtime(exc.resets_at))
        when = f" It resets at {stamp} (in {duration(max(0.0, exc.resets_at - now))})."
    text = f"Not queued: {exc.message.rstrip('.')}.{when}"
    if exc.hint and not when:
        text += f"\n→ {exc.hint}"
    return text


def error_text(exc: NomadError) -> str:
    """A NomadError as a polite reply: what is wrong, then what to do."""
    text = f"Not queued: {exc.message}"
    if exc.hint:
        text += f"\n→ {exc.hint}"
    return clip(text)


def duration(seconds: float) -> str:
    """``75`` ⇒ "1 min 15 s"; ``7300`` ⇒ "2 h 1 min"."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def cluster_line(state: Mapping[str, Any] | None, now: float) -> str | None:
    """ "GPU waking, ~N s" / "GPU ready" / "GPU asleep" from the autoscaler's published state."""
    if not state:
        return None
    updated = state.get("updated_at")
    if isinstance(updated, int | float) and now - updated > STALE_AFTER_S:
        return "GPU state unknown — `nomad serve` is not running"
    phase = str(state.get("state") or state.get("phase") or "").lower()
    eta = _eta(state, now)
    if phase in ("waking", "launching", "starting", "provisioning", "up_requested"):
        return f"GPU waking, ~{duration(eta)}" if eta is not None else "GPU waking"
    if phase in ("ready", "up", "running", "warm"):
        return "GPU ready"
    if phase in ("cold", "down", "idle", "stopped", "none", "off"):
        return "GPU asleep — it wakes when a job arrives"
    if phase in ("stopping", "draining", "tearing_down"):
        return "GPU shutting down"
    return f"GPU {phase}" if phase else None


def _eta(state: Mapping[str, Any], now: float) -> float | None:
    for key in ("eta_seconds", "eta_s", "eta"):
        if isinstance(state.get(key), int | float):
            return float(state[key])
    for key in ("ready_at", "eta_at"):
        if isinstance(state.get(key), int | float):
            return max(0.0, float(state[key]) - now)
    return None


def status_text(
    job: Job, position: int | None, cluster: Mapping[str, Any] | None, now: float
) -> str:
    """The live status message of one job."""
    head = f"{job.workflow} · job {short(job.id)}"
    if job.status in (JobStatus.QUEUED, JobStatus.WAKING):
        parts = [f"⏳ queued #{position}" if position else "⏳ queued"]
        line = cluster_line(cluster, now)
        if job.status is JobStatus.WAKING and (line is None or "waking" not in line):
            line = "GPU waking"
        if job.detail:  # the autoscaler's own words for this job (e.g. "waking a GPU (~90 s)")
            line = job.detail
        if line and "ready" not in line:
            parts.append(line)
        return f"{' · '.join(parts)}\n{head}"
    if job.status is JobStatus.RUNNING:
        if "executed_at" in job.times:
            return f"⬆️ uploading the result…\n{head}"
        if job.progress is not None and job.progress >= 0.999:  # sampler done; decode + upload left
            return f"⬆️ finishing: saving and uploading the result…\n{head}"
        pct = f" · {round((job.progress or 0) * 100)}%" if job.progress is not None else ""
        return f"⚙️ running{pct}\n{head}"
    if job.status is JobStatus.SUCCEEDED:
        took = ""
        if "queued_at" in job.times and "finished_at" in job.times:
            took = f" in {duration(job.times['finished_at'] - job.times['queued_at'])}"
        return f"✅ done{took}\n{head}"
    if job.status is JobStatus.CANCELLED:
        return f"🚫 cancelled\n{head}"
    return clip(failure_text(job))


def failure_text(job: Job) -> str:
    """A failed job explained in plain words, with what to try."""
    error = (job.error or "unknown error").strip().splitlines()[0]
    low = error.lower()
    if "out of memory" in low or "oom" in low:
        advice = "The GPU ran out of memory. Try a smaller size or fewer steps."
    elif "budget" in low or "price" in low:
        advice = "The deployment's spending limit stopped it. Try again later or ask the admin."
    elif "capacity" in low:
        advice = "No GPU was available. Try again in a few minutes."
    else:
        advice = "Try again; if it keeps failing, try different options or tell the admin."
    return clip(f"❌ job {short(job.id)} failed: {error}\n{advice}")


def caption(prompt: str, seed: int | None, workflow: str) -> str:
    """Result caption: the prompt and the seed (to reproduce), ≤ 1024 chars."""
    tail = f"\n{workflow}" + (f" · seed {seed}" if seed is not None else "")
    room = CAPTION_LIMIT - len(tail)
    body = prompt if len(prompt) <= room else prompt[: room - 1] + "…"
    return body + tail


def short(job_id: str) -> str:
    return job_id[:8]
