"""Debian's Chromium, driven by Playwright: how every browser test starts it."""

from __future__ import annotations

from playwright.sync_api import Browser, Playwright

#: Debian's package (a browser download does not work on these machines).
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright: Playwright) -> Browser:
    """A headless Chromium, quiet: no network of its own, no first-run chores."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
