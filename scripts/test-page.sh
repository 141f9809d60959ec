#!/usr/bin/env bash
# Runs tests/page_test.py: the serve page in headless Chromium (Debian's `chromium`; Playwright
# from PyPI drives it), against `flowlm serve` on a free loopback port. Screenshots go to
# target/page-screenshots/. Usage: scripts/test-page.sh
set -euo pipefail
cd "$(dirname "$0")/.."
chromium=$(command -v chromium || true)
if [ -z "$chromium" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q chromium >/dev/null
    chromium=$(command -v chromium || true)
fi
if [ -z "$chromium" ]; then
    echo "needs Debian's chromium: apt-get install chromium" >&2
    exit 1
fi
venv=target/page-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet playwright
fi
source scripts/serve-in-background.sh
"$venv/bin/python" tests/page_test.py --url "$address/" --chromium "$chromium" --screenshots target/page-screenshots
