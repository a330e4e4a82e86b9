"""Washer-disinfector receipts: ESC/POS stripping, parsers, printer and folder capture."""
