"""The agent's local HTTP side: the API hospital systems call (the dashboard comes later)."""
