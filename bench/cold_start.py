# ruff: noqa: E402
"""Cold-start benchmark (not a test): `docker pull` vs `nomad node pull` vs the S3→disk ceiling.

One run, same images, same machine, every number measured here:

  (a) one big weight        image bench/one   (nomad build: uncompressed layers)
  (b) six weights           image bench/six
  (c) six weights, gzip'd   bench/six copied by skopeo (another tool; it gzips every layer)

For each: `docker pull` into a real dockerd (Debian docker.io, vfs, loopback
registry; image removed before each pull) and `nomad node pull` (a fresh
cache each time, the real CLI as a subprocess). Ceiling: the same blob
objects S3→disk with curl (one stream per blob, all blobs at once) and boto3
(multipart download), best of the two. The registry has S3 redirect on (the
embedded stack's default), so both docker and nomad read blob bytes from S3.

    apt-get install docker.io skopeo curl
    .venv/bin/python bench/cold_start.py                      # 1 GiB and 6 x 256 MiB
    .venv/bin/python bench/cold_start.py --big-mib 256 --six-mib 64   # quick

Prints a table and ratios and writes JSON next to --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nomad.dev.stack import Stack
from nomad.images import BuildInputs, ModelCache, ModelSpec, build_image
from nomad.registry import push_image
from nomad.storage import Storage

MiB = 1024 * 1024


def weights(d: Path, name: str, mib: int, n: int) -> list[ModelSpec]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"{name}{i}.safetensors"
        left = mib * MiB + i * 4099
        with open(p, "wb") as f:
            while left:
                k = min(left, 8 * MiB)
                f.write(os.urandom(k))
                left -= k
        out.append(ModelSpec(f"checkpoints/{p.name}", str(p)))
    return out


def build_push(tmp: Path, info: Any, repo: str, models: list[ModelSpec]) -> str:
    inputs = BuildInputs(
        base="busybox", tag="t1", models=models, files={}, env={}, labels={},
        models_root="/opt/ComfyUI/models", port=8188, config_dir=tmp,
    )  # fmt: skip
    build_image(inputs, tmp / f"oci-{repo.replace('/', '_')}", ModelCache(tmp / "mc"))
    res = push_image(
        url=info.registry_url, repository=repo, tag="t1",
        layout_dir=tmp / f"oci-{repo.replace('/', '_')}", data_dir=tmp / "data",
        insecure=True, direct_s3=info.s3_settings(),
    )  # fmt: skip
    return str(res.ref)


def timed(argv: list[str], **kw: Any) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.monotonic() - t0


class Dockerd:
    """A private dockerd (vfs, no networking of its own) under ``root``; stopped by its pid."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = root / "docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "dockerd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["dockerd", "--host", f"unix://{self.sock}", "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "docker.pid"),
             "--storage-driver", "vfs", "--iptables=false", "--ip-masq=false", "--bridge=none"],
            stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                self.sock.exists()
                and subprocess.run(self.cli("info"), capture_output=True).returncode == 0
            ):
                return
            time.sleep(0.25)
        raise SystemExit(f"dockerd did not start; see {self.root / 'dockerd.log'}")

    def cli(self, *args: str) -> list[str]:
        return ["docker", "-H", f"unix://{self.sock}", *args]

    def pull(self, ref: str) -> float:
        subprocess.run(self.cli("image", "prune", "-af"), check=True, capture_output=True)
        return timed(self.cli("pull", "-q", ref))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def nomad_pull(ref: str, cache: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    shutil.rmtree(cache, ignore_errors=True)
    argv = [sys.executable, "-c", "from nomad.cli.main import main; main()",
            "node", "pull", ref, "--cache-dir", str(cache), "--json", *extra]  # fmt: skip
    t0 = time.monotonic()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return time.monotonic() - t0, json.loads(out)


def nomad_pull_warm(ref: str, cache: Path) -> tuple[float, dict[str, Any]]:
    """A second wake on the same cache (not wiped)."""
    argv = [sys.executable, "-c", "from nomad.cli.main import main; main()",
            "node", "pull", ref, "--cache-dir", str(cache), "--json"]  # fmt: skip
    t0 = time.monotonic()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return time.monotonic() - t0, json.loads(out)


def blob_keys(store: Storage, result: dict[str, Any]) -> list[str]:
    keys = []
    for layer in result["layers"]:
        hexd = layer["digest"].split(":", 1)[1]
        keys.append(f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data")
    return keys


def ceiling(store: Storage, keys: list[str], out: Path) -> dict[str, float]:
    """S3→disk for exactly these objects: curl (a stream per object, all at once) and boto3."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    urls = [store.presign(k, 3600) for k in keys]
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(["curl", "-sf", "-o", str(out / f"c{i}"), u]) for i, u in enumerate(urls)
    ]
    if any(p.wait() for p in procs):
        raise SystemExit("curl failed")
    curl_s = time.monotonic() - t0
    shutil.rmtree(out)
    out.mkdir()
    from boto3.s3.transfer import TransferConfig

    cfg = TransferConfig(
        multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB, max_concurrency=8
    )
    t0 = time.monotonic()
    with ThreadPoolExecutor(len(keys)) as pool:
        list(pool.map(lambda ik: store.client.download_file(store.bucket, ik[1], str(out / f"b{ik[0]}"), Config=cfg),
                      enumerate(keys)))  # fmt: skip
    boto_s = time.monotonic() - t0
    shutil.rmtree(out)
    return {"curl_s": curl_s, "boto3_s": boto_s, "best_s": min(curl_s, boto_s)}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--six-mib", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("bench/results/cold_start.json"))
    args = ap.parse_args()
    for tool in ("dockerd", "docker", "skopeo", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install docker.io skopeo curl")
    tmp = Path(tempfile.mkdtemp(prefix="nomad-cold-"))
    stack = Stack(tmp / "stack", die_with_parent=True)
    dockerd = Dockerd(tmp / "docker")
    rows: list[dict[str, Any]] = []
    try:
        info = stack.up()
        host = info.registry_url.split("://", 1)[1]
        print(f"building and pushing ({args.big_mib} MiB; 6 x {args.six_mib} MiB) …", flush=True)
        one = build_push(tmp, info, "bench/one", weights(tmp / "w", "big", args.big_mib, 1))
        six = build_push(tmp, info, "bench/six", weights(tmp / "w", "six", args.six_mib, 6))
        subprocess.run(
            ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
             f"docker://{six}", f"docker://{host}/bench/six-gz:t1"],
            check=True, capture_output=True,
        )  # fmt: skip
        sixgz = f"{host}/bench/six-gz:t1"
        dockerd.start()
        store = Storage(info.s3_settings(info.registry_bucket), info.registry_bucket)
        for case, ref in (
            ("a: one weight", one),
            ("b: six weights", six),
            ("c: six, gzip (skopeo)", sixgz),
        ):
            print(f"{case}: docker pull …", flush=True)
            docker_s = dockerd.pull(ref)
            print(f"{case}: nomad node pull …", flush=True)
            nomad_s, res = nomad_pull(ref, tmp / "cache")  # defaults: 3 layers x 4 ranges
            print(f"{case}: nomad node pull --streams 1 …", flush=True)
            nomad1_s, _ = nomad_pull(ref, tmp / "cache", "--streams", "1")
            print(f"{case}: nomad node pull, warm cache …", flush=True)
            warm_s, warm = nomad_pull_warm(ref, tmp / "cache")
            ceil = ceiling(store, blob_keys(store, res), tmp / "ceil")
            weight_bytes = res["weight_bytes"]
            blob_bytes = sum(layer["bytes_moved"] for layer in res["layers"])
            rows.append({
                "case": case, "ref": ref, "weight_bytes": weight_bytes, "blob_bytes": blob_bytes,
                "docker_pull_s": docker_s, "nomad_node_pull_s": nomad_s, "ceiling": ceil,
                "nomad_streams1_s": nomad1_s, "warm_s": warm_s, "warm_bytes_moved": warm["bytes_moved"],
                "nomad_pull_in_process_s": res["seconds"],
                "via": sorted({layer["via"] for layer in res["layers"]}),
                "speedup_vs_docker": docker_s / nomad_s,
                "share_of_ceiling": ceil["best_s"] / nomad_s,
            })  # fmt: skip
    finally:
        dockerd.stop()
        stack.down()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'case':24} {'MiB':>6} {'docker s':>8} {'nomad s':>7} {'1-stream s':>10} {'ceil s':>6} "
          f"{'x docker':>8} {'% ceil':>6} {'x docker(1)':>11} {'% ceil(1)':>9} {'warm s':>6} {'warm B':>6}")  # fmt: skip
    for r in rows:
        mib, one_s, ceil_s = r["blob_bytes"] / MiB, r["nomad_streams1_s"], r["ceiling"]["best_s"]
        print(f"{r['case']:24} {mib:6.0f} {r['docker_pull_s']:8.1f} {r['nomad_node_pull_s']:7.1f} "
              f"{one_s:10.1f} {ceil_s:6.1f} {r['speedup_vs_docker']:8.2f} "
              f"{100 * r['share_of_ceiling']:5.0f}% {r['docker_pull_s'] / one_s:11.2f} "
              f"{100 * ceil_s / one_s:8.0f}% {r['warm_s']:6.2f} {r['warm_bytes_moved']:6d}")  # fmt: skip
    print("goal: >= 4x docker pull, >= 70 % of the S3->disk ceiling")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "rows": rows}, indent=2))  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
