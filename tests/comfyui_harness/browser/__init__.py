"""Helpers for driving ComfyUI's frontend in headless Debian chromium with Playwright (tests only)."""
