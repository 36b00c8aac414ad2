"""Build the SkyPilot task for a :class:`LaunchSpec` from the YAML template in ``sky/``.

:func:`build_task_config` is pure Python (no ``sky`` import) so it is cheap to
test and to print; :func:`to_sky_task` hands the result to SkyPilot's own
validator (``sky.Task.from_yaml_config``), so a task nomad generates is one
SkyPilot accepts: docker login secrets, autostop, ports and all.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from nomad.backends.base import LaunchSpec, Offer
from nomad.errors import BackendError, ConfigError, UsageError

DEFAULT_TEMPLATE = "comfyui.yaml"
MIN_DISK_GB = 50
WATCHDOG_REMOTE = "~/.nomad/watchdog.py"
DOCKER_SECRETS = ("SKYPILOT_DOCKER_USERNAME", "SKYPILOT_DOCKER_PASSWORD", "SKYPILOT_DOCKER_SERVER")
# fetched mode: the run script logs the host's engine in and `nomad node pull`s with these
NODE_SECRETS = ("NOMAD_REGISTRY_USERNAME", "NOMAD_REGISTRY_PASSWORD", "NOMAD_REGISTRY_SERVER")
NODE_PKG_REMOTE = "~/.nomad/pkg/nomad"


def template_path(name: str = DEFAULT_TEMPLATE) -> Path:
    """A shipped template (the repo's ``sky/``, package data) or an explicit path."""
    from nomad.resources import sky_template

    p = Path(name)
    return p if p.is_absolute() or p.exists() else sky_template(name)


def load_template(path: Path | None = None) -> dict[str, Any]:
    """Parse a task template; it must be a mapping with a ``run`` script."""
    path = path or template_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"SkyPilot task template {path} not found", hint="restore sky/comfyui.yaml"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict) or not data.get("run"):
        raise ConfigError(
            f"{path}: a task template needs a `run:` script", hint="see sky/comfyui.yaml"
        )
    return data


def watchdog_source() -> Path:
    """The local path of :mod:`nomad.watchdog` (uploaded to the node by SkyPilot)."""
    from nomad import watchdog

    return Path(watchdog.__file__).resolve()


def disk_gb_for_image(size_bytes: int | None) -> int:
    """Disk to ask for: the pulled image twice over (layers + extracted) plus headroom."""
    if not size_bytes:
        return MIN_DISK_GB
    return max(MIN_DISK_GB, math.ceil(2 * size_bytes / 1e9) + 30)


def docker_image_id(image_ref: str) -> str:
    """``docker:REGISTRY/REPO@sha256:…``; refuses refs that are not pinned by digest."""
    ref = image_ref.removeprefix("docker:")
    if "@sha256:" not in ref:
        raise UsageError(
            f"image {image_ref!r} is not pinned by digest",
            hint="push first (`nomad push`) so nomad launches REGISTRY/REPO@sha256:…",
        )
    return f"docker:{ref}"


def build_task_config(
    spec: LaunchSpec, *, offer: Offer | None = None, template: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The task as a SkyPilot YAML mapping; ``offer`` pins cloud/region/instance/GPU."""
    cfg = copy.deepcopy(template if template is not None else load_template())
    mode = weights_mode(spec, offer)
    resources = dict(cfg.get("resources") or {})
    resources.update(_resources(spec, offer))
    if mode == "fetched":  # the VM itself runs the script: docker + nomad node pull on the host
        resources.pop("image_id")
    cfg["resources"] = resources
    cfg["envs"] = {
        **{k: str(v) for k, v in (cfg.get("envs") or {}).items()},
        "NOMAD_COMFY_PORT": str(spec.comfy_port),
        "NOMAD_IDLE_MINUTES": _num(spec.idle_minutes),
        **spec.envs,
        "NOMAD_WEIGHTS_MODE": mode,
    }
    # ship the stdlib-only watchdog with the task, so any runtime image can run it
    cfg["file_mounts"] = {**(cfg.get("file_mounts") or {}), WATCHDOG_REMOTE: str(watchdog_source())}
    secrets = _docker_secrets(spec)
    if mode == "fetched":
        cfg["envs"].update(_fetched_envs(spec))
        cfg["file_mounts"][NODE_PKG_REMOTE] = str(_nomad_package_dir())
        secrets = dict(zip(NODE_SECRETS, secrets.values(), strict=True)) if secrets else {}
    if secrets:
        cfg["secrets"] = {**(cfg.get("secrets") or {}), **secrets}
    if spec.hidden is not None:
        _hidden_service(cfg, spec)
    return cfg


def _hidden_service(cfg: dict[str, Any], spec: LaunchSpec) -> None:
    """privacy.node: the run script publishes each ComfyUI as a hidden service and the node
    opens no port. Keys (made and kept by nomad, so the address is stable) and the client's
    extra lines, plus a static binary when one is shipped, go to the node as a file mount."""
    from nomad.privacy.node import SHIP_REMOTE

    hidden = spec.hidden
    count = max(spec.gpu_count, 1)
    folder = hidden.ship_folder(spec.cluster_name, count)
    cfg["file_mounts"][SHIP_REMOTE] = str(folder)
    cfg["resources"].pop("ports", None)  # ComfyUI listens on loopback; nothing to open
    cfg["envs"].update(
        {
            "NOMAD_HS": "1",
            "NOMAD_HS_CLIENT": hidden.client,
            "NOMAD_HS_BIN": hidden.binary,
            "NOMAD_HS_PORT": str(hidden.port),
        }
    )


def weights_mode(spec: LaunchSpec, offer: Offer | None) -> str:
    """baked or fetched for this launch (``NOMAD_WEIGHTS_MODE`` in spec.envs; docs/cold-start.md).

    auto fetches only when every candidate cloud gives nomad a host and the
    slim image (``NOMAD_BASE_IMAGE``) is known; otherwise the image is baked.
    """
    from nomad.node import FETCHED, weights_mode_for

    requested = spec.envs.get("NOMAD_WEIGHTS_MODE", "auto")
    clouds = (
        [offer.cloud] if offer is not None and offer.cloud not in ("", "any") else list(spec.clouds)
    )
    if offer is None and spec.any_of:
        clouds = sorted({o.cloud for o in spec.any_of})
    mode = weights_mode_for(clouds, requested)
    if mode == FETCHED and not spec.envs.get("NOMAD_BASE_IMAGE"):
        if requested == FETCHED:
            raise ConfigError(
                "weights mode 'fetched' needs the slim image the engine pulls",
                hint="run `nomad node slim REF` and set node.base_image to what it prints",
            )
        return "baked"
    return mode


def _fetched_envs(spec: LaunchSpec) -> dict[str, str]:
    import importlib.metadata

    docker_image_id(spec.image_ref)  # pinned by digest, same rule as baked
    docker_image_id(spec.envs["NOMAD_BASE_IMAGE"])
    try:  # core requirements only (no extras): what `nomad node pull` imports on the node
        from nomad.resources import DISTRIBUTION

        reqs = [r for r in importlib.metadata.requires(DISTRIBUTION) or [] if "extra ==" not in r]
    except importlib.metadata.PackageNotFoundError:
        reqs = [
            "httpx>=0.27",
            "click>=8.1",
            "rich>=13",
            "pydantic>=2.7",
            "PyYAML>=6.0",
            "boto3>=1.34",
        ]
    return {
        "NOMAD_IMAGE": spec.image_ref.removeprefix("docker:"),
        "NOMAD_BASE_IMAGE": spec.envs["NOMAD_BASE_IMAGE"].removeprefix("docker:"),
        "NOMAD_NODE_DEPS": " ".join(f"'{r}'" for r in reqs),
    }


def _nomad_package_dir() -> Path:
    """This nomad package's folder (synced to the node; its deps are pip-installed there)."""
    import nomad.node

    return Path(nomad.node.__file__).resolve().parents[1]


def to_sky_task(config: dict[str, Any]) -> Any:
    """``sky.Task.from_yaml_config`` with SkyPilot's errors turned into BackendError."""
    from nomad.backends.skypilot._import import import_sky

    sky = import_sky()
    try:
        return sky.Task.from_yaml_config(copy.deepcopy(config))
    except Exception as exc:  # sky raises ValueError / jsonschema errors / its own
        raise BackendError(
            f"SkyPilot rejected the generated task: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            hint="check infra settings and sky/comfyui.yaml",
        ) from exc


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """The config with secret values masked, for printing (`nomad up --dry-run`)."""
    out = copy.deepcopy(config)
    if out.get("secrets"):
        out["secrets"] = {k: "***" for k in out["secrets"]}
    return out


def _resources(spec: LaunchSpec, offer: Offer | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "image_id": docker_image_id(spec.image_ref),
        "accelerators": _accelerators(spec, offer),
        "use_spot": offer.spot if offer else spec.spot,
        "disk_size": spec.disk_gb or MIN_DISK_GB,
        "ports": [_ports(spec)],
        "autostop": {"idle_minutes": max(1, math.ceil(spec.idle_minutes)), "down": True},
    }
    if offer is not None and offer.cloud not in ("", "any"):
        res["infra"] = "/".join(p for p in (offer.cloud, offer.region) if p)
        if offer.instance_type:
            res["instance_type"] = offer.instance_type
    elif offer is None and spec.any_of:  # wide failover: SkyPilot tries each, all within the cap
        del res["accelerators"], res["use_spot"]
        res["any_of"] = [_pinned(o) for o in spec.any_of]
    elif len(spec.clouds) == 1:
        res["infra"] = spec.clouds[0]
    return res


def _pinned(offer: Offer) -> dict[str, Any]:
    """One any_of entry: exactly the offer (cloud/region, instance, GPUs, spot)."""
    entry: dict[str, Any] = {
        "infra": "/".join(p for p in (offer.cloud, offer.region) if p),
        "accelerators": {offer.gpu: offer.gpu_count},
        "use_spot": offer.spot,
    }
    if offer.instance_type:
        entry["instance_type"] = offer.instance_type
    return entry


def _accelerators(spec: LaunchSpec, offer: Offer | None) -> dict[str, int] | list[str] | str:
    if offer is not None:
        return {offer.gpu: offer.gpu_count}
    if not spec.gpus:
        raise ConfigError("infra.gpus is empty", hint="list at least one GPU, e.g. [RTX4090, L40S]")
    if spec.ordered:
        return [f"{g}:{spec.gpu_count}" for g in spec.gpus]
    return {g: spec.gpu_count for g in spec.gpus}


def _ports(spec: LaunchSpec) -> str:
    last = spec.comfy_port + max(spec.gpu_count, 1) - 1
    return str(spec.comfy_port) if last == spec.comfy_port else f"{spec.comfy_port}-{last}"


def _docker_secrets(spec: LaunchSpec) -> dict[str, str]:
    given = [spec.registry_username, spec.registry_password]
    if not any(given):
        return {}
    if not all(given):
        raise ConfigError(
            "registry credentials are incomplete (need both username and password)",
            hint="set registry.username and registry.password (or NOMAD_REGISTRY_PASSWORD)",
        )
    server = spec.registry_server or spec.image_ref.removeprefix("docker:").split("/", 1)[0]
    values = (spec.registry_username or "", spec.registry_password or "", server)
    return dict(zip(DOCKER_SECRETS, values, strict=True))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)
