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
source scripts/serve-in-background.sh "${1:-models/default}"
"$venv/bin/python" tests/openai_client.py --base-url "$address/v1"
