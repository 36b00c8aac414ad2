#!/bin/sh
# Healthy when every ComfyUI started by entrypoint.sh answers /system_stats.
set -eu
BASE_PORT="${COMFYUI_BASE_PORT:-8188}"
N="${NOMAD_GPU_COUNT:-}"
if [ -z "$N" ]; then
    N=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    [ "${N:-0}" -gt 0 ] || N=1
fi
i=0
while [ "$i" -lt "$N" ]; do
    curl -fsS --max-time 4 "http://127.0.0.1:$((BASE_PORT + i))/system_stats" >/dev/null || exit 1
    i=$((i + 1))
done
