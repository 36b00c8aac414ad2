"""Could SkyPilot reach any cloud from here? A millisecond answer, before SkyPilot is asked.

Asking SkyPilot (``sky check``) takes 30 to 45 s on a machine with no cloud
account, only to say there is none. Every cloud SkyPilot supports reads its
credentials from an environment variable or a file in the home directory, so
their absence is visible at once; then ``nomad plan``/``up`` fail immediately
with the three ways forward instead of making the user wait.

Credentials that need no file — an instance role on a cloud VM, a remote
SkyPilot API server — are not ruled out: on a cloud VM (DMI vendor) or with
an API server configured, the slow path runs as before.
"""

from __future__ import annotations

import os
from pathlib import Path

from nomad.errors import NoCloudAccessError

__all__ = ["credential_sources", "no_cloud_hint", "require_cloud_credentials"]

# cloud -> (environment variables, files under $HOME) that hold its credentials for SkyPilot
_SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aws": (
        (
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ),
        (".aws/credentials", ".aws/config"),
    ),
    "gcp": (
        ("GOOGLE_APPLICATION_CREDENTIALS",),
        (".config/gcloud/application_default_credentials.json", ".config/gcloud/credentials.db"),
    ),
    "azure": (("AZURE_CLIENT_ID",), (".azure/msal_token_cache.json", ".azure/azureProfile.json")),
    "kubernetes": (("KUBECONFIG",), (".kube/config",)),
    "ssh": ((), (".sky/ssh_node_pools.yaml",)),
    "lambda": ((), (".lambda_cloud/lambda_keys",)),
    "runpod": (("RUNPOD_API_KEY",), (".runpod/config.toml",)),
    "vast": (("VAST_API_KEY",), (".vast_api_key", ".config/vastai/vast_api_key")),
    "fluidstack": ((), (".fluidstack/api_key",)),
    "paperspace": ((), (".paperspace/config.json",)),
    "cudo": ((), (".config/cudo/cudo.yml",)),
    "do": (("DIGITALOCEAN_ACCESS_TOKEN",), (".config/doctl/config.yaml",)),
    "oci": ((), (".oci/config",)),
    "ibm": ((), (".ibm/credentials.yaml",)),
    "nebius": ((), (".nebius/credentials.json",)),
    "scp": ((), (".scp/scp_credential",)),
    "vsphere": ((), (".vsphere/credential.yaml",)),
    "hyperbolic": ((), (".hyperbolic/api_key",)),
    "skypilot api server": (("SKYPILOT_API_SERVER_ENDPOINT",), (".sky/config.yaml",)),
}
_CLOUD_VENDORS = ("amazon", "google", "microsoft", "oracle", "alibaba", "digitalocean")


def credential_sources(home: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
    """Where cloud credentials were found (``cloud: source``); empty means none at all."""
    home = home if home is not None else Path.home()
    env = env if env is not None else dict(os.environ)
    found = []
    for cloud, (variables, files) in _SOURCES.items():
        found += [f"{cloud}: ${v}" for v in variables if env.get(v)]
        found += [f"{cloud}: ~/{f}" for f in files if (home / f).is_file()]
    return found


def _on_cloud_vm() -> bool:
    """A cloud VM may hold an instance role with no file anywhere (DMI says who made the 'hardware')."""
    for name in ("sys_vendor", "board_vendor", "bios_vendor"):
        try:
            vendor = Path(f"/sys/class/dmi/id/{name}").read_text().lower()
        except OSError:
            continue
        if any(v in vendor for v in _CLOUD_VENDORS):
            return True
    return False


def no_cloud_hint() -> str:
    """The three ways forward, naming the shipped catalog snapshot's real path."""
    from nomad.resources import catalog_dir

    try:
        catalog = str(catalog_dir())
    except Exception:  # a broken install still gets the other two ways
        catalog = "DIR (a SkyPilot catalog snapshot)"
    return (
        "three ways forward: (1) add credentials for a cloud, then run `sky check`; "
        f"(2) plan offline from the catalog snapshot nomad ships: --catalog {catalog}; "
        "(3) use a GPU you already have: infra.backend: local (this machine) or ssh (a rented box)"
    )


def require_cloud_credentials(home: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Raise :class:`NoCloudAccessError` at once when no cloud could possibly be enabled."""
    if credential_sources(home, env) or _on_cloud_vm():
        return
    raise NoCloudAccessError(
        "no cloud credentials found for SkyPilot (no AWS, GCP, Azure, Kubernetes, Lambda, "
        "RunPod, Vast… keys in the environment or your home directory)",
        hint=no_cloud_hint(),
    )
