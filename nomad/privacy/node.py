"""The GPU node's side of privacy: each ComfyUI published as a hidden service (``privacy.node``).

With it the node needs no open port: ComfyUI listens on loopback, the node's
own anon/tor publishes ``HiddenServicePort 80 -> 127.0.0.1:<port>`` for each
GPU, and serve reaches it at ``http://<address>.anon`` through its SOCKS
proxy. The keys (and so the addresses) are made and kept on nomad's side
(:mod:`nomad.privacy.keys`) and shipped to the node, so the address is stable
across wakes and known before the node answers.

Backends turn a :class:`NodeHiddenServices` into what their node runs: the
local backend's supervisor starts the client from :func:`render_rc`; the
SkyPilot/SSH run script (``sky/comfyui.yaml``) writes the same lines in shell
from the shipped folder :func:`ship_folder` prepares.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nomad.errors import PrivacyError
from nomad.privacy.keys import PUBLIC_FILE, SECRET_FILE, ServiceKey, cluster_keys, release

if TYPE_CHECKING:
    from nomad.config.schema import PrivacyConfig

SHIP_REMOTE = "~/.nomad/hs-ship"  # where the run script finds keys, extra lines and a binary


@dataclass(frozen=True)
class NodeHiddenServices:
    """How this deployment's nodes publish their ComfyUI servers (None in a spec: they don't)."""

    client: str  # anon | tor: decides the address suffix and AgreeToTerms
    binary: str  # on the node: a path, or a name on its PATH
    ship_binary: str | None  # a local binary nomad copies to the node (anon's static build)
    keys_root: str  # nomad's side: DATA_DIR/privacy/keys
    port: int = 80  # the hidden service's virtual port
    extra: tuple[str, ...] = ()  # privacy.extra_config: bridges, a private test network

    @property
    def suffix(self) -> str:
        return "anon" if self.client == "anon" else "onion"

    def keys(
        self, cluster: str, count: int, in_use: Callable[[str], bool] | None = None
    ) -> list[ServiceKey]:
        """One key per ComfyUI of ``cluster``, made on first use and kept; ``in_use`` (the
        backend's "does that cluster still exist") lets a new cluster take a gone one's slot."""
        return cluster_keys(Path(self.keys_root), cluster, count, in_use)

    def release(self, cluster: str) -> None:
        """The cluster was torn down: the next wake takes its slot (and address)."""
        release(Path(self.keys_root), cluster)

    def urls(self, cluster: str, count: int) -> list[str]:
        """The endpoints serve uses: ``http://<address>`` (port 80) or ``:<port>``."""
        tail = "" if self.port == 80 else f":{self.port}"
        return [f"http://{k.address(self.suffix)}{tail}" for k in self.keys(cluster, count)]

    def ship_folder(
        self, cluster: str, count: int, in_use: Callable[[str], bool] | None = None
    ) -> Path:
        """A folder with ``gpu<i>/`` keys, ``extra.rc`` and (if shipped) ``bin/<client>``,
        for backends that copy files to the node (SkyPilot ``file_mounts``)."""
        folder = self.keys(cluster, count, in_use)[0].folder.parent
        (folder / "extra.rc").write_text("".join(f"{line}\n" for line in self.extra))
        if self.ship_binary:
            bin_dir = folder / "bin"
            bin_dir.mkdir(exist_ok=True)
            target = bin_dir / self.client
            if not target.exists() or target.stat().st_size != Path(self.ship_binary).stat().st_size:
                shutil.copy2(self.ship_binary, target)
            os.chmod(target, 0o755)
        return folder


def render_rc(
    spec: NodeHiddenServices, base: Path, targets: list[tuple[Path, int]], *, log: Path
) -> str:
    """The node client's config: no SOCKS port (it only publishes), one
    ``HiddenServiceDir``/``HiddenServicePort`` pair per (key folder, ComfyUI port)."""
    lines = [
        "SocksPort 0",
        f"DataDirectory {base / 'data'}",
        f"Log notice file {log}",
    ]
    if spec.client == "anon":
        lines.append("AgreeToTerms 1")
    for folder, port in targets:
        lines.append(f"HiddenServiceDir {folder}")
        lines.append(f"HiddenServicePort {spec.port} 127.0.0.1:{port}")
    lines.extend(spec.extra)
    return "\n".join(lines) + "\n"


def install_keys(key: ServiceKey, folder: Path) -> None:
    """Copy a key into the client's HiddenServiceDir with the modes anon/tor insist on."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    for name in (SECRET_FILE, PUBLIC_FILE):
        dst = folder / name
        dst.unlink(missing_ok=True)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write((key.folder / name).read_bytes())


def from_config(cfg: PrivacyConfig, data_dir: Path) -> NodeHiddenServices | None:
    """``privacy.node`` for launch specs: None unless nodes publish (privacy on, publish not never)."""
    node = cfg.node
    publish = node.publish == "always" or (node.publish == "auto" and cfg.enabled)
    if not publish:
        return None
    client = node.client or cfg.client
    ship = node.ship_binary
    if ship is None and client == "anon" and not node.binary:
        ship = _local_static_anon(cfg)  # the image needs no anon of its own
    if ship is not None:
        path = Path(ship).expanduser()
        if not path.is_file():
            raise PrivacyError(
                f"privacy.node.ship_binary {ship!r} is not a file",
                hint="point it at a static anon build (npm @anyone-protocol/anyone-client: "
                "bin/linux/x64/anon), or unset it and put the client into the image",
            )
        ship = str(path)
    return NodeHiddenServices(
        client=client,
        binary=node.binary or client,
        ship_binary=ship,
        keys_root=str(Path(data_dir) / "privacy" / "keys"),
        port=node.port,
        extra=tuple(cfg.extra_config),
    )


def comfy_command(cmd: str, *, loopback: bool, disable_metadata: bool) -> str:
    """The node's ComfyUI command with privacy applied: on loopback only when a hidden service
    publishes it (no open port), and ``--disable-metadata`` so outputs carry no prompt."""
    words = cmd.split()
    if loopback and "--listen" in words:  # without --listen ComfyUI takes 127.0.0.1 already
        i = words.index("--listen")
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            words[i + 1] = "127.0.0.1"
        else:
            words.insert(i + 1, "127.0.0.1")
    if disable_metadata and "--disable-metadata" not in words:
        words.append("--disable-metadata")
    return " ".join(words)


def _local_static_anon(cfg: PrivacyConfig) -> str | None:
    """The anon this machine runs (privacy.binary, $ANON_BIN, PATH) when it is a static
    linux/x86-64 build (the npm package's), which runs on any x86-64 node as it is."""
    found = cfg.binary or os.environ.get("ANON_BIN") or shutil.which("anon")
    if found and is_static_x86_64(Path(found)):
        return str(Path(found).resolve())
    return None


def is_static_x86_64(path: Path) -> bool:
    """An ELF64 x86-64 executable without a program interpreter (statically linked)."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or head[:5] != b"\x7fELF\x02" or head[5] != 1:
                return False
            machine = struct.unpack_from("<H", head, 18)[0]
            phoff = struct.unpack_from("<Q", head, 32)[0]
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            if machine != 0x3E:
                return False
            fh.seek(phoff)
            table = fh.read(phentsize * phnum)
    except OSError:
        return False
    pt_interp = 3
    return all(
        struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp for i in range(phnum)
    )
