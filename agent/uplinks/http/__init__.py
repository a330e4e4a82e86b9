"""Generic HTTP uplink: POST each message as JSON, optional OAuth2 client-credentials token."""
