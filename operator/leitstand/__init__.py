"""Leitstand: a Kubernetes-native GPU scheduler for sovereign AI clouds.

Layers (enforced by import-linter, see pyproject.toml and the README's Layout):
``core`` is a pure function from a cluster snapshot to decisions; ``kube`` and
``sim`` feed it; ``controller`` wires it to a live API server; ``metrics`` and
``api`` observe it; ``cli`` and ``devcluster`` are the commands on top.
"""

__version__ = "0.1.0"
