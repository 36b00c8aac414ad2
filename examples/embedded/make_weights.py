"""Write the three stand-in weight files the embedded example bakes in.

They are NOT real models: deterministic pseudo-random bytes (SHA-256 in
counter mode), so every machine produces the same files and nomad.yaml can
pin their sha256. Real weights are multi-GB downloads; these keep the demo
offline and quick while exercising exactly the same build and push path.

    python examples/embedded/make_weights.py
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = {  # name -> size in bytes (different sizes on purpose)
    "standin-unet.safetensors": 6 * 1024 * 1024 + 123,
    "standin-clip.safetensors": 2 * 1024 * 1024 + 7,
    "standin-vae.safetensors": 300 * 1024 + 1,
}


def generate(name: str, size: int) -> bytes:
    """The file's bytes: sha256(name:counter) blocks, truncated to size."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def main(dest: Path = HERE / "weights") -> int:
    dest.mkdir(parents=True, exist_ok=True)
    for name, size in FILES.items():
        data = generate(name, size)
        (dest / name).write_bytes(data)
        print(f"{hashlib.sha256(data).hexdigest()}  {size:>9}  {dest / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "weights"))
