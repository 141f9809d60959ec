"""The serve page in headless Chromium: it sends a prompt and draws the canvas filling in.

Run through scripts/test-page.sh (Debian's `chromium`, Playwright from PyPI as the driver).
Checks that masks are drawn first, that tokens land step by step until none is left, and writes
two screenshots (mid-way and finished) to the folder given by --screenshots.
"""

import argparse
import pathlib

from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    out = pathlib.Path(args.screenshots)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(args.url)
        page.fill("#prompt", "ROMEO:")
        page.fill("#max_tokens", "64")
        page.fill("#steps", "64")
        page.fill("#block_length", "64")
        page.fill("#delay", "60")
        page.click("#go")
        # Mid-way: some tokens drawn, some masks still waiting.
        page.wait_for_function(
            "document.querySelectorAll('#canvas .mask').length > 0"
            " && document.querySelectorAll('#canvas .mask').length < 40"
        )
        masks_mid = page.locator("#canvas .mask").count()
        page.screenshot(path=str(out / "page-denoising.png"))
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Done')", timeout=120_000)
        status = page.text_content("#status")
        masks_end = page.locator("#canvas .mask").count()
        cells = page.locator("#canvas span").count()
        page.screenshot(path=str(out / "page-done.png"))
        browser.close()
    assert 0 < masks_mid < 64, masks_mid
    assert masks_end == 0, f"{masks_end} masks left"
    assert cells == 64, cells
    assert "64 steps" in status, status
    print(f"page: {masks_mid} masks mid-way, none at the end; {status}")
    print(f"screenshots: {out / 'page-denoising.png'}, {out / 'page-done.png'}")


if __name__ == "__main__":
    main()
