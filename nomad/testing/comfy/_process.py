"""``python -m nomad.testing.comfy``: the double as a process standing in for ComfyUI."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from nomad.testing.comfy._server import FakeComfy


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m nomad.testing.comfy",
        description="FakeComfy: a ComfyUI protocol double (runs no model).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--gpu-name", default="FakeComfy GPU (protocol double)")
    p.add_argument("--vram-gb", type=float, default=24.0)
    p.add_argument("--delay", type=float, default=0.0, help="seconds per sampler step")
    p.add_argument(
        "--load-delay", type=float, default=0.0, help="seconds per model file a loader reads"
    )
    p.add_argument(
        "--models", help="JSON file {folder: [files]} of installed models (default: all)"
    )
    p.add_argument("--fail-at-node", default=None)
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    models = None
    if args.models:
        with open(args.models, encoding="utf-8") as fh:
            models = json.load(fh)
    fc = FakeComfy(
        host=args.host,
        port=args.port,
        gpu_name=args.gpu_name,
        vram_gb=args.vram_gb,
        delay=args.delay,
        load_delay=args.load_delay,
        models=models,
        fail_at_node=args.fail_at_node,
    )
    await fc.start()
    print(f"FakeComfy (ComfyUI protocol double) listening on {fc.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fc.aclose()


def main(argv: list[str] | None = None) -> None:
    """Run the double as a process until SIGTERM/SIGINT."""
    asyncio.run(_serve(_parse(argv)))
