"""A real headless browser for page tests: the distribution's Chromium driven by Playwright.

Playwright's own browser download needs the internet; Debian's ``chromium`` (installed by
``.ci/run``) needs nothing more. Missing locally: the test skips with the reason; in CI it fails.
"""

from __future__ import annotations

import contextlib
import tempfile

from conftest import require_binary

# Without these Chromium tries to reach Google's hosts at every start (refused on closed networks).
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium_page(**context_options):
    """A fresh page in a fresh profile; closed (with its browser) afterwards. ``context_options``:
    Playwright's (``http_credentials`` for basic auth, ...)."""
    executable = require_binary("chromium")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=FLAGS, **context_options
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
