"""`nomad node pull` against the real embedded stack (distribution registry + SeaweedFS)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomad.errors import ModelFetchError
from nomad.node import CorruptBlobError, NodeCache, S3Source, pull_weights
from nomad.registry import RegistryClient, parse_reference
from nomad.storage import Storage
from nomad.testing.cli import run_nomad
from nomad.testing.wait import eventually

from .conftest import Gate, MiB, Pushed

Push = Callable[..., Pushed]
Regs = dict[bool, str]
TWO = {"diffusion_models/unet.safetensors": 5 * MiB + 17, "vae/vae.safetensors": 300 * 1024 + 5}


def _pull(url: str, pushed: Pushed, cache: NodeCache, **kw: Any) -> Any:
    ref = parse_reference(pushed.ref)
    with RegistryClient(url) as client:
        return pull_weights(client, ref, cache, chunk=1 * MiB, streams=3, **kw)


def _check_files(result: Any, pushed: Pushed) -> None:
    got = {m.target.split("/models/", 1)[1]: m.source.read_bytes() for m in result.mounts.mounts}
    assert got == pushed.files


def test_pull_writes_each_weight_to_its_file_and_plans_read_only_mounts(
    registries: Regs, push_weights: Push, tmp_path: Path
) -> None:
    """Every weight layer lands as its bare file (tar stripped), byte-identical, mounted :ro at its dest."""
    pushed = push_weights(TWO)
    res = _pull(registries[False], pushed, NodeCache(tmp_path / "c"))
    _check_files(res, pushed)
    assert sorted(r.outcome for r in res.layers) == ["fetched", "fetched"]
    assert res.base_layers >= 1  # busybox base stays with the container engine
    args = res.mounts.docker_args()
    assert (
        args[0] == "-v" and args[1].endswith(":/opt/ComfyUI/models/vae/vae.safetensors:ro")
    ) or (args[3].endswith(":/opt/ComfyUI/models/vae/vae.safetensors:ro"))
    links = res.mounts.link_tree(tmp_path / "models")
    assert (tmp_path / "models/vae/vae.safetensors").read_bytes() == pushed.files[
        "vae/vae.safetensors"
    ]
    assert all(p.is_symlink() for p in links)
    left = [p for p in (tmp_path / "c" / "partial").iterdir() if p.suffix != ".lock"]
    assert not left  # no partial file or state left (per-digest lock files stay)


def test_second_wake_moves_zero_weight_bytes(
    registries: Regs, push_weights: Push, gate: Callable[..., Gate], tmp_path: Path
) -> None:
    """With a warm cache the second pull sends no blob GET: only manifest and config cross the wire."""
    pushed = push_weights(TWO)
    cache = NodeCache(tmp_path / "c")
    first = gate()
    _pull(first.url, pushed, cache)
    assert first.down_bytes > sum(TWO.values())
    second = gate()
    res = _pull(second.url, pushed, cache)
    assert [r.outcome for r in res.layers] == ["cached", "cached"] and res.bytes_moved == 0
    assert second.down_bytes < 32 * 1024  # manifest + config + headers, no weight bytes
    _check_files(res, pushed)


def _nomad_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from nomad.cli.main import main; main()", *args]


def test_killed_pull_resumes_and_is_byte_identical(
    registries: Regs, push_weights: Push, gate: Callable[..., Gate], tmp_path: Path
) -> None:
    """SIGKILL a real `nomad node pull` mid-blob; the rerun fetches only the missing chunks."""
    big = {"diffusion_models/big.safetensors": 8 * MiB + 3}
    pushed = push_weights(big)
    g = gate(budget=4 * MiB)  # lets ~4 MiB through, then holds every connection
    host_ref = f"{g.url.split('://')[1]}/{pushed.ref.split('/', 1)[1]}"
    cache_dir = tmp_path / "c"
    argv = _nomad_argv("--data-dir", str(tmp_path / "d"), "node", "pull", host_ref,
                       "--cache-dir", str(cache_dir), "--streams", "2", "--chunk-mib", "1", "--json")  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        states = cache_dir / "partial"

        def some_chunks_done() -> bool:
            for st in states.glob("*.state"):
                if json.loads(st.read_text() or "{}").get("done") and g.stalled:
                    return True
            return False

        eventually(some_chunks_done, timeout=60, what="chunks written and the gate holding")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    state = json.loads(next(states.glob("*.state")).read_text())
    done_before = len(state["done"])
    assert 0 < done_before < 9  # 8 MiB + 3 in 1 MiB chunks: killed part-way
    cache = NodeCache(cache_dir)
    res = _pull(registries[False], pushed, cache)  # straight to the registry now
    (layer,) = res.layers
    assert layer.outcome == "resumed"
    assert layer.bytes_moved < layer.size  # only what was missing (+ retried partial chunks)
    _check_files(res, pushed)
    assert not list(states.iterdir()) or all(p.suffix == ".lock" for p in states.iterdir())


def _flip_byte(stack: Any, digest: str, at: int) -> None:
    store = Storage(stack.s3_settings(stack.registry_bucket))
    hexd = digest.split(":", 1)[1]
    key = f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
    data = bytearray(store.get_bytes(key))
    data[at] ^= 0x01
    store.put_bytes(key, bytes(data))


@pytest.mark.parametrize("redirect", [False, True], ids=["via-registry", "via-s3-redirect"])
def test_corrupt_blob_in_storage_is_named_and_nothing_is_kept(
    stack: Any, registries: Regs, push_weights: Push, tmp_path: Path, redirect: bool
) -> None:
    """A flipped byte in SeaweedFS fails the on-the-fly sha256: error names blob and image; no file kept."""
    pushed = push_weights({"loras/bad.safetensors": 3 * MiB + 1}, seed=f"corrupt{redirect}")
    layer = pushed.layers[-1]["digest"]
    _flip_byte(stack, layer, 2 * MiB)
    cache = NodeCache(tmp_path / "c")
    with pytest.raises(CorruptBlobError) as err:
        _pull(registries[redirect], pushed, cache)
    assert layer in err.value.message and pushed.repo in err.value.message
    assert "corrupt" in err.value.message
    assert (
        not cache.has(layer) and not cache.part(layer).exists() and not cache.state(layer).exists()
    )
    code, _out, stderr = run_nomad(
        tmp_path / "d", "node", "pull", pushed.ref, "--cache-dir", str(tmp_path / "c2")
    )
    assert code == 4 and layer in stderr and "corrupt" in stderr


def test_fetch_straight_from_the_bucket_with_keys(
    stack: Any, registries: Regs, push_weights: Push, tmp_path: Path
) -> None:
    """--from s3: blobs come from the registry's bucket via presigned GETs; same files."""
    pushed = push_weights(TWO, seed="s3")
    source = S3Source(Storage(stack.s3_settings(stack.registry_bucket), stack.registry_bucket))
    res = _pull(registries[False], pushed, NodeCache(tmp_path / "c"), source=source)
    assert {r.via for r in res.layers} == {"s3"}
    _check_files(res, pushed)


def test_cache_limit_evicts_least_recently_used_and_keeps_shared_weights(
    registries: Regs, push_weights: Push, tmp_path: Path
) -> None:
    """Over the limit, the LRU weight the new image does not need goes; a shared weight stays."""
    shared = {"vae/shared.safetensors": 1 * MiB}
    a = push_weights({**shared, "loras/a.safetensors": 2 * MiB}, seed="lru")
    b = push_weights({**shared, "loras/b.safetensors": 2 * MiB}, seed="lru")
    clock = iter(range(100, 1000))
    cache = NodeCache(tmp_path / "c", max_bytes=int(4.5 * MiB), clock=lambda: float(next(clock)))
    _pull(registries[False], a, cache)
    res = _pull(registries[False], b, cache)
    gone = {e.path for e in res.evicted}
    assert gone == {"loras/a.safetensors"}
    assert [r.outcome for r in res.layers if r.dest == "vae/shared.safetensors"] == ["cached"]
    assert {e.path for e in cache.entries()} == {"vae/shared.safetensors", "loras/b.safetensors"}
    tiny = NodeCache(tmp_path / "c", max_bytes=2 * MiB)
    with pytest.raises(ModelFetchError, match="limit"):
        _pull(registries[False], a, tiny)
    assert {e.path for e in cache.entries()} == {"vae/shared.safetensors", "loras/b.safetensors"}


def test_weight_file_digest_matches_label(
    registries: Regs, push_weights: Push, tmp_path: Path
) -> None:
    """The cached file's sha256 is the file sha256 nomad build recorded in io.nomad.models."""
    pushed = push_weights({"vae/x.safetensors": 777_777}, seed="label")
    res = _pull(registries[False], pushed, NodeCache(tmp_path / "c"))
    (m,) = res.mounts.mounts
    assert (
        hashlib.sha256(m.source.read_bytes()).hexdigest()
        == hashlib.sha256(pushed.files["vae/x.safetensors"]).hexdigest()
    )
    assert os.stat(m.source).st_mode & 0o222 == 0  # cached weights are read-only


def test_registry_redirect_sends_every_range_straight_to_s3(
    registries: Regs, push_weights: Push, gate: Callable[..., Gate], tmp_path: Path
) -> None:
    """With storage redirect on, the registry answers 307 and all ranges go to the presigned S3 URL."""
    pushed = push_weights(TWO, seed="redirect")
    res = _pull(registries[True], pushed, NodeCache(tmp_path / "c"))
    assert {r.via for r in res.layers} == {"registry→s3"}
    _check_files(res, pushed)


def test_slim_twin_has_every_layer_but_the_weights_and_pulls_with_skopeo(
    registries: Regs, push_weights: Push, tmp_path: Path
) -> None:
    """`nomad node slim` publishes base+files only (a valid image: skopeo copies it) naming the full one."""
    import shutil

    pushed = push_weights(TWO, seed="slim")
    url = registries[False]
    host = url.split("://", 1)[1]
    code, out, err = run_nomad(
        tmp_path / "d", "node", "slim", f"{host}/{pushed.ref.split('/', 1)[1]}", "--json"
    )
    assert code == 0, err
    slim_ref = json.loads(out)["slim"]
    ref = parse_reference(slim_ref)
    with RegistryClient(url) as client:
        raw, _ = client.get_manifest(ref.repository, ref.target)
    doc = json.loads(raw)
    weights = {layer["digest"] for layer in pushed.layers if "model" in layer["what"]}
    assert len(weights) == 2
    assert [layer["digest"] for layer in doc["layers"]] == [
        layer["digest"] for layer in pushed.layers if layer["digest"] not in weights
    ]
    assert doc["annotations"]["io.nomad.weights.from"] == pushed.ref.split("@", 1)[1]
    if shutil.which("skopeo"):
        subprocess.run(
            ["skopeo", "copy", "--src-tls-verify=false", f"docker://{slim_ref}",
             f"oci:{tmp_path / 'oci'}:slim"],
            check=True, capture_output=True,
        )  # fmt: skip


def test_fetch_for_host_links_weights_into_a_models_folder(
    registries: Regs, push_weights: Push, tmp_path: Path
) -> None:
    """The local/ssh backends' one call: weights cached, symlinked into the models dir, phase recorded."""
    from nomad.node import PhaseRecorder, fetch_for_host
    from nomad.node.phases import jsonl, read_jsonl

    pushed = push_weights(TWO, seed="host")
    image = f"{registries[False].split('://', 1)[1]}/{pushed.ref.split('/', 1)[1]}"
    rec = PhaseRecorder("w", jsonl(tmp_path / "ev.jsonl"))
    fetch_for_host(image, cache_dir=tmp_path / "c", link_into=tmp_path / "models", recorder=rec)
    for dest, data in pushed.files.items():
        assert (tmp_path / "models" / dest).read_bytes() == data
    (ev,) = read_jsonl(tmp_path / "ev.jsonl")
    assert ev["phase"] == "weights_fetch" and ev["bytes_moved"] > 0


def test_cli_writes_mount_args_links_and_events(
    registries: Regs, push_weights: Push, tmp_path: Path
) -> None:
    """`nomad node pull --mounts-out --link-into --events --json`: every output a run script reads."""
    from nomad.node.phases import read_jsonl

    pushed = push_weights(TWO, seed="cli")
    image = f"{registries[False].split('://', 1)[1]}/{pushed.ref.split('/', 1)[1]}"
    code, out, err = run_nomad(
        tmp_path / "d", "node", "pull", image, "--cache-dir", str(tmp_path / "c"),
        "--mounts-out", str(tmp_path / "m.args"), "--link-into", str(tmp_path / "models"),
        "--events", str(tmp_path / "ev.jsonl"), "--wake", "w9", "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["bytes_moved"] >= doc["weight_bytes"] and len(doc["layers"]) == 2
    args = (tmp_path / "m.args").read_text().split("\n")[:-1]
    assert args[0::2] == ["-v", "-v"]
    for spec in args[1::2]:
        src, dst, mode = spec.rsplit(":", 2)
        assert mode == "ro" and Path(src).read_bytes() == pushed.files[dst.split("/models/", 1)[1]]
    for dest, data in pushed.files.items():
        assert (tmp_path / "models" / dest).read_bytes() == data
    events = read_jsonl(tmp_path / "ev.jsonl")
    assert [e["event"] for e in events].count("node.weights.layer") == 2
    (phase,) = [e for e in events if e["event"] == "cold_start.phase"]
    assert (phase["phase"], phase["wake"], phase["ok"]) == ("weights_fetch", "w9", True)
    code, out, _ = run_nomad(
        tmp_path / "d", "node", "cache", "--cache-dir", str(tmp_path / "c"), "--json"
    )
    assert code == 0 and {e["path"] for e in json.loads(out)["entries"]} == set(pushed.files)
