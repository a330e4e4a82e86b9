"""Browser tests: the dashboard in headless Chromium (Debian package, driven by Playwright)."""
