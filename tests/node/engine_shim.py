"""EngineShim: a loopback stand-in for the `docker` CLI in the fetched-mode run script.

There is no GPU container runtime here, so this double does what the run
script needs from an engine, honestly and no more: ``login`` (reads the
password from stdin), ``pull -q IMAGE`` (recorded), ``run -d --name N … -v
SRC:DST:ro … IMAGE sh -c CMD`` (checks every SRC exists and is read-only,
records the mounts, starts CMD as a host process) and ``stop NAMES`` (kills
them). Everything it did is appended to ``$SHIM_LOG`` as JSON lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path


def _log(event: dict[str, object]) -> None:
    with open(os.environ["SHIM_LOG"], "a") as f:
        f.write(json.dumps(event) + "\n")


def main(argv: list[str]) -> int:
    state = Path(os.environ["SHIM_LOG"]).parent
    cmd, args = argv[0], argv[1:]
    if cmd == "login":
        _log(
            {
                "cmd": "login",
                "user": args[args.index("-u") + 1],
                "password_len": len(sys.stdin.read()),
            }
        )
        return 0
    if cmd == "pull":
        _log({"cmd": "pull", "image": args[-1]})
        return 0
    if cmd == "stop":
        for name in args:  # the whole session: `sh -c CMD` may leave CMD as its child
            pid = int((state / f"{name}.pid").read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        _log({"cmd": "stop", "names": args})
        return 0
    if cmd == "run":
        mounts, i, name = [], 0, ""
        while i < len(args):
            a = args[i]
            if a == "-v":
                src, dst, mode = args[i + 1].rsplit(":", 2)
                if mode != "ro" or not Path(src).is_file() or os.stat(src).st_mode & 0o222:
                    print(f"shim: bad mount {args[i + 1]}", file=sys.stderr)
                    return 125
                mounts.append({"source": src, "target": dst})
                i += 2
            elif a in ("--name", "--gpus", "--network", "--entrypoint"):
                name = args[i + 1] if a == "--name" else name
                i += 2
            elif a.startswith("-"):
                i += 1
            else:
                break
        image, command = args[i], args[i + 1 :]
        proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        (state / f"{name}.pid").write_text(str(proc.pid))
        _log({"cmd": "run", "name": name, "image": image, "mounts": mounts})
        return 0
    print(f"shim: unsupported {cmd}", file=sys.stderr)
    return 125


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
