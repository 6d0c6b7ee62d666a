"""Find Debian's chromium and the Python Playwright package; launch a headless browser.

Playwright never downloads a browser here: it drives the system chromium (`/usr/bin/chromium`, or
`$PORTRAITTALK_CHROMIUM`). `.ci/run` installs both; locally, `missing()` says what to install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

# Flags known to work on this kind of machine: no sandbox as root, no GPU, and no background
# connections (they are refused here, and some chromium versions then log errors).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-features=Translate,MediaRouter"]


def executable() -> str | None:
    explicit = os.environ.get("PORTRAITTALK_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the Python package 'playwright' is not installed (pip install playwright; no browser download needed)"
    if executable() is None:
        return "Debian chromium is not installed (apt-get install -y chromium), or set PORTRAITTALK_CHROMIUM"
    return None


def launch(playwright):
    """A headless chromium with a fresh profile (Playwright gives every launch a new user-data dir)."""
    return playwright.chromium.launch(executable_path=executable(), headless=True, args=FLAGS)
