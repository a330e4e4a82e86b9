"""The HTTP platform kit: connection settings, one request ladder, answer rules as data, tokens."""
