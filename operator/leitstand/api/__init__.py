"""The read-only HTTP surface: status API, probes and /metrics on one uvicorn server."""
