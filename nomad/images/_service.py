"""`nomad build` as one call the CLI, the bot or a script can make."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nomad import privacy
from nomad.config.schema import NomadConfig
from nomad.images._build import BuildResult, build_image, inputs_from_config
from nomad.images._disk import disk_full_is_clear
from nomad.images._dockerfile import DockerfileExport, export_dockerfile
from nomad.images._fetch import ModelCache, fetch_models
from nomad.images._lock import Lock, lock_path, order_models
from nomad.paths import cache_dir as default_cache_dir


def workflows_dir_for(config_dir: Path) -> Path | None:
    """The workflows folder baked in: next to nomad.yaml if there is one, else the built-in one."""
    from nomad.resources import workflows_dir

    for d in (config_dir / "workflows", workflows_dir()):
        if d.is_dir():
            return d
    return None


def build_from_config(
    cfg: NomadConfig,
    *,
    config_dir: Path,
    data_dir: Path,
    out: Path,
    tag: str | None = None,
    cache_dir: Path | None = None,
    parallel: int = 4,
    progress: Any = None,
    dockerfile_dir: Path | None = None,
    workflows_dir: Path | None = None,
    drop: Sequence[str] = (),
    relock: bool = False,
) -> tuple[BuildResult, DockerfileExport | None]:
    """Build the OCI layout (and optionally the Dockerfile export) described by nomad.yaml.

    The weight layer order comes from (and is written back to) ``nomad.lock`` next to
    nomad.yaml; it is saved only after the build succeeded.
    """
    cache = ModelCache(default_cache_dir(cache_dir))
    places = {"model cache": cache.root, "image layout": Path(out)}
    with disk_full_is_clear(f"building {out}", places):
        inputs = inputs_from_config(cfg, config_dir, workflows_dir or workflows_dir_for(config_dir))
        if tag:
            inputs.tag = tag
        s3 = (
            _s3_settings(cfg, data_dir)
            if any(m.source.startswith("s3://") for m in inputs.models)
            else None
        )
        lock = Lock.load(lock_path(config_dir))
        result = build_image(
            inputs, out, cache, parallel=parallel, progress=progress, s3_settings=s3,
            lock=lock, drop=drop, relock=relock,
            registry_proxy=privacy.proxy_for(cfg.privacy, "registry"),
            download_proxy=privacy.proxy_for(cfg.privacy, "downloads"),
        )  # fmt: skip
        lock.save()
        export = None
        if dockerfile_dir is not None:
            fetched = fetch_models(
                inputs.models, cache, base_dir=config_dir, s3_settings=s3,
                proxy=privacy.proxy_for(cfg.privacy, "downloads"),
            )  # fmt: skip
            fetched = order_models(fetched, lock)  # the same layer order as the OCI image
            export = export_dockerfile(
                inputs, fetched, dockerfile_dir, f"{cfg.project}:{inputs.tag}",
                base_digest=result.base_digest,
            )  # fmt: skip
        return result, export


def _s3_settings(cfg: NomadConfig, data_dir: Path) -> Any:
    from nomad.dev.defaults import resolve_storage

    return resolve_storage(cfg, data_dir)


def remember_repo(config_dir: Path, repository: str) -> None:
    """Record a pushed repository in nomad.lock (when there is one), for cross-repo mounts."""
    path = lock_path(config_dir)
    if not path.is_file():
        return
    lock = Lock.load(path)
    if lock.add_repo(repository):
        lock.save()


def locked_repos(config_dir: Path) -> list[str]:
    """Repositories nomad.lock says this project was pushed to."""
    return Lock.load(lock_path(config_dir)).repos
