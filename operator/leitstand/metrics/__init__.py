"""Prometheus metrics: observes decisions and the store; never decides or writes to the API."""
