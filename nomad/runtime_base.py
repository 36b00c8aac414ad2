"""``nomad base build``: nomad's own ComfyUI runtime image from ``images/comfyui``, with buildx.

The build context ships inside the package (``nomad.resources.runtime_context_dir``),
so an installed nomad builds the same image as a checkout. The result is
pushed to a registry (``--push``) or written as an OCI archive that
``image.base: oci-archive:PATH`` reads — nomad's builder cannot read a
docker daemon's store, so ``--load`` is not offered.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from nomad.errors import BuildError, NotAvailableError, UsageError

__all__ = ["BaseBuild", "buildx_command", "run_base_build"]


@dataclass(frozen=True)
class BaseBuild:
    """One runtime-base build: where the image goes and with which ComfyUI."""

    tag: str
    push: bool = False
    oci_archive: str | None = None
    platform: str = "linux/amd64"
    comfyui_version: str | None = None


def buildx_command(build: BaseBuild) -> list[str]:
    """The ``docker buildx build`` argv for ``build`` (exactly one output: push or OCI archive)."""
    from nomad.resources import runtime_context_dir

    if build.push == bool(build.oci_archive):
        raise UsageError(
            "choose one output: --push (to the registry in --tag) or --oci-archive PATH",
            hint="nomad build reads either: image.base: REGISTRY/REPO:TAG or oci-archive:PATH",
        )
    argv = ["docker", "buildx", "build", "--platform", build.platform, "--tag", build.tag]
    if build.comfyui_version:
        argv += ["--build-arg", f"COMFYUI_VERSION={build.comfyui_version}"]
    if build.push:
        argv += ["--push"]
    else:
        argv += ["--output", f"type=oci,dest={build.oci_archive}"]
    return [*argv, str(runtime_context_dir())]


def _require_buildx() -> None:
    if (
        shutil.which("docker") is None
        or subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        raise NotAvailableError(
            "`nomad base build` needs docker with the buildx plugin, and it is not here",
            hint="install docker and docker-buildx (Debian: apt-get install docker.io docker-buildx), "
            "or use a public ComfyUI base instead: `nomad base profiles`",
        )


def run_base_build(build: BaseBuild) -> str:
    """Run the build (buildx must be here); returns the ``image.base`` value to use."""
    argv = buildx_command(build)
    _require_buildx()
    done = subprocess.run(argv, check=False)
    if done.returncode != 0:
        raise BuildError(f"docker buildx build failed (exit {done.returncode}) for {argv[-1]}")
    return build.tag if build.push else f"oci-archive:{build.oci_archive}"
