"""Uplinks: one package per cloud; they do I/O only and answer with typed outcomes."""
