"""Faithful fake clouds (aiohttp) for tests, the demo and integrators."""
