"""Shared vocabulary below drivers and domains: tag identity, reprocessing step kinds, patterns."""
