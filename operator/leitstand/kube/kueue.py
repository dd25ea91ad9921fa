"""A GPUQuota tree in Kueue's model: a migration aid, and the setup of the side-by-side benchmark.

Pure: GPUQuota specs in, Kueue v1beta2 objects (plain dicts) out, with notes on what
does not carry over. The mapping, quota by quota:

- a GPUQuota with children becomes a **Cohort** (``parentName`` its parent). Its own
  nominal quota is what its guarantee adds beyond its children's guarantees, since a
  Kueue cohort's capacity is its children's plus its own; ``borrowingLimit`` is
  ``limit - guaranteed``; its fair-sharing weight is its ``overQuotaWeight``;
- a GPUQuota with namespaces becomes a **ClusterQueue** in its parent's cohort, with
  ``nominalQuota = guaranteed``, ``borrowingLimit = limit - guaranteed`` (none without a
  limit), the weight, a namespace selector of its namespaces, and preemption that
  reclaims within the cohort and, inside the queue, takes lower priorities; each of its
  namespaces gets a **LocalQueue** (``queue_name``) pointing at it. A quota with both
  children and namespaces becomes a cohort and a ClusterQueue ``<name>-jobs`` in it;
- every GPU type becomes a **ResourceFlavor** selecting the nodes of its product, with
  the **Topology** of the site's levels (spine, leaf, hostname) for topology-aware
  scheduling. A quota's ``reservation`` becomes a flavor of its own (``<quota>-<type>``,
  the product and the reservation's node selector) in which only that quota has nominal
  quota; with ``lendIdle`` the others may borrow it (nominal 0), without it its
  ``lendingLimit`` is 0.

What does not carry over is said in ``Translation.notes``: Kueue flavors select nodes by
equal labels only, so the shared flavor also spans reserved nodes unless the nodes
outside every reservation carry a label of their own (``shared_node_labels``);
``minRuntimeSeconds``, runtime limits, checkpoints, preemption notices and remembered
usage have no Kueue field; a weight differing across GPU types is one weight in Kueue.
Kueue covers only what its flavors list: the ClusterQueues cover ``nvidia.com/gpu``, so
the Kueue configuration must leave CPU and memory out of quota
(``resources.excludeResourcePrefixes``) as Leitstand does.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from leitstand.errors import UserError
from leitstand.kube import bodies
from leitstand.kube.resources import GPUQuotaSpec

API = "kueue.x-k8s.io/v1beta2"
TOPOLOGY = "leitstand-site"
QUEUE_NAME = "leitstand"  # the LocalQueue every namespace gets; jobs carry it as kueue.x-k8s.io/queue-name
HOSTNAME = "kubernetes.io/hostname"


@dataclass(frozen=True, slots=True)
class Translation:
    """Kueue objects in the order they can be applied, and what the translation could not say."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def named(self, kind: str) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o for o in self.objects if o["kind"] == kind}


def translate(
    quotas: Mapping[str, GPUQuotaSpec],
    *,
    settings: bodies.Settings | None = None,
    shared_node_labels: Mapping[str, str] | None = None,
    queue_name: str = QUEUE_NAME,
) -> Translation:
    """The Kueue objects of the GPUQuota tree ``quotas`` (by name); a UserError for a broken tree."""
    settings = settings or bodies.Settings()
    products = {short: product for product, short in settings.gpu_types.items()}
    children: dict[str, list[str]] = {name: [] for name in quotas}
    for name, spec in sorted(quotas.items()):
        if spec.parent is not None:
            if spec.parent not in quotas:
                raise UserError(f"GPUQuota {name} names parent {spec.parent}, which is not among the quotas given")
            children[spec.parent].append(name)
    types = sorted({gpu for spec in quotas.values() for gpu in spec.gpus})
    unknown = [gpu for gpu in types if gpu not in products]
    if unknown:
        raise UserError(f"GPU type {unknown[0]} has no product label in the settings; known: {sorted(products)}")
    notes: list[str] = []
    labels = dict(settings.topology)
    levels = [labels[level] for level in settings.levels if level != "node"] + [HOSTNAME]
    objects: list[dict[str, Any]] = [_object("Topology", TOPOLOGY, {"levels": [{"nodeLabel": n} for n in levels]})]

    reserved = {name: spec for name, spec in sorted(quotas.items()) if spec.reservation is not None}
    for gpu in types:
        selector = {bodies.GPU_PRODUCT_LABEL: products[gpu], **(shared_node_labels or {})}
        objects.append(_object("ResourceFlavor", gpu, {"nodeLabels": selector, "topologyName": TOPOLOGY}))
    pools: dict[str, list[str]] = {}  # reserving quota -> its flavors
    for owner, spec in reserved.items():
        assert spec.reservation is not None
        for gpu in sorted(spec.gpus):
            selector = {bodies.GPU_PRODUCT_LABEL: products[gpu], **spec.reservation.node_selector}
            flavor = {"nodeLabels": selector, "topologyName": TOPOLOGY}
            objects.append(_object("ResourceFlavor", f"{owner}-{gpu}", flavor))
            pools.setdefault(owner, []).append(gpu)
    if reserved and not shared_node_labels:
        notes.append(
            "the shared flavors select nodes by GPU product only, so they span the reserved nodes of "
            f"{', '.join(reserved)} too (Kueue selects by equal labels): label the other nodes and pass "
            "them as shared_node_labels to keep the reservations whole"
        )

    def flavors(name: str, spec: GPUQuotaSpec, *, beyond_children: bool, in_cohort: bool) -> list[dict[str, Any]]:
        """The flavor quotas of a ClusterQueue or of a cohort's own capacity: nominal = the guarantee (less the
        children's when ``beyond_children``); limits only ``in_cohort`` (Kueue refuses them at the top)."""
        shared: list[dict[str, Any]] = []
        pooled: list[dict[str, Any]] = []
        for gpu in types:
            share = spec.gpus.get(gpu)
            guaranteed = share.guaranteed if share else 0
            if beyond_children:
                guaranteed = max(0, guaranteed - sum(_guaranteed(quotas[c], gpu) for c in children[name]))
            if gpu in pools.get(name, []):
                guaranteed = 0  # the owner's guarantee is its pool's flavor
            quota: dict[str, Any] = {"name": bodies.GPU_RESOURCE, "nominalQuota": str(guaranteed)}
            if in_cohort and share is not None and share.limit is not None:
                quota["borrowingLimit"] = str(max(0, share.limit - share.guaranteed))
            shared.append({"name": gpu, "resources": [quota]})
        for owner, gpus in pools.items():
            reservation = quotas[owner].reservation
            assert reservation is not None
            for gpu in gpus:
                share = spec.gpus.get(gpu)
                mine = name == owner
                quota = {"name": bodies.GPU_RESOURCE, "nominalQuota": str(share.guaranteed if mine and share else 0)}
                if in_cohort and mine and not reservation.lend_idle:
                    quota["lendingLimit"] = "0"
                if in_cohort and share is not None and share.limit is not None and not mine:
                    quota["borrowingLimit"] = str(max(0, share.limit - share.guaranteed))
                (pooled if mine else shared).append({"name": f"{owner}-{gpu}", "resources": [quota]})
        result = pooled + shared  # an owner looks in its own pool first
        return [{"coveredResources": [bodies.GPU_RESOURCE], "flavors": result}]

    def weight(name: str, spec: GPUQuotaSpec) -> dict[str, Any]:
        weights = sorted({share.over_quota_weight for share in spec.gpus.values()})
        if len(weights) > 1:
            notes.append(f"{name}: overQuotaWeight differs across GPU types {weights}; Kueue has one weight, "
                         f"{weights[-1]} was taken")  # fmt: skip
        return {"weight": str(weights[-1] if weights else 1)}

    for name, spec in _parents_first(quotas):
        parent = spec.parent
        if children[name]:
            cohort: dict[str, Any] = {
                "resourceGroups": flavors(name, spec, beyond_children=True, in_cohort=parent is not None),
                "fairSharing": weight(name, spec),
            }
            if spec.namespaces:  # its own capacity is its ClusterQueue's
                for group in cohort["resourceGroups"]:
                    for flavor in group["flavors"]:
                        flavor["resources"][0]["nominalQuota"] = "0"
            if parent is not None:
                cohort["parentName"] = parent
            objects.append(_object("Cohort", name, cohort))
        if spec.namespaces:
            queue = f"{name}-jobs" if children[name] else name
            cluster_queue = {
                "cohortName": name if children[name] else parent,
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(spec.namespaces)}
                    ]
                },
                "resourceGroups": flavors(
                    name, spec, beyond_children=bool(children[name]), in_cohort=bool(children[name] or parent)
                ),
                "queueingStrategy": "BestEffortFIFO",
                "preemption": {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority"},
                "fairSharing": weight(name, spec),
            }
            if cluster_queue["cohortName"] is None:
                del cluster_queue["cohortName"]
            objects.append(_object("ClusterQueue", queue, cluster_queue))
            for namespace in sorted(spec.namespaces):
                local = _object("LocalQueue", queue_name, {"clusterQueue": queue})
                local["metadata"]["namespace"] = namespace
                objects.append(local)
        if parent is None and not children[name] and any(share.limit is not None for share in spec.gpus.values()):
            notes.append(f"{name}: a queue outside every cohort cannot borrow; its limit is dropped")
        if parent is None and children[name] and any(share.limit is not None for share in spec.gpus.values()):
            notes.append(f"{name}: Kueue refuses a borrowing limit on a cohort without a parent; its limit is dropped")
        if pools and any(share.limit is not None for share in spec.gpus.values()) and spec.namespaces:
            notes.append(f"{name}: Kueue limits borrowing per flavor, so its limit holds in each flavor of a type "
                         "(shared and reserved) but not across them")  # fmt: skip
        for field_name, what in (
            ("min_runtime_seconds", "minRuntimeSeconds"),
            ("default_runtime_limit", "defaultRuntimeLimit"),
            ("max_runtime_limit", "maxRuntimeLimit"),
            ("preemption_notice_seconds", "preemptionNoticeSeconds"),
            ("max_preemption_grace_seconds", "maxPreemptionGraceSeconds"),
        ):
            if getattr(spec, field_name):
                notes.append(f"{name}: {what} has no Kueue field and is dropped")
    return Translation(objects, notes)


def _guaranteed(spec: GPUQuotaSpec, gpu: str) -> int:
    share = spec.gpus.get(gpu)
    return share.guaranteed if share else 0


def _parents_first(quotas: Mapping[str, GPUQuotaSpec]) -> Sequence[tuple[str, GPUQuotaSpec]]:
    """The quotas, every parent before its children (a cycle is a UserError)."""
    ordered: list[tuple[str, GPUQuotaSpec]] = []
    placed: set[str] = set()
    pending = sorted(quotas.items())
    while pending:
        ready = [(n, s) for n, s in pending if s.parent is None or s.parent in placed]
        if not ready:
            raise UserError(f"the GPUQuotas {', '.join(n for n, _ in pending)} form a cycle of parents")
        ordered += ready
        placed.update(n for n, _ in ready)
        pending = [(n, s) for n, s in pending if n not in placed]
    return ordered


def _object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}
