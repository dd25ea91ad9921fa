"""Benchmark of the snapshot the operator builds each cycle from the watched bodies (``make bench``).

``kube.bodies.build`` turns nodes and pods into the core's snapshot: on the
industrial-ai-cloud profile (1,350 nodes), 10,000 pods with ``schedulerName:
leitstand``, owned by ReplicaSets (gangs of one), half of them bound. Prints the
best of five builds, in milliseconds.

Run: ``make bench`` (or ``python -m tests.bench.snapshot``). To compare two trees
side by side, run it twice with ``PYTHONPATH`` pointing at each tree's ``operator``.
"""

import time

from leitstand.devcluster import profiles
from leitstand.kube import bodies

PODS = 10_000


def main() -> None:
    nodes = profiles.nodes(profiles.load("industrial-ai-cloud"))
    for node in nodes:
        node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    pods = []
    for index in range(PODS):
        meta = {"name": f"p{index}", "namespace": f"ns{index % 50}", "creationTimestamp": "2027-01-15T08:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"rs{index // 4}",
                                     "uid": f"u{index // 4}", "controller": True}]}  # fmt: skip
        needs = {"requests": {"nvidia.com/gpu": "8", "cpu": "8", "memory": "64Gi"}}
        pod = {"metadata": meta, "spec": {"schedulerName": "leitstand", "containers": [{"name": "c", "resources": needs}]},
               "status": {"phase": "Pending"}}  # fmt: skip
        if index % 2:
            pod["spec"]["nodeName"] = nodes[index % len(nodes)]["metadata"]["name"]
            pod["status"] = {"phase": "Running", "startTime": "2027-01-15T08:00:00Z"}
        pods.append(pod)
    settings = bodies.Settings()
    seconds = []
    for _ in range(5):
        started = time.perf_counter()
        bodies.build(nodes, [], pods, settings)
        seconds.append(time.perf_counter() - started)
    print(f"snapshot of {PODS:,} pods on {len(nodes):,} nodes: best {min(seconds) * 1000:.0f} ms of 5")


if __name__ == "__main__":
    main()
