"""Delivery: one loop per uplink, typed outcomes, backoff, circuit breaker."""
