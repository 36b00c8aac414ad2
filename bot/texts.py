"""Every sentence the bot says, in one catalogue (plain words, Telegram-sized).

Pure functions of jobs, configs and clocks: no I/O, no telegram import, so
they are cheap to test and to translate. ``CATALOGUE`` holds English and
German; :func:`lang_of` picks one from the user's Telegram ``language_code``
(anything else falls back to English). Operator wording (config keys, paths,
tracebacks) never reaches a chat: :func:`reason_of` maps the autoscaler's and
the worker's sentences to a reason a chat user understands; the original goes
to the log and to /stats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from nomad.errors import LimitExceeded, NomadError
from nomad.queue.base import Job, JobStatus

STALE_AFTER_S = 30.0  # an autoscaler status older than this: `nomad serve` is not running
MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
SLOW_FACTOR = 1.5  # a wake this many times its usual length is "taking longer than usual"
SLOW_WITHOUT_ESTIMATE_S = 600.0  # no history yet: after this long a wake counts as slow

CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        "welcome": "Hi! I make images and videos on a GPU that wakes up when you ask.\n"
        "Send /help to see what I can do.",
        "welcome_denied": "Hi! This bot runs on paid GPUs, so it only works for people on its "
        "allowlist.\nYour Telegram user id is {uid} — send it to the bot's admin to be added.",
        "not_allowed": "Sorry — this bot runs on paid GPUs and is limited to people on its "
        "allowlist. Nothing was queued. Your Telegram user id is {uid}; ask the admin to add it.",
        "help_head": "What I can do:",
        "help_line": "/{cmd} — {what}\n   e.g. /{cmd} {example}",
        "help_image": "makes an image",
        "help_edit": "edits a photo (send it with the command, or reply to it)",
        "help_video": "makes a short video",
        "ex_image": "an astronaut riding a horse --seed 42",
        "ex_edit": "put a red t-shirt on him",
        "ex_video": "a goose walking on a beach at sunset",
        "help_tail": "Options go in the message: --seed 42 --steps 8 (each command has its own).\n"
        "/status — the GPU, your jobs and their place in the queue\n"
        "/cancel [job id] — cancel your last job (or the one you name)\n"
        "/prefs --ar 16:9 — your default options (/prefs clear)",
        "help_none": "No commands are enabled on this bot yet — ask its admin.",
        "menu_image": "{what} — /{cmd} your prompt",
        "menu_edit": "{what} — reply to a photo: /{cmd} what to change",
        "menu_status": "the GPU, your jobs, your place in the queue",
        "menu_cancel": "cancel your last job",
        "menu_prefs": "your default options, e.g. --ar 16:9",
        "menu_help": "what I can do",
        "not_queued": "Not queued: {message}",
        "resets": " It resets at {stamp} (in {left}).",
        "unknown_command": "I don't know {command} — send /help for what I can do.",
        "plain_text": "To make something, start with a command, e.g. /{cmd} {example}. "
        "Send /help for everything I can do.",
        "media_hint": "To edit this image, send it with a caption like /{cmd} put a hat on him "
        "— or reply to it with that command.",
        "media_not_image": "I can only work with images. Send /help for what I can do.",
        "queued": "⏳ queued",
        "queued_pos": "⏳ queued #{pos}",
        "gpu_waking": "GPU waking",
        "gpu_waking_left": "GPU waking, ~{left}",
        "gpu_waking_soon": "GPU waking, less than a minute left",
        "gpu_waking_slow": "GPU waking — taking longer than usual (usually {usual})",
        "gpu_ready": "GPU ready",
        "gpu_asleep": "GPU asleep — it wakes when a job arrives",
        "gpu_unknown": "GPU state unknown — the server is not running",
        "gpu_none": "GPU: no news from the server yet",
        "gpu_stopping": "GPU shutting down",
        "gpu_blocked": "waiting: {reason}",
        "running": "⚙️ running",
        "running_pct": "⚙️ running · {pct}%",
        "finishing": "⬆️ finishing: saving and uploading the result…",
        "uploading": "⬆️ uploading the result…",
        "done": "✅ done",
        "done_in": "✅ done in {took}",
        "cancelled": "🚫 cancelled",
        "failed": "❌ failed",
        "head": "{workflow} · job {job}",
        "failed_msg": "❌ Your job {job} ({workflow}) failed: {reason}.\n{advice}",
        "cancelled_msg": "🚫 Your job {job} ({workflow}) was cancelled.",
        "wait_msg": "⏸ Your job {job} is waiting: {reason}. It stays in the queue and starts "
        "by itself; /cancel drops it.",
        "slow_msg": "🐢 The GPU for your job {job} is taking longer than usual to start "
        "({elapsed} so far). It stays in the queue — I'll send the result when it's ready; "
        "/cancel drops it.",
        "reason_budget": "today's GPU budget is used up (it resets at 00:00 UTC)",
        "reason_price": "GPUs cost more right now than this bot may pay; it waits for a "
        "cheaper one",
        "reason_launch": "starting a GPU failed; I'm retrying",
        "reason_capacity": "no GPU is available right now",
        "reason_oom": "the GPU ran out of memory",
        "reason_timeout": "it took too long",
        "reason_server": "the GPU server had a problem",
        "reason_input": "the input could not be used",
        "advice_oom": "Try a smaller size or fewer steps.",
        "advice_capacity": "Try again in a few minutes.",
        "advice_budget": "Try again later or ask the admin.",
        "advice_server": "Try again; if it keeps failing, tell the admin (job {job}).",
        "advice_input": "Try a different image or different options.",
        "status_queue": "Queue: {waiting} waiting · {running} running",
        "status_none": "You have no jobs in flight.",
        "cancel_none": "You have no {what} to cancel. /status lists your jobs.",
        "cancel_none_job": "job {job}",
        "cancel_none_any": "job in flight",
        "cancel_done": "Cancelled job {job} ({workflow}).",
        "admins_only": "That command is for the bot's admins.",
        "no_output": "Job {job} finished but produced no output.",
        "too_big_result": "The result is {mb} MB — over Telegram's 50 MB upload limit. "
        "Ask the admin for job {job}.",
        "prefs_shown": "Your default options: {shown}\n(used by commands that have them; "
        "what you type in a command wins)",
        "prefs_none": "none",
        "prefs_usage": "Usage: /prefs --ar 16:9 --steps 8 (defaults), /prefs clear",
        "prefs_unknown": "No command of mine has {names}. Options: {known}",
        "went_wrong": "Something went wrong on my side and nothing was queued. Please try again.",
        "btn_again": "♻️ again",
        "btn_variation": "🎲 variation",
        "btn_edit": "✏️ edit this",
        "btn_original": "📄 original file",
        "edit_ask": "What should I change? Reply to this message with the instruction, "
        "e.g. put a hat on him.",
        "button_gone": "That result is no longer available.",
        "button_queued": "Queued.",
        "slow_status": "⏳ still waiting",
    },
    "de": {
        "welcome": "Hallo! Ich mache Bilder und Videos auf einer GPU, die aufwacht, wenn du "
        "fragst.\nSchick /help, um zu sehen, was ich kann.",
        "welcome_denied": "Hallo! Dieser Bot läuft auf bezahlten GPUs und ist nur für Leute auf "
        "seiner Liste.\nDeine Telegram-ID ist {uid} — schick sie dem Admin des Bots.",
        "not_allowed": "Sorry — dieser Bot läuft auf bezahlten GPUs und ist nur für Leute auf "
        "seiner Liste. Nichts wurde eingereiht. Deine Telegram-ID ist {uid}; bitte den Admin, "
        "sie hinzuzufügen.",
        "help_head": "Das kann ich:",
        "help_line": "/{cmd} — {what}\n   z. B. /{cmd} {example}",
        "help_image": "macht ein Bild",
        "help_edit": "bearbeitet ein Foto (mit dem Befehl schicken oder darauf antworten)",
        "help_video": "macht ein kurzes Video",
        "ex_image": "ein Astronaut auf einem Pferd --seed 42",
        "ex_edit": "gib ihm ein rotes T-Shirt",
        "ex_video": "eine Gans am Strand bei Sonnenuntergang",
        "help_tail": "Optionen gehören in die Nachricht: --seed 42 --steps 8 (jeder Befehl hat "
        "eigene).\n/status — die GPU, deine Aufträge und ihr Platz in der Warteschlange\n"
        "/cancel [Auftrags-ID] — deinen letzten (oder den genannten) Auftrag abbrechen\n"
        "/prefs --ar 16:9 — deine Standard-Optionen (/prefs clear)",
        "help_none": "Auf diesem Bot ist noch kein Befehl aktiv — frag den Admin.",
        "menu_image": "{what} — /{cmd} deine Beschreibung",
        "menu_edit": "{what} — auf ein Foto antworten: /{cmd} was ändern",
        "menu_status": "die GPU, deine Aufträge, dein Platz in der Schlange",
        "menu_cancel": "deinen letzten Auftrag abbrechen",
        "menu_prefs": "deine Standard-Optionen, z. B. --ar 16:9",
        "menu_help": "was ich kann",
        "not_queued": "Nicht eingereiht: {message}",
        "resets": " Das Limit wird um {stamp} zurückgesetzt (in {left}).",
        "unknown_command": "{command} kenne ich nicht — schick /help für alles, was ich kann.",
        "plain_text": "Fang mit einem Befehl an, z. B. /{cmd} {example}. "
        "Schick /help für alles, was ich kann.",
        "media_hint": "Um dieses Bild zu bearbeiten, schick es mit einer Beschreibung wie "
        "/{cmd} setz ihm einen Hut auf — oder antworte darauf mit diesem Befehl.",
        "media_not_image": "Ich kann nur mit Bildern arbeiten. Schick /help für alles, was ich "
        "kann.",
        "queued": "⏳ eingereiht",
        "queued_pos": "⏳ eingereiht #{pos}",
        "gpu_waking": "GPU wacht auf",
        "gpu_waking_left": "GPU wacht auf, ~{left}",
        "gpu_waking_soon": "GPU wacht auf, weniger als eine Minute",
        "gpu_waking_slow": "GPU wacht auf — dauert länger als üblich (sonst {usual})",
        "gpu_ready": "GPU bereit",
        "gpu_asleep": "GPU schläft — sie wacht auf, wenn ein Auftrag kommt",
        "gpu_unknown": "GPU-Zustand unbekannt — der Server läuft nicht",
        "gpu_none": "GPU: noch keine Nachricht vom Server",
        "gpu_stopping": "GPU fährt herunter",
        "gpu_blocked": "wartet: {reason}",
        "running": "⚙️ läuft",
        "running_pct": "⚙️ läuft · {pct}%",
        "finishing": "⬆️ fast fertig: Ergebnis wird gespeichert und hochgeladen…",
        "uploading": "⬆️ Ergebnis wird hochgeladen…",
        "done": "✅ fertig",
        "done_in": "✅ fertig in {took}",
        "cancelled": "🚫 abgebrochen",
        "failed": "❌ fehlgeschlagen",
        "head": "{workflow} · Auftrag {job}",
        "failed_msg": "❌ Dein Auftrag {job} ({workflow}) ist fehlgeschlagen: {reason}.\n{advice}",
        "cancelled_msg": "🚫 Dein Auftrag {job} ({workflow}) wurde abgebrochen.",
        "wait_msg": "⏸ Dein Auftrag {job} wartet: {reason}. Er bleibt in der Schlange und "
        "startet von selbst; /cancel bricht ihn ab.",
        "slow_msg": "🐢 Die GPU für deinen Auftrag {job} braucht länger als üblich zum Starten "
        "({elapsed} bisher). Er bleibt in der Schlange — ich schicke das Ergebnis, sobald es "
        "da ist; /cancel bricht ihn ab.",
        "reason_budget": "das GPU-Budget für heute ist aufgebraucht (zurückgesetzt um 00:00 UTC)",
        "reason_price": "GPUs kosten gerade mehr, als dieser Bot zahlen darf; er wartet auf "
        "eine günstigere",
        "reason_launch": "der Start einer GPU ist fehlgeschlagen; ich versuche es erneut",
        "reason_capacity": "gerade ist keine GPU frei",
        "reason_oom": "der GPU ist der Speicher ausgegangen",
        "reason_timeout": "es hat zu lange gedauert",
        "reason_server": "der GPU-Server hatte ein Problem",
        "reason_input": "die Eingabe war nicht verwendbar",
        "advice_oom": "Versuch eine kleinere Größe oder weniger Schritte.",
        "advice_capacity": "Versuch es in ein paar Minuten noch einmal.",
        "advice_budget": "Versuch es später noch einmal oder frag den Admin.",
        "advice_server": "Versuch es noch einmal; wenn es weiter scheitert, sag dem Admin "
        "Bescheid (Auftrag {job}).",
        "advice_input": "Versuch ein anderes Bild oder andere Optionen.",
        "status_queue": "Schlange: {waiting} wartend · {running} laufend",
        "status_none": "Du hast keine laufenden Aufträge.",
        "cancel_none": "Du hast keinen {what} zum Abbrechen. /status zeigt deine Aufträge.",
        "cancel_none_job": "Auftrag {job}",
        "cancel_none_any": "laufenden Auftrag",
        "cancel_done": "Auftrag {job} ({workflow}) abgebrochen.",
        "admins_only": "Dieser Befehl ist für die Admins des Bots.",
        "no_output": "Auftrag {job} ist fertig, hat aber nichts erzeugt.",
        "too_big_result": "Das Ergebnis ist {mb} MB groß — über Telegrams Upload-Grenze von "
        "50 MB. Frag den Admin nach Auftrag {job}.",
        "prefs_shown": "Deine Standard-Optionen: {shown}\n(gelten für Befehle, die sie haben; "
        "was du im Befehl schreibst, gewinnt)",
        "prefs_none": "keine",
        "prefs_usage": "So geht's: /prefs --ar 16:9 --steps 8 (Standards), /prefs clear",
        "prefs_unknown": "Keiner meiner Befehle hat {names}. Optionen: {known}",
        "went_wrong": "Bei mir ist etwas schiefgegangen; nichts wurde eingereiht. Bitte noch "
        "einmal versuchen.",
        "btn_again": "♻️ nochmal",
        "btn_variation": "🎲 Variante",
        "btn_edit": "✏️ bearbeiten",
        "btn_original": "📄 Originaldatei",
        "edit_ask": "Was soll ich ändern? Antworte auf diese Nachricht mit der Anweisung, "
        "z. B. setz ihm einen Hut auf.",
        "button_gone": "Dieses Ergebnis ist nicht mehr verfügbar.",
        "button_queued": "Eingereiht.",
        "slow_status": "⏳ wartet noch",
    },
}
LANGUAGES = tuple(CATALOGUE)


def lang_of(code: str | None) -> str:
    """Telegram's ``language_code`` (``"de"``, ``"de-AT"``, None) ⇒ a catalogue language."""
    base = (code or "en").split("-", 1)[0].lower()
    return base if base in CATALOGUE else "en"


def t(lang: str, key: str, **values: Any) -> str:
    """One catalogue sentence in ``lang`` (English when that language lacks it)."""
    table = CATALOGUE.get(lang, CATALOGUE["en"])
    return table.get(key, CATALOGUE["en"][key]).format(**values)


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Fit Telegram's length limits without breaking mid-way silently (ends with …)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def welcome(user_id: int, allowed: bool, lang: str = "en") -> str:
    return t(lang, "welcome") if allowed else t(lang, "welcome_denied", uid=user_id)


def help_text(commands: Mapping[str, str], kinds: Mapping[str, str], lang: str = "en") -> str:
    """One line per enabled command with an example (kinds: command -> image|edit|video)."""
    if not commands:
        return t(lang, "help_none")
    lines = [t(lang, "help_head")]
    for cmd in sorted(commands):
        kind = kinds.get(cmd, "image")
        lines.append(
            t(lang, "help_line", cmd=cmd, what=t(lang, f"help_{kind}"), example=example(kind, lang))
        )
    lines += ["", t(lang, "help_tail")]
    return clip("\n".join(lines))


def example(kind: str, lang: str = "en") -> str:
    return t(lang, f"ex_{kind}" if kind in ("image", "edit", "video") else "ex_image")


def not_allowed(user_id: int, lang: str = "en") -> str:
    return t(lang, "not_allowed", uid=user_id)


def limit_text(exc: LimitExceeded, now: float, lang: str = "en") -> str:
    """Refusal that says when the quota resets."""
    when = ""
    if exc.resets_at is not None:
        stamp = time.strftime("%H:%M UTC", time.gmtime(exc.resets_at))
        when = t(lang, "resets", stamp=stamp, left=duration(max(0.0, exc.resets_at - now)))
    text = t(lang, "not_queued", message=f"{exc.message.rstrip('.')}.{when}")
    if exc.hint and not when:
        text += f"\n→ {exc.hint}"
    return text


def error_text(exc: NomadError, lang: str = "en") -> str:
    """A NomadError as a polite reply: what is wrong, then what to do."""
    text = t(lang, "not_queued", message=exc.message)
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


def coarse(seconds: float) -> str:
    """A countdown that changes once a minute, not every poll: ``150`` ⇒ "3 min"."""
    return f"{max(1, math.ceil(seconds / 60))} min"


def reason_of(text: str | None) -> str:
    """Map an operator sentence (autoscaler detail, worker error) to a reason key."""
    low = (text or "").lower()
    if "out of memory" in low or "oom" in low.split():
        return "oom"
    if "budget" in low:
        return "budget"
    if "price" in low:
        return "price"
    if "capacity" in low or "no offer" in low or "unavailable" in low:
        return "capacity"
    if "launch" in low or "retrying" in low:
        return "launch"
    if "timed out" in low or "timeout" in low:
        return "timeout"
    if "not an image" in low or "invalid image" in low or "cannot identify image" in low:
        return "input"
    return "server"


_ADVICE = {
    "oom": "advice_oom",
    "capacity": "advice_capacity",
    "budget": "advice_budget",
    "price": "advice_budget",
    "input": "advice_input",
}


def blocked_reason(cluster: Mapping[str, Any] | None, job: Job | None) -> str | None:
    """Why waiting jobs cannot get a GPU (budget, price cap, launch retry), as a reason key."""
    for text in (job.detail if job else None, (cluster or {}).get("detail")):
        if isinstance(text, str) and text.lower().startswith("waiting"):
            return reason_of(text)
    return None


def cluster_line(
    state: Mapping[str, Any] | None, now: float, lang: str = "en", job: Job | None = None
) -> str | None:
    """ "GPU waking, ~N min" / "GPU ready" / "GPU asleep" / "waiting: …" from the autoscaler's state."""
    if not state:
        return None
    updated = state.get("updated_at")
    if isinstance(updated, int | float) and now - updated > STALE_AFTER_S:
        return t(lang, "gpu_unknown")
    blocked = blocked_reason(state, job)
    if blocked is not None:
        return t(lang, "gpu_blocked", reason=t(lang, f"reason_{blocked}"))
    phase = _phase(state)
    if phase in _WAKING:
        return _waking_line(state, now, lang, job)
    if phase in ("ready", "up", "running", "warm"):
        return t(lang, "gpu_ready")
    if phase in ("cold", "down", "idle", "stopped", "none", "off"):
        return t(lang, "gpu_asleep")
    if phase in ("stopping", "draining", "tearing_down"):
        return t(lang, "gpu_stopping")
    return None


_WAKING = ("waking", "launching", "starting", "provisioning", "up_requested")


def _phase(state: Mapping[str, Any] | None) -> str:
    return str((state or {}).get("state") or (state or {}).get("phase") or "").lower()


def wake_elapsed(state: Mapping[str, Any] | None, job: Job | None, now: float) -> float | None:
    """Seconds since the wake this job waits for began (job's own record, else the clusters')."""
    started = job.times.get("cluster_requested_at") if job else None
    if started is None and state:
        asked = [
            float(c["requested_at"])
            for c in state.get("clusters") or []
            if isinstance(c, dict) and isinstance(c.get("requested_at"), int | float)
        ]
        started = min(asked) if asked else None
    return None if started is None else max(0.0, now - float(started))


def wake_usual(state: Mapping[str, Any] | None) -> float | None:
    """The usual (median) cold start the autoscaler learned, if any."""
    usual = (state or {}).get("cold_start_median_s")
    return float(usual) if isinstance(usual, int | float) and usual > 0 else None


def wake_is_slow(state: Mapping[str, Any] | None, job: Job | None, now: float) -> bool:
    """Past the estimate by a margin: worth an honest "taking longer than usual"."""
    if _phase(state) not in _WAKING:
        return False  # the GPU is up: a job still waiting is behind others, not behind a wake
    elapsed = wake_elapsed(state, job, now)
    if elapsed is None:
        return False
    usual = wake_usual(state)
    return elapsed > (usual * SLOW_FACTOR if usual is not None else SLOW_WITHOUT_ESTIMATE_S)


def _waking_line(state: Mapping[str, Any], now: float, lang: str, job: Job | None) -> str:
    usual = wake_usual(state)
    elapsed = wake_elapsed(state, job, now)
    if usual is not None and elapsed is not None:
        if elapsed > usual:
            return t(lang, "gpu_waking_slow", usual=coarse(usual))
        left: float | None = usual - elapsed
    else:
        left = _eta(state, now)
    if left is None:
        return t(lang, "gpu_waking")
    if left < 60:
        return t(lang, "gpu_waking_soon")
    return t(lang, "gpu_waking_left", left=coarse(left))


def _eta(state: Mapping[str, Any], now: float) -> float | None:
    for key in ("eta_seconds", "eta_s", "eta"):
        if isinstance(state.get(key), int | float):
            return float(state[key])
    for key in ("ready_at", "eta_at"):
        if isinstance(state.get(key), int | float):
            return max(0.0, float(state[key]) - now)
    return None


def status_text(
    job: Job,
    position: int | None,
    cluster: Mapping[str, Any] | None,
    now: float,
    lang: str = "en",
) -> str:
    """The live status message of one job (coarse on purpose: it is edited, not re-sent)."""
    head = t(lang, "head", workflow=job.workflow, job=short(job.id))
    if job.status in (JobStatus.QUEUED, JobStatus.WAKING):
        parts = [t(lang, "queued_pos", pos=position) if position else t(lang, "queued")]
        line = cluster_line(cluster, now, lang, job)
        if job.status is JobStatus.WAKING and (line is None or line == t(lang, "gpu_ready")):
            line = t(lang, "gpu_waking")
        if line and line != t(lang, "gpu_ready"):
            parts.append(line)
        return f"{' · '.join(parts)}\n{head}"
    if job.status is JobStatus.RUNNING:
        if "executed_at" in job.times:
            return f"{t(lang, 'uploading')}\n{head}"
        if job.progress is not None and job.progress >= 0.999:  # sampler done; decode + upload left
            return f"{t(lang, 'finishing')}\n{head}"
        if job.progress is None:
            return f"{t(lang, 'running')}\n{head}"
        return f"{t(lang, 'running_pct', pct=math.floor(job.progress * 10) * 10)}\n{head}"
    if job.status is JobStatus.SUCCEEDED:
        if "queued_at" in job.times and "finished_at" in job.times:
            took = duration(job.times["finished_at"] - job.times["queued_at"])
            return f"{t(lang, 'done_in', took=took)}\n{head}"
        return f"{t(lang, 'done')}\n{head}"
    if job.status is JobStatus.CANCELLED:
        return f"{t(lang, 'cancelled')}\n{head}"
    return f"{t(lang, 'failed')}\n{head}"


def failure_text(job: Job, lang: str = "en") -> str:
    """A failed job as a new message: a reason a chat user understands, and what to try.

    The worker's own error (paths, config keys, tracebacks) is for the
    operator: the tracker logs it and /stats shows it to admins.
    """
    reason = reason_of(job.error)
    advice = t(lang, _ADVICE.get(reason, "advice_server"), job=short(job.id))
    return clip(
        t(
            lang,
            "failed_msg",
            job=short(job.id),
            workflow=job.workflow,
            reason=t(lang, f"reason_{reason}"),
            advice=advice,
        )
    )


def caption(prompt: str, seed: int | None, workflow: str) -> str:
    """Result caption: the prompt and the seed (to reproduce), ≤ 1024 chars."""
    tail = f"\n{workflow}" + (f" · seed {seed}" if seed is not None else "")
    room = CAPTION_LIMIT - len(tail)
    body = prompt if len(prompt) <= room else prompt[: room - 1] + "…"
    return body + tail


def short(job_id: str) -> str:
    return job_id[:8]
