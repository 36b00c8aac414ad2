#!/bin/sh
# Install the pinned custom nodes listed in $1 (GIT_URL@REV per line, # comments).
set -eu
LIST="$1"
DEST="${COMFYUI_DIR:-/opt/ComfyUI}/custom_nodes"
mkdir -p "$DEST"
grep -v '^[[:space:]]*#' "$LIST" | grep -v '^[[:space:]]*$' | while read -r spec; do
    url="${spec%@*}"
    rev="${spec##*@}"
    if [ "$url" = "$spec" ] || [ -z "$rev" ]; then
        echo "custom node '$spec' is not pinned (want URL@REV)" >&2
        exit 1
    fi
    name=$(basename "$url" .git)
    git clone --quiet "$url" "$DEST/$name"
    git -C "$DEST/$name" checkout --quiet "$rev"
    if [ -f "$DEST/$name/requirements.txt" ]; then
        pip install -c /opt/torch-constraints.txt -r "$DEST/$name/requirements.txt"
    fi
done
