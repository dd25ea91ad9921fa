"""Clusters for the simulator from a node list such as the Alibaba v2023 ``openb_node_list_*.csv``.

The CSV has the header ``sn,cpu_milli,memory_mib,gpu,model``. A node's GPU
type is its model lower-cased; the list has no topology, so every node is a
domain of its own at the single level ``node``. (Profiles become nodes in the
CLI, through the same label mapping the operator uses.)
"""

import csv
from pathlib import Path

from leitstand.core.model import GPUType, Node, NodeName
from leitstand.sim.traces import MIB, TraceError

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
LEVELS = ("node",)


def node_list(path: Path) -> tuple[Node, ...]:
    """The nodes of a node-list CSV, in file order."""
    try:
        with path.open(newline="") as stream:
            reader = csv.DictReader(stream)
            if tuple(reader.fieldnames or ()) != NODE_COLUMNS:
                raise TraceError(f"{path}: a node list needs the header {','.join(NODE_COLUMNS)}")
            nodes = []
            for row in reader:
                try:
                    gpus, cpu, memory = int(row["gpu"]), int(row["cpu_milli"]), int(row["memory_mib"])
                except (TypeError, ValueError):
                    raise TraceError(
                        f"{path}:{reader.line_num}: gpu, cpu_milli and memory_mib must be whole numbers"
                    ) from None
                if min(gpus, cpu, memory) < 0:
                    raise TraceError(f"{path}:{reader.line_num}: gpu, cpu_milli and memory_mib cannot be negative")
                name = row["sn"].strip()
                model = (row["model"] or "").strip().lower()
                nodes.append(
                    Node(
                        name=NodeName(name),
                        gpu_type=GPUType(model) if model and gpus else None,
                        gpus=gpus,
                        cpu_millis=cpu,
                        memory_bytes=memory * MIB,
                        domains=(name,),
                    )
                )
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror}") from None
    if not nodes:
        raise TraceError(f"{path} lists no nodes")
    if len({node.name for node in nodes}) != len(nodes):
        raise TraceError(f"{path}: node names (column sn) must be unique")
    return tuple(nodes)
