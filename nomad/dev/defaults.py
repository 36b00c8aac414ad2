"""Where storage and the registry are: nomad.yaml / env when set, else the embedded stack.

Every command that needs S3 or a registry calls these two functions, so
"no config" means "use `nomad dev`" everywhere, and a missing stack gives the
same clear message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nomad import privacy
from nomad.config.schema import NomadConfig
from nomad.dev.stack import Stack
from nomad.errors import StackError
from nomad.storage import S3Settings

__all__ = ["RegistrySettings", "S3Settings", "resolve_registry", "resolve_storage"]


@dataclass(frozen=True)
class RegistrySettings:
    """A registry to push to / pull from; ``s3`` is set when nomad holds its bucket's keys."""

    url: str
    repository: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    insecure: bool = False
    s3: S3Settings | None = None
    proxy: str | None = field(default=None, repr=False)  # privacy.legs.registry; None: direct

    def proxy_to(self, url: str, cfg: NomadConfig) -> str | None:
        """The proxy for a push/pull to ``url``: this registry's own route, or for another
        registry (a REF naming its host) the registry leg's."""
        import httpx

        a, b = httpx.URL(url), httpx.URL(self.url)
        if (a.host, a.port) == (b.host, b.port):
            return self.proxy
        from nomad import privacy

        return privacy.proxy_for(cfg.privacy, "registry")


def resolve_storage(cfg: NomadConfig, data_dir: Path) -> S3Settings:
    """The configured S3 endpoint, else the embedded stack's, else a StackError."""
    st = cfg.storage
    if st.endpoint_url:
        return S3Settings(
            endpoint_url=st.endpoint_url,
            region=st.region,
            bucket=st.bucket,
            registry_bucket=st.registry_bucket,
            access_key_id=st.access_key_id.get_secret_value() if st.access_key_id else None,
            secret_access_key=st.secret_access_key.get_secret_value()
            if st.secret_access_key
            else None,
            proxy=privacy.proxy_for(cfg.privacy, "s3"),
            proxy_deadline=cfg.privacy.connect_timeout,
        )
    info = Stack(data_dir).info()
    if info is None:
        raise StackError(
            f"no S3 storage configured and no embedded stack in {data_dir}",
            hint="run `nomad dev up` or set storage.endpoint_url (NOMAD_S3_ENDPOINT)",
        )
    settings: S3Settings = info.s3_settings()
    return settings


def resolve_registry(cfg: NomadConfig, data_dir: Path) -> RegistrySettings:
    """The configured registry, else the embedded one (plain HTTP on loopback, S3 keys known)."""
    reg = cfg.registry
    repository = reg.repository or cfg.project
    if reg.url:
        s3 = None
        if reg.direct_s3 and cfg.storage.endpoint_url and cfg.storage.access_key_id:
            s3 = resolve_storage(cfg, data_dir)
        url, user, password = _split_userinfo(reg.url.rstrip("/"))
        return RegistrySettings(
            url=url,
            repository=repository,
            username=reg.username or user,
            password=reg.password.get_secret_value() if reg.password else password,
            insecure=reg.insecure,
            s3=s3,
            proxy=privacy.proxy_for(cfg.privacy, "registry"),
        )
    info = Stack(data_dir).info()
    if info is None:
        raise StackError(
            f"no registry configured and no embedded stack in {data_dir}",
            hint="run `nomad dev up` or set registry.url (NOMAD_REGISTRY_URL)",
        )
    return RegistrySettings(
        url=info.registry_url, repository=repository, insecure=True, s3=info.s3_settings()
    )


def _split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``https://user:pass@host`` → (``https://host``, user, pass): the URL nomad prints and
    logs never carries credentials; they become the registry login instead."""
    import httpx

    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url, None, None
    clean = str(parsed.copy_with(username=None, password=None)).rstrip("/")
    return clean, parsed.username or None, parsed.password or None
