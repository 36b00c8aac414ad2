#!/bin/sh
# Start one ComfyUI per visible GPU: GPU i listens on COMFYUI_BASE_PORT+i.
# If any server exits, stop the others and exit with its status, so the
# orchestrator (SkyPilot, docker, systemd) sees the failure and restarts us.
#
# Environment:
#   NOMAD_GPU_COUNT    number of servers (default: GPUs from nvidia-smi, else 1)
#   COMFYUI_BASE_PORT  first port (default 8188)
#   COMFYUI_LISTEN     address to bind (default 0.0.0.0)
#   COMFYUI_ARGS       extra arguments for main.py
#   COMFYUI_CMD        the server command (default: python main.py in COMFYUI_DIR)
set -eu

COMFYUI_DIR="${COMFYUI_DIR:-/opt/ComfyUI}"
BASE_PORT="${COMFYUI_BASE_PORT:-8188}"
LISTEN="${COMFYUI_LISTEN:-0.0.0.0}"
CMD="${COMFYUI_CMD:-python ${COMFYUI_DIR}/main.py}"

count_gpus() {
    if [ -n "${NOMAD_GPU_COUNT:-}" ]; then echo "$NOMAD_GPU_COUNT"; return; fi
    if command -v nvidia-smi >/dev/null 2>&1; then
        n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
        if [ "${n:-0}" -gt 0 ]; then echo "$n"; return; fi
    fi
    echo 1
}

N=$(count_gpus)
PIDS=""
stop_all() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
}
trap 'stop_all; exit 143' TERM INT

i=0
while [ "$i" -lt "$N" ]; do
    port=$((BASE_PORT + i))
    echo "nomad: starting ComfyUI on GPU $i, port $port" >&2
    # shellcheck disable=SC2086  # CMD and COMFYUI_ARGS are word lists on purpose
    CUDA_VISIBLE_DEVICES="$i" $CMD --listen "$LISTEN" --port "$port" \
        --disable-auto-launch ${COMFYUI_ARGS:-} &
    PIDS="$PIDS $!"
    i=$((i + 1))
done

# Wait for the first server to exit (busybox/dash `wait` has no -n: poll the pids).
while :; do
    for p in $PIDS; do
        if ! kill -0 "$p" 2>/dev/null; then
            status=0
            wait "$p" || status=$?
            echo "nomad: ComfyUI (pid $p) exited with $status; stopping the others" >&2
            stop_all
            exit "$status"
        fi
    done
    sleep 1
done
