"""Build the web front door's dependencies from the config (queue, S3, workflows)."""

from __future__ import annotations

from pathlib import Path

from nomad import privacy
from nomad.config.schema import NomadConfig
from nomad.web.app import WebDeps


def build_deps(cfg: NomadConfig, data_dir: Path, extra_tokens: list[str] | None = None) -> WebDeps:
    """Real pieces: the configured queue, the outputs bucket, the workflow library."""
    from nomad.dev.defaults import resolve_storage
    from nomad.queue import open_queue
    from nomad.storage import Storage
    from nomad.workflows import list_workflows, load_workflow

    dirs = tuple(cfg.workflows.dirs)
    names = (
        cfg.web.workflows
        or cfg.workflows.enabled
        or [w.name for w in list_workflows(dirs) if w.error is None]  # broken ones: not offered
    )
    tokens = [t.get_secret_value() for t in cfg.web.tokens] + list(extra_tokens or [])
    return WebDeps(
        config=cfg.web,
        queue=open_queue(cfg, data_dir),
        storage=Storage(resolve_storage(cfg, data_dir)),
        load_workflow=lambda name: load_workflow(name, dirs),
        workflow_names=list(names),
        tokens=tokens,
        webhooks=cfg.webhooks,
        privacy=cfg.privacy.enabled,
        direct_webhooks=cfg.privacy.enabled and "webhooks" in privacy.direct_legs(cfg.privacy),
    )
