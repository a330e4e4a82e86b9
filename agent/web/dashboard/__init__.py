"""The web dashboard: server-rendered pages, live over SSE, actions behind an operator session."""
