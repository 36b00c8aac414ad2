# ruff: noqa: E402
"""Push/pull benchmark on the embedded stack (not a test): nomad vs skopeo vs the S3 ceiling.

One run, same bytes for every method, a wiped registry bucket before each
push so nothing is skipped or mounted:

  push  nomad (registry API, parallel blobs)      repo bench/api
        nomad --direct-s3 (S3 layout, multipart)  repo bench/direct
        skopeo copy --preserve-digests            repo bench/skopeo
        boto3 multipart put of the same bytes     the storage's ceiling
  pull  nomad (parallel blob GETs + sha256 verify) vs skopeo copy to an OCI dir
        vs raw parallel GETs (no hashing, bytes discarded)

    .venv/bin/python bench/push.py                    # ~2 GiB in 4 files
    .venv/bin/python bench/push.py --size-mib 512     # smaller, quicker
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds other scripts (e.g. queue.py) that would shadow stdlib modules, so the
# script's own folder leaves sys.path before anything else is imported (hence E402 below).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from nomad.dev.stack import Stack
from nomad.images import (
    BuildInputs,
    ModelCache,
    ModelSpec,
    OciLayout,
    build_image,
    write_base_layout,
)
from nomad.registry import MountIndex, RegistryClient, push_layout
from nomad.registry.s3_direct import S3BlobWriter
from nomad.storage import Storage

MiB = 1024 * 1024


def make_weights(d: Path, total_mib: int, files: int) -> list[Path]:
    """Incompressible stand-in weights (random bytes), ``files`` of roughly equal size."""
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(files):
        p = d / f"w{i}.safetensors"
        left = total_mib * MiB // files + i * 4099  # distinct sizes
        with open(p, "wb") as f:
            while left:
                n = min(left, 8 * MiB)
                f.write(os.urandom(n))
                left -= n
        out.append(p)
    return out


def standin_base(work: Path) -> str:
    """busybox + a stand-in /opt/ComfyUI/main.py: multi-GB generated weights need a base that
    passes nomad's "has ComfyUI" check (the image is a benchmark payload, not a runtime)."""
    write_base_layout(work / "base", "base", comfyui_stub="/opt/ComfyUI")
    return f"oci:{work / 'base'}:base"


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def wipe(store: Storage) -> None:
    """Empty the registry bucket so the next push really moves every byte."""
    for key in store.list(""):
        store.delete(key)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=2048, help="total weight bytes (default 2048)")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=4, help="blobs in flight for nomad")
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir)")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="nomad-bench-"))
    stack = Stack(work / "data")
    info = stack.up()
    try:
        return run(args, work, info)
    finally:
        stack.down()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, info: Any) -> int:
    print(flush=True)
    print(f"stack: S3 {info.s3_endpoint}, registry {info.registry_url}; scratch {work}")
    weights = make_weights(work / "weights", args.size_mib, args.files)
    inputs = BuildInputs(
        base=standin_base(work),
        tag="bench",
        models=[ModelSpec(f"checkpoints/{p.name}", str(p)) for p in weights],
        files={},
        env={},
        labels={},
        models_root="/opt/ComfyUI/models",
        port=8188,
        config_dir=work,
    )
    layout_dir = work / "layout"
    t_build = timed(lambda: build_image(inputs, layout_dir, ModelCache(work / "cache")))
    layout = OciLayout(layout_dir)
    manifest = layout.read_json(layout.resolve("bench").digest)
    layers = manifest["layers"]
    weight_layers = layers[2:]  # layers 0-1 are the stand-in base
    total = sum(x["size"] for x in layers) + manifest["config"]["size"]
    wbytes = sum(x["size"] for x in weight_layers)
    print(
        f"built {len(layers)} layers, {total / MiB:.0f} MiB in {t_build:.1f}s "
        f"({total / MiB / t_build:.0f} MiB/s incl. hashing)"
    )

    store = Storage(info.s3_settings(), info.registry_bucket)
    host = info.registry_url.split("://", 1)[1]
    results: dict[str, float] = {}

    def nomad_push(repo: str, direct: bool) -> None:
        with RegistryClient(info.registry_url) as c:
            push_layout(
                c,
                layout_dir,
                repo,
                tag="bench",
                source_tag="bench",
                parallel=args.parallel,
                mounts=MountIndex(None),
                direct=S3BlobWriter(info.s3_settings()) if direct else None,
            )

    def skopeo_push() -> None:
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
                f"oci:{layout_dir}:bench",
                f"docker://{host}/bench/skopeo:bench",
            ],
            check=True,
        )

    def boto3_put() -> None:
        # one file at a time, 8 parts in parallel each (Storage.put_file): 4 files x 8 parts of
        # 64 MiB at once made SeaweedFS drop connections on the 2-core box
        for x in layers:
            store.put_file(f"ceiling/{x['digest'][7:]}", layout.blob_path(x["digest"]))

    for name, fn in [
        ("nomad push (registry API)", lambda: nomad_push("bench/api", False)),
        ("nomad push --direct-s3", lambda: nomad_push("bench/direct", True)),
        ("skopeo copy --preserve-digests", skopeo_push),
        ("boto3 multipart (S3 ceiling)", boto3_put),
    ]:
        wipe(store)
        results[name] = timed(fn)
        print(
            f"  {name:34} {results[name]:7.2f} s  {total / MiB / results[name]:7.1f} MiB/s",
            flush=True,
        )

    # pull: leave one pushed copy in place (API path) and read it back three ways
    wipe(store)
    nomad_push("bench/pull", False)
    pulls = pull_bench(info.registry_url, host, weight_layers, work, args.parallel)

    print(f"\npush of {total / MiB:.0f} MiB ({len(layers)} blobs), parallel={args.parallel}")
    for name, secs in results.items():
        print(f"  {name:34} {secs:7.2f} s  {total / MiB / secs:7.1f} MiB/s")
    sk = results["skopeo copy --preserve-digests"]
    ceil = results["boto3 multipart (S3 ceiling)"]
    for name in ("nomad push (registry API)", "nomad push --direct-s3"):
        print(
            f"  {name:34} {sk / results[name]:5.2f}x skopeo   {ceil / results[name] * 100:5.0f}% of boto3"
        )
    print(f"\npull of the {len(weight_layers)} weight blobs ({wbytes / MiB:.0f} MiB)")
    for name, secs in pulls.items():
        print(f"  {name:34} {secs:7.2f} s  {wbytes / MiB / secs:7.1f} MiB/s")
    return 0


def pull_bench(
    url: str, host: str, blobs: list[dict[str, Any]], work: Path, parallel: int
) -> dict[str, float]:
    out = work / "pull"
    out.mkdir(exist_ok=True)

    def nomad_pull() -> None:
        with RegistryClient(url) as c, ThreadPoolExecutor(parallel) as pool:
            list(
                pool.map(
                    lambda b: c.download_blob("bench/pull", b["digest"], out / b["digest"][7:]),
                    blobs,
                )
            )

    def raw_get() -> None:
        with httpx.Client(timeout=300) as h, ThreadPoolExecutor(parallel) as pool:

            def one(b: dict[str, Any]) -> None:
                with h.stream("GET", f"{url}/v2/bench/pull/blobs/{b['digest']}") as r:
                    for _ in r.iter_raw(1 << 20):
                        pass

            list(pool.map(one, blobs))

    def skopeo_pull() -> None:
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                f"docker://{host}/bench/pull:bench",
                f"oci:{work / 'skopeo-pull'}:bench",
            ],
            check=True,
        )

    res = {}
    for name, fn in [
        ("nomad pull (verify sha256)", nomad_pull),
        ("skopeo copy -> oci dir", skopeo_pull),
        ("raw parallel GETs (no hash)", raw_get),
    ]:
        res[name] = timed(fn)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(exist_ok=True)
        shutil.rmtree(work / "skopeo-pull", ignore_errors=True)
    return res


if __name__ == "__main__":
    sys.exit(main())
