"""Cluster profiles become Node objects shaped like real DGX B200 / RTX PRO nodes."""

from collections import Counter
from pathlib import Path

import pytest

from leitstand.devcluster import profiles
from leitstand.errors import UserError


def leaf_sizes(nodes: list[dict[str, object]], prefix: str) -> list[int]:
    counts = Counter(
        n["metadata"]["labels"][profiles.LEAF_LABEL]  # type: ignore[index]
        for n in nodes
        if n["metadata"]["name"].startswith(prefix)  # type: ignore[index]
    )
    return [counts[leaf] for leaf in sorted(counts)]


def test_the_shipped_profiles_are_demo_dev_soofi_and_industrial_ai_cloud() -> None:
    assert profiles.available() == ["demo", "dev", "industrial-ai-cloud", "soofi"]


def test_dev_has_one_spine_two_leaf_groups_of_four_b200_and_two_rtx_pro_servers() -> None:
    nodes = profiles.nodes(profiles.load("dev"))
    assert leaf_sizes(nodes, "b200-") == [4, 4]
    assert {
        n["metadata"]["labels"][profiles.SPINE_LABEL] for n in nodes if n["metadata"]["name"].startswith("b200")
    } == {"b200-spine-1"}
    assert sum(1 for n in nodes if n["metadata"]["name"].startswith("rtxpro-")) == 2


def test_demo_is_the_site_in_small_with_a_soofi_block_that_fits_its_pretraining() -> None:
    profile = profiles.load("demo")
    nodes = profiles.nodes(profile)
    assert (profile.node_count, profile.gpu_count) == (166, 1328)
    assert leaf_sizes(nodes, "soofi-") == [32, 32, 32, 32, 2]
    assert {
        n["metadata"]["labels"][profiles.SPINE_LABEL] for n in nodes if n["metadata"]["name"].startswith("soofi-")
    } == {"soofi-spine-1"}
    assert {n["metadata"]["name"] for n in nodes if n["metadata"]["labels"].get("leitstand.dev/pool") == "soofi"} == {
        f"soofi-{i:04d}" for i in range(1, 131)
    }
    assert leaf_sizes(nodes, "b200-") == [8, 8, 8, 8]
    assert leaf_sizes(nodes, "rtxpro-") == [4]


def test_soofi_is_130_b200_under_one_spine_in_leaf_groups_of_32() -> None:
    profile = profiles.load("soofi")
    nodes = profiles.nodes(profile)
    assert (profile.node_count, profile.gpu_count) == (130, 1040)
    assert leaf_sizes(nodes, "b200-") == [32, 32, 32, 32, 2]
    assert {n["metadata"]["labels"][profiles.SPINE_LABEL] for n in nodes} == {"b200-spine-1"}
    assert {n["metadata"]["labels"]["leitstand.dev/pool"] for n in nodes} == {"soofi"}


def test_industrial_ai_cloud_is_10000_b200_gpus_eight_leaves_per_spine_and_100_rtx_pro() -> None:
    profile = profiles.load("industrial-ai-cloud")
    nodes = profiles.nodes(profile)
    b200 = [n for n in nodes if n["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-B200"]
    assert len(b200) * 8 == 10_000
    assert len(nodes) - len(b200) == 100
    spines = Counter(n["metadata"]["labels"][profiles.SPINE_LABEL] for n in b200)
    assert spines["b200-spine-1"] == 8 * 32
    assert len(spines) == 6
    soofi = [n for n in b200 if n["metadata"]["labels"].get("leitstand.dev/pool") == "soofi"]
    assert len(soofi) == 130
    assert {n["metadata"]["labels"][profiles.SPINE_LABEL] for n in soofi} == {"soofi-spine-1"}


def test_a_node_carries_gpu_feature_discovery_labels_and_allocatable_gpus() -> None:
    node = profiles.nodes(profiles.load("dev"))[0]
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-B200"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.memory"] == "183359"
    assert labels["kubernetes.io/hostname"] == node["metadata"]["name"] == "b200-0001"
    assert node["status"]["allocatable"] == {
        "cpu": "224", "memory": "2Ti", "pods": "110", "ephemeral-storage": "3Ti", "nvidia.com/gpu": "8",
        "rdma/rdma_shared_device_a": "63",  # the InfiniBand NICs, shared through the RDMA device plugin
    }  # fmt: skip
    rtx = profiles.nodes(profiles.load("dev"))[-1]
    assert "rdma/rdma_shared_device_a" not in rtx["status"]["allocatable"]
    assert node["metadata"]["annotations"][profiles.KWOK_ANNOTATION] == "fake"


def test_an_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(UserError, match="unknown profile 'nope'; choose one of demo, dev, industrial-ai-cloud, soofi"):
        profiles.load("nope")


def test_a_profile_file_with_a_typo_says_where(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text((profiles.load("dev").model_dump_json(by_alias=True)).replace('"leafSize"', '"leafsize"'))
    path.write_text(path.read_text())
    with pytest.raises(UserError, match=r"mine.yaml: pools.0.leafSize: Field required"):
        profiles.load(str(path))
