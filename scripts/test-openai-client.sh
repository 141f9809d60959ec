#!/usr/bin/env bash
# Runs tests/openai_client.py (the official `openai` Python client, from PyPI) against
# `flowlm serve` on a free loopback port with the bundled model.
# Usage: scripts/test-openai-client.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/openai-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet openai
fi
cargo build --release --quiet -p flowlm-cli
log=$(mktemp)
"${CARGO_TARGET_DIR:-target}/release/flowlm" serve --port 0 --model "${1:-models/default}" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
    address=$(grep -o 'http://[0-9.]*:[0-9]*' "$log" | head -1 || true)
    [ -n "$address" ] && break
    sleep 0.2
done
if [ -z "${address:-}" ]; then
    echo "the server did not start:" >&2
    cat "$log" >&2
    exit 1
fi
"$venv/bin/python" tests/openai_client.py --base-url "$address/v1"
