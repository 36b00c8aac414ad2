"""nomad.serve.jobs.submit: what the shell front door refuses before anything is queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad.errors import WorkflowError
from nomad.queue import open_queue
from nomad.serve.jobs import submit


def test_submit_refuses_unknown_workflow_and_bad_params(tmp_path: Path) -> None:
    """Unknown workflow, unknown option, a non-number step count: WorkflowError, nothing queued."""
    queue = open_queue(None, tmp_path)
    try:
        for name, params in [
            ("no_such_workflow", {"prompt": "x"}),
            ("flux_schnell", {"prompt": "x", "colour": "red"}),
            ("flux_schnell", {"prompt": "x", "steps": "abc"}),
        ]:
            with pytest.raises(WorkflowError):
                submit(queue, name, params, workflow_dirs=())
        assert queue.list() == []
        job = submit(queue, "flux_schnell", {"prompt": "x", "steps": 4}, workflow_dirs=())
        edit = submit(
            queue,
            "qwen_image_edit",
            {"prompt": "a hat"},
            inputs={"image": "inputs/abc.png"},
            workflow_dirs=(),
        )
        assert {j.id for j in queue.list()} == {job.id, edit.id}
    finally:
        queue.close()
