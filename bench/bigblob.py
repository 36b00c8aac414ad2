# ruff: noqa: E402
"""One multi-GB weight through every push path on the embedded stack (not a test).

Same bytes, one run, the registry bucket wiped before each push so nothing is
skipped or mounted:

  nomad push --api       chunked PATCH uploads (16 MiB), then the registry's commit
                         (a server-side multipart copy inside S3)
  nomad push --direct-s3 S3 multipart straight into the registry's layout
  skopeo copy --preserve-digests   oci: -> docker:// (the independent baseline)
  boto3 multipart put    the storage's ceiling (no registry at all)

After each nomad push the image is checked by tools nomad did not write:
`skopeo copy --preserve-digests` back into an OCI dir (verifies every blob
digest) and, for the first one, `umoci unpack` (verifies diff_ids and the tar)
plus a byte compare of the unpacked weight. Ratios are against skopeo and boto3
measured in the same run.

    .venv/bin/python bench/bigblob.py --size-gib 6          # ~6 GiB, needs ~30 GB free disk
    .venv/bin/python bench/bigblob.py --size-gib 0.5        # quick smoke run

The weight is generated: a 64 MiB random block repeated (incompressible for
the stores involved; cheap to produce).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

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
GiB = 1024 * MiB


def make_weight(path: Path, size: int) -> str:
    """Write the weight; return its sha256 (the file itself is deleted after the build)."""
    block = os.urandom(64 * MiB)
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            sha.update(block[:n])
            left -= n
    return sha.hexdigest()


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            sha.update(chunk)
    return sha.hexdigest()


def standin_base(work: Path) -> str:
    """busybox + a stand-in /opt/ComfyUI/main.py: multi-GB generated weights need a base that
    passes nomad's "has ComfyUI" check (the image is a benchmark payload, not a runtime)."""
    write_base_layout(work / "base", "base", comfyui_stub="/opt/ComfyUI")
    return f"oci:{work / 'base'}:base"


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fresh_stack(stack: Stack) -> Any:
    """Stop the stack and drop its S3 data: every path starts from an empty store, and the
    disk gets the space back (SeaweedFS frees deleted objects only at its next vacuum)."""
    stack.down()
    shutil.rmtree(stack.root / "seaweedfs", ignore_errors=True)
    return stack.up()


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(cmd)}\n{done.stderr[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-gib", type=float, default=6.0)
    ap.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir)")
    ap.add_argument("--skip-umoci", action="store_true", help="skip the umoci unpack check")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="nomad-bigblob-"))
    stack = Stack(work / "data")
    info = stack.up()
    try:
        return bench(args, work, stack, info)
    finally:
        stack.down()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path, stack: Stack, info: Any) -> int:
    size = int(args.size_gib * GiB)
    weight = work / "big.safetensors"
    print(f"stack: S3 {info.s3_endpoint}, registry {info.registry_url}; scratch {work}", flush=True)
    t0 = time.perf_counter()
    want = make_weight(weight, size)
    print(f"generated {size / GiB:.2f} GiB in {time.perf_counter() - t0:.1f} s", flush=True)
    inputs = BuildInputs(
        base=standin_base(work), tag="big", models=[ModelSpec("checkpoints/big.safetensors", str(weight))],
        files={}, env={}, labels={}, models_root="/opt/ComfyUI/models", port=8188, config_dir=work,
    )  # fmt: skip
    layout_dir = work / "layout"
    t = timed(lambda: build_image(inputs, layout_dir, ModelCache(work / "cache")))
    layout = OciLayout(layout_dir)
    manifest = layout.read_json(layout.resolve("big").digest)
    total = sum(x["size"] for x in manifest["layers"]) + manifest["config"]["size"]
    print(f"built: layer {manifest['layers'][-1]['size'] / GiB:.2f} GiB in {t:.1f} s", flush=True)
    weight.unlink()  # the layout holds the bytes now; keep the disk for the stores
    shutil.rmtree(work / "cache", ignore_errors=True)
    host = ""

    def store() -> Storage:
        return Storage(info.s3_settings(), info.registry_bucket)

    def nomad_push(repo: str, direct: bool) -> None:
        with RegistryClient(info.registry_url) as c:
            push_layout(c, layout_dir, repo, tag="big", source_tag="big", parallel=2,
                        mounts=MountIndex(None),
                        direct=S3BlobWriter(info.s3_settings()) if direct else None)  # fmt: skip

    def skopeo_push() -> None:
        run(["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
             f"oci:{layout_dir}:big", f"docker://{host}/bench/skopeo:big"])  # fmt: skip

    def boto3_put() -> None:
        for x in manifest["layers"]:
            store().put_file(f"ceiling/{x['digest'][7:]}", layout.blob_path(x["digest"]))

    def check(repo: str, umoci: bool) -> str:
        copy = work / "check"
        shutil.rmtree(copy, ignore_errors=True)
        t = timed(lambda: run(["skopeo", "copy", "--quiet", "--preserve-digests",
                               "--src-tls-verify=false", f"docker://{host}/{repo}:big",
                               f"oci:{copy}:big"]))  # fmt: skip
        out = f"skopeo copy back ok ({t:.0f} s)"
        if umoci:
            bundle = work / "bundle"
            rootless = [] if os.geteuid() == 0 else ["--rootless"]
            run(["umoci", "unpack", *rootless, "--image", f"{copy}:big", str(bundle)])
            got = bundle / "rootfs/opt/ComfyUI/models/checkpoints/big.safetensors"
            same = sha256_file(got) == want
            out += f", umoci unpack ok, weight sha256 identical: {same}"
            shutil.rmtree(bundle, ignore_errors=True)
        shutil.rmtree(copy, ignore_errors=True)
        return out

    results: dict[str, float] = {}
    runs: list[tuple[str, Callable[[], None], str | None, bool]] = [
        ("nomad push --api (chunked PATCH)", lambda: nomad_push("bench/api", False), "bench/api", not args.skip_umoci),
        ("nomad push --direct-s3", lambda: nomad_push("bench/direct", True), "bench/direct", False),
        ("skopeo copy --preserve-digests", skopeo_push, None, False),
        ("boto3 multipart (S3 ceiling)", boto3_put, None, False),
    ]  # fmt: skip
    for name, fn, repo, umoci in runs:
        info = fresh_stack(stack)
        host = info.registry_url.split("://", 1)[1]
        try:
            results[name] = timed(fn)
        except Exception as exc:  # a failed path is a result too: print it, go on
            print(f"  {name:34} FAILED: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            continue
        line = f"  {name:34} {results[name]:7.1f} s  {total / MiB / results[name]:6.1f} MiB/s"
        if repo:
            line += "   " + check(repo, umoci)
        print(line, flush=True)

    print(f"\npush of {total / GiB:.2f} GiB (one weight layer + busybox base + config)")
    sk = results.get("skopeo copy --preserve-digests")
    ceil = results.get("boto3 multipart (S3 ceiling)")
    for name, secs in results.items():
        ratio = f"{sk / secs:5.2f}x skopeo" if sk else "   - skopeo"
        pct = f"{ceil / secs * 100:4.0f}% of boto3" if ceil else ""
        print(f"  {name:34} {secs:7.1f} s  {total / MiB / secs:6.1f} MiB/s  {ratio}  {pct}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
