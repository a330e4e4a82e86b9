"""Zhejiang infection-control platform, endoscope module (seed 000): token, sign, form POSTs."""
