"""Endoscope reprocessing: stations, cycles and cleanIds, and the records the platform needs."""
