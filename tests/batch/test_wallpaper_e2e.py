"""The wallpaper flow end to end, on SQLite and on PostgreSQL.

enqueue (the batch door inside serve) → wake (local backend starts a
FakeComfy process) → generate (the real worker and ComfyUI client run the
built-in flux_schnell workflow) → filter (a hook rejects the first result:
the slot runs again with a new seed) → store → manifest + latest → the idle
cluster goes down.

Real: `serve()` with its autoscaler, workers and batch door, the local
backend, the queue (both backends), SeaweedFS, Pillow. Double: FakeComfy (a
ComfyUI protocol double, run as a process the way the local backend runs
ComfyUI); it makes 8x8 PNGs whose pixels derive from the seed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from nomad.queue import open_queue
from nomad.testing.wait import eventually_async
from tests.serve.test_serve_e2e import free_port_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOOK = """\
import pathlib


def check(path):
    '''Reject the first result this process sees (to prove a re-run), accept the rest.'''
    seen = pathlib.Path(__file__).with_name("seen-first")
    if not seen.exists():
        seen.write_text(path)
        return (False, "first result rejected on purpose")
    return (True, "fine")
"""


async def test_wallpaper_enqueue_wake_generate_filter_store_ready_down(
    queue_url: str, stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """One slot: first result rejected, second (new seed) stored with manifest + latest; GPU down."""
    from nomad.config import load_config
    from nomad.serve.server import ServeOptions, serve
    from nomad.storage import Storage

    bucket = f"wp-{uuid.uuid4().hex[:10]}"
    storage = Storage(stack.s3_settings(bucket))
    storage.ensure_bucket()
    hook = f"wallpaper_hook_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{hook}.py").write_text(HOOK)
    comfy = [sys.executable, "-m", "nomad.testing.comfy", "--host", "127.0.0.1", "--port", "{port}"]
    config = {
        "project": "wp",
        "image": {"comfyui": {"port": free_port_pair()}},
        "queue": {"lease_seconds": 30},
        "infra": {
            "backend": "local",
            "idle_minutes": 0.05,
            "local": {
                "mode": "command",
                "command": comfy,
                "gpus": 1,
                "price_per_hour": 0.9,
                "gpu_name": "fake-gpu",
            },
        },
        "batch": {
            "jobs": [
                {
                    "name": "wallpaper",
                    "schedule": "0 7 * * *",
                    "workflow": "flux_schnell",
                    "params": {"prompt": "a calm lake at dawn"},
                    "output_key": "wallpapers/{date}/{time}/{index}{ext}",
                    "latest_key": "wallpapers/latest.json",
                    "filters": [
                        {"check": "min_bytes", "bytes": 50},
                        {"check": "blank"},
                        {"check": "size", "width": 8, "height": 8},
                        {"check": "python", "entry": f"{hook}:check"},
                    ],
                    "max_tries": 3,
                }
            ]
        },
    }
    path = tmp_path / "nomad.yaml"
    path.write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path, environ={})
    queue = open_queue(queue_url, tmp_path)
    opts = ServeOptions(
        interval=0.2, grace_seconds=5, with_batch=True, batch_interval=0.3,
        health_timeout_s=60, config_path=str(path),
    )  # fmt: skip
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="nomad.serve")
    server = asyncio.create_task(
        serve(cfg, tmp_path / "data", options=opts, queue=queue, storage=storage, stop=stop)
    )
    try:

        def latest() -> dict[str, Any] | None:
            assert not server.done(), server
            if not storage.exists("wallpapers/latest.json"):
                return None
            return dict(json.loads(storage.get_bytes("wallpapers/latest.json")))

        pointer = await eventually_async(latest, timeout=180, interval=0.3, what="latest.json")
        await eventually_async(
            lambda: (queue.get_state("autoscaler", "status") or {}).get("state") == "cold",
            timeout=120, interval=0.3, what="the idle cluster to go down",
        )  # fmt: skip
    finally:
        stop.set()
        await asyncio.wait_for(server, 120)
    try:
        jobs = sorted(
            (j for j in queue.list(limit=50) if j.front_door == "batch"),
            key=lambda j: j.meta["try"],
        )
        first, second = jobs  # one slot, two tries
        slot = dt.datetime.fromisoformat(first.meta["slot"])
        assert second.meta["slot"] == first.meta["slot"] and second.meta["try"] == 2
        assert first.params["seed"] != second.params["seed"]
        key = f"wallpapers/{slot:%Y-%m-%d}/{slot:%H%M}/0.png"
        manifest_key = f"wallpapers/{slot:%Y-%m-%d}/{slot:%H%M}/manifest.json"
        assert pointer["manifest_key"] == manifest_key and pointer["keys"] == [key]
        image = storage.get_bytes(key)
        assert image == storage.get_bytes(second.outputs[0]) and image.startswith(b"\x89PNG")
        from nomad.testing.comfy import png_text

        made_from = json.loads(json.loads(png_text(image)["fakecomfy"])["seeds"])
        assert second.params["seed"] in made_from  # the stored image is the second seed's
        manifest = json.loads(storage.get_bytes(manifest_key))
        assert manifest["job"] == second.id and manifest["seed"] == second.params["seed"]
        assert [t["job"] for t in manifest["tries"]] == [first.id, second.id]
        assert manifest["tries"][0]["rejected"] == "python: first result rejected on purpose"
        assert manifest["outputs"][0]["size"] == len(image) and manifest["gpu"] == "fake-gpu"
        assert manifest["cost"]["run_usd"] > 0
        assert storage.list("wallpapers/") == sorted(["wallpapers/latest.json", key, manifest_key])
        from nomad import batch
        from nomad.queue.ledger import ClusterLedger

        view = batch.job_view(queue, queue.get(second.id), project="wp")
        assert view is not None and view["ready"] and view["stored_keys"] == [key]
        rows = ClusterLedger(queue, "wp").rows_since(0.0)  # type: ignore[arg-type]
        if rows:  # serve records its wakes in the cluster ledger: the billed figure
            assert view["cost"]["basis"].startswith("billed: cluster ledger row")
            assert view["cost"]["total_usd"] > manifest["cost"]["run_usd"]
        else:  # no ledger rows from this serve: the estimate written with the manifest
            assert view["cost"] == manifest["cost"]
            assert manifest["cost"]["basis"].startswith("estimate")
        assert manifest["cost"]["tries"] == 2  # the rejected try was paid for too
        log = caplog.text
        assert "batch.queued batch=wallpaper" in log and "batch.retry" in log
        assert "batch.ready manifest=" + manifest_key in log
        assert "cluster.down cluster=wp-serve reason=idle" in log
    finally:
        queue.close()
