"""The GPUQuota tree in Kueue's model, on the worked example of deploy/examples/site/10-queues.yaml."""

from pathlib import Path

import pytest

from leitstand.cli.simulating import quota_specs
from leitstand.errors import UserError
from leitstand.kube import kueue
from leitstand.kube.resources import GPUQuotaSpec

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "site" / "10-queues.yaml"
SHARED = {"leitstand.dev/shared": "true"}


def quotas(flavor: dict[str, object], name: str = "nvidia.com/gpu") -> dict[str, object]:
    """One flavor's quota of ``name``, as a dict of its fields."""
    resources = flavor["resources"]
    assert isinstance(resources, list)
    return next(r for r in resources if r["name"] == name)


def flavor_quotas(obj: dict[str, object]) -> dict[str, dict[str, object]]:
    spec = obj["spec"]
    assert isinstance(spec, dict)
    (group,) = spec["resourceGroups"]
    assert group["coveredResources"] == ["nvidia.com/gpu"]
    return {flavor["name"]: quotas(flavor) for flavor in group["flavors"]}


@pytest.fixture(scope="module")
def example() -> kueue.Translation:
    return kueue.translate(quota_specs(EXAMPLE), shared_node_labels=SHARED)


def test_the_worked_example_becomes_cohorts_cluster_queues_and_local_queues(example: kueue.Translation) -> None:
    kinds = [o["kind"] for o in example.objects]
    assert kinds.count("Topology") == 1
    assert sorted(example.named("ResourceFlavor")) == ["b200", "rtx-pro-6000", "soofi-b200"]
    assert sorted(example.named("Cohort")) == ["industry", "research", "root"]
    assert sorted(example.named("ClusterQueue")) == ["acme-robotics", "helix-pharma", "nordwind-energy", "soofi"]
    locals_ = [
        (o["metadata"]["namespace"], o["spec"]["clusterQueue"]) for o in example.objects if o["kind"] == "LocalQueue"
    ]
    assert sorted(locals_) == [
        ("acme-robotics", "acme-robotics"),
        ("helix-pharma", "helix-pharma"),
        ("nordwind-energy", "nordwind-energy"),
        ("soofi", "soofi"),
    ]
    # parents before children: a cohort exists before what names it
    order = [o["metadata"]["name"] for o in example.objects]
    assert order.index("root") < order.index("industry") < order.index("acme-robotics")


def test_a_cohort_holds_what_its_guarantee_adds_beyond_its_childrens(example: kueue.Translation) -> None:
    cohorts = example.named("Cohort")
    # root: 10,000 B200 guaranteed, 2,000 + 7,000 to its children; 800 RTX PRO, all to industry
    assert flavor_quotas(cohorts["root"])["b200"]["nominalQuota"] == "1000"
    assert flavor_quotas(cohorts["root"])["rtx-pro-6000"]["nominalQuota"] == "0"
    assert "parentName" not in cohorts["root"]["spec"]
    # research: 2,000 of which soofi's 1,040 are its pool's
    assert flavor_quotas(cohorts["research"])["b200"]["nominalQuota"] == "960"
    assert cohorts["research"]["spec"]["parentName"] == "root"
    # industry: 7,000 of which 3,000 + 2,000 + 1,000 to its tenants; its weight is its B200 weight
    assert flavor_quotas(cohorts["industry"])["b200"]["nominalQuota"] == "1000"
    assert cohorts["industry"]["spec"]["fairSharing"] == {"weight": "3"}
    # the whole site adds up: 8,960 shared B200 and SOOFI's 1,040
    total = sum(
        int(flavor_quotas(o)["b200"]["nominalQuota"])
        for o in example.objects
        if o["kind"] in ("Cohort", "ClusterQueue")
    )
    assert total == 10_000 - 1040


def test_a_cluster_queue_has_its_guarantee_as_nominal_and_its_limit_as_borrowing(example: kueue.Translation) -> None:
    queues = example.named("ClusterQueue")
    nordwind = queues["nordwind-energy"]["spec"]
    assert nordwind["cohortName"] == "industry"
    assert flavor_quotas(queues["nordwind-energy"])["b200"] == {
        "name": "nvidia.com/gpu",
        "nominalQuota": "2000",
        "borrowingLimit": "2000",
    }
    assert nordwind["namespaceSelector"]["matchExpressions"][0]["values"] == ["nordwind-energy"]
    assert nordwind["preemption"] == {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority"}
    acme = flavor_quotas(queues["acme-robotics"])
    assert acme["b200"] == {"name": "nvidia.com/gpu", "nominalQuota": "3000"}  # no limit: borrows without bound
    assert acme["rtx-pro-6000"] == {"name": "nvidia.com/gpu", "nominalQuota": "400"}
    assert acme["soofi-b200"] == {"name": "nvidia.com/gpu", "nominalQuota": "0"}  # may borrow SOOFI's idle nodes
    assert queues["acme-robotics"]["spec"]["fairSharing"] == {"weight": "2"}


def test_a_reservation_becomes_a_flavor_only_its_owner_has_quota_in(example: kueue.Translation) -> None:
    pool = example.named("ResourceFlavor")["soofi-b200"]["spec"]
    assert pool["nodeLabels"] == {"nvidia.com/gpu.product": "NVIDIA-B200", "leitstand.dev/pool": "soofi"}
    assert pool["topologyName"] == kueue.TOPOLOGY
    shared = example.named("ResourceFlavor")["b200"]["spec"]
    assert shared["nodeLabels"] == {"nvidia.com/gpu.product": "NVIDIA-B200", **SHARED}
    soofi = flavor_quotas(example.named("ClusterQueue")["soofi"])
    assert soofi["soofi-b200"] == {"name": "nvidia.com/gpu", "nominalQuota": "1040"}  # lendIdle: no lending limit
    assert soofi["b200"] == {"name": "nvidia.com/gpu", "nominalQuota": "0", "borrowingLimit": "0"}  # limit 1,040
    topology = example.named("Topology")[kueue.TOPOLOGY]["spec"]["levels"]
    assert [level["nodeLabel"] for level in topology] == [
        "network.topology.nvidia.com/spine",
        "network.topology.nvidia.com/leaf",
        "kubernetes.io/hostname",
    ]


def test_what_does_not_carry_over_is_noted(example: kueue.Translation) -> None:
    assert "soofi: minRuntimeSeconds has no Kueue field and is dropped" in example.notes
    assert any(note.startswith("industry: overQuotaWeight differs") for note in example.notes)
    unlabelled = kueue.translate(quota_specs(EXAMPLE))
    assert any("span the reserved nodes of soofi" in note for note in unlabelled.notes)
    assert not any("span the reserved nodes" in note for note in example.notes)


def test_a_pool_kept_to_itself_lends_nothing() -> None:
    specs = {
        "root": GPUQuotaSpec.model_validate({"gpus": {"b200": {"guaranteed": 64}}}),
        "hero": GPUQuotaSpec.model_validate(
            {
                "parent": "root",
                "namespaces": ["hero"],
                "gpus": {"b200": {"guaranteed": 32}},
                "reservation": {"nodeSelector": {"pool": "hero"}, "lendIdle": False},
            }
        ),
    }
    result = kueue.translate(specs)
    assert flavor_quotas(result.named("ClusterQueue")["hero"])["hero-b200"] == {
        "name": "nvidia.com/gpu",
        "nominalQuota": "32",
        "lendingLimit": "0",
    }


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ({"a": {"parent": "nowhere"}}, "names parent nowhere"),
        ({"a": {"parent": "b"}, "b": {"parent": "a"}}, "form a cycle"),
        ({"a": {"gpus": {"h100": {"guaranteed": 8}}}}, "GPU type h100 has no product label"),
    ],
)
def test_a_broken_tree_is_one_clear_error(specs: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(UserError, match=message):
        kueue.translate({name: GPUQuotaSpec.model_validate(spec) for name, spec in specs.items()})


def test_a_quota_with_children_and_namespaces_gets_a_cohort_and_a_queue_in_it_counted_once() -> None:
    specs = {
        "lab": GPUQuotaSpec.model_validate({"namespaces": ["lab"], "gpus": {"b200": {"guaranteed": 16}}}),
        "team": GPUQuotaSpec.model_validate(
            {"parent": "lab", "namespaces": ["team"], "gpus": {"b200": {"guaranteed": 8}}}
        ),
    }
    result = kueue.translate(specs)
    assert result.named("ClusterQueue")["lab-jobs"]["spec"]["cohortName"] == "lab"
    assert result.named("ClusterQueue")["team"]["spec"]["cohortName"] == "lab"
    # the tree's 16 GPUs: 8 for the team, 8 for lab's own jobs, none besides in the cohort
    nominal = {
        o["metadata"]["name"]: flavor_quotas(o)["b200"]["nominalQuota"]
        for o in result.objects
        if o["kind"] in ("Cohort", "ClusterQueue")
    }
    assert nominal == {"lab": "0", "lab-jobs": "8", "team": "8"}


def test_an_owner_looks_in_its_pool_first_and_a_limit_holds_in_every_flavor() -> None:
    specs = {
        "root": GPUQuotaSpec.model_validate({"gpus": {"b200": {"guaranteed": 64}}}),
        "hero": GPUQuotaSpec.model_validate(
            {
                "parent": "root",
                "namespaces": ["hero"],
                "gpus": {"b200": {"guaranteed": 32, "limit": 48}},
                "reservation": {"nodeSelector": {"pool": "hero"}},
            }
        ),
        "team": GPUQuotaSpec.model_validate(
            {"parent": "root", "namespaces": ["team"], "gpus": {"b200": {"guaranteed": 16, "limit": 24}}}
        ),
    }
    result = kueue.translate(specs)
    hero = result.named("ClusterQueue")["hero"]["spec"]["resourceGroups"][0]["flavors"]
    assert [f["name"] for f in hero] == ["hero-b200", "b200"]
    team = flavor_quotas(result.named("ClusterQueue")["team"])
    assert team["b200"]["borrowingLimit"] == "8"
    assert team["hero-b200"] == {"name": "nvidia.com/gpu", "nominalQuota": "0", "borrowingLimit": "8"}
    assert any(note.startswith("team: Kueue limits borrowing per flavor") for note in result.notes)


def test_limits_kueue_would_refuse_at_the_top_are_dropped_with_a_note() -> None:
    specs = {
        "solo": GPUQuotaSpec.model_validate({"namespaces": ["solo"], "gpus": {"b200": {"guaranteed": 8, "limit": 16}}})
    }
    result = kueue.translate(specs)
    solo = result.named("ClusterQueue")["solo"]["spec"]
    assert "cohortName" not in solo
    assert "borrowingLimit" not in solo["resourceGroups"][0]["flavors"][0]["resources"][0]
    assert "solo: a queue outside every cohort cannot borrow; its limit is dropped" in result.notes
