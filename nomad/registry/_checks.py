"""`nomad registry check`: does the registry answer, and can we reach its bucket?"""

from __future__ import annotations

from pathlib import Path

from nomad.config.schema import NomadConfig
from nomad.registry._client import RegistryClient


def check_registry(
    cfg: NomadConfig, data_dir: Path, *, create_bucket: bool = False
) -> dict[str, str]:
    """A name -> 'ok …' map; raises the first NomadError met (registry down, bad keys)."""
    from nomad.dev.defaults import resolve_registry
    from nomad.storage import Storage

    reg = resolve_registry(cfg, data_dir)
    report: dict[str, str] = {}
    with RegistryClient(
        reg.url,
        username=reg.username,
        password=reg.password,
        verify=not reg.insecure,
        proxy=reg.proxy,
    ) as client:
        client.ping()
    report["registry"] = f"ok {reg.url} (/v2/ answers)"
    if reg.s3 is not None:
        store = Storage(reg.s3, reg.s3.registry_bucket)
        if create_bucket:
            store.ensure_bucket()
        store.list("docker/registry/v2/repositories/")
        report["bucket"] = f"ok {reg.s3.registry_bucket} at {reg.s3.endpoint_url or 'AWS'}"
    else:
        report["bucket"] = "skipped (nomad holds no keys for the registry's bucket)"
    return report
