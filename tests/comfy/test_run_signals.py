"""`nomad run` killed with SIGTERM or SIGHUP interrupts its prompt on ComfyUI before exiting.

The run is a real `nomad` process; FakeComfy (a ComfyUI protocol double, in a
thread) holds the sampler at step 1 so the kill lands mid-prompt, without timing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nomad.testing.comfy import FakeComfy
from nomad.testing.wait import eventually

NOMAD = str(Path(sys.executable).with_name("nomad"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_interrupts_the_running_prompt(sig: signal.Signals, tmp_path: Path) -> None:
    """The prompt is interrupted (by id) and dropped; exit code is 128+N; nothing is saved."""
    fc = FakeComfy.start_in_thread(hold_at_step=1, hold_timeout=600)
    proc = subprocess.Popen(
        [NOMAD, "--data-dir", str(tmp_path / "d"), "run", "flux_schnell", "--endpoint", fc.url,
         "--out", str(tmp_path / "o"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        eventually(lambda: fc.held, timeout=60, interval=0.05, what="the sampler to hold")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        eventually(lambda: fc.history, timeout=30, interval=0.05, what="the prompt to end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        fc.stop()
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {sig.name}" in err
    (prompt_id,) = fc.history
    assert prompt_id in fc.interrupts
    messages = [m[0] for m in fc.history[prompt_id]["status"]["messages"]]
    assert messages[-1] == "execution_interrupted"
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
