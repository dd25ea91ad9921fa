"""The trace-driven simulator: drives ``leitstand.core`` on simulated time; no Kubernetes."""
