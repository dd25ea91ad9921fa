"""The CRDs are generated from the models, structural, described, and in step with crds/."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leitstand import locations
from leitstand.kube import resources, schemas
from tests import templates

CRDS = Path(locations.PACKAGE_DIR).parent.parent / "crds"


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def root_schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, definition in schemas.definitions().items():
        yield name, definition["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_crds_directory_matches_what_the_models_generate() -> None:
    generated = {name: schemas.render(definition) for name, definition in schemas.definitions().items()}
    on_disk = {path.name: path.read_text() for path in CRDS.glob("*.yaml")}
    assert on_disk == generated, "crds/ is stale: run `make crds` and commit the result"


@pytest.mark.parametrize("crd", ["trainingjobs.leitstand.dev.yaml", "gpuquotas.leitstand.dev.yaml"])
def test_every_field_has_a_description_for_kubectl_explain(crd: str) -> None:
    root = dict(root_schemas())[crd]
    fields = [*walk(root["properties"]["spec"], ".spec"), *walk(root["properties"]["status"], ".status")]
    fields = [(path, node) for path, node in fields if not path.startswith(".spec.template.")]  # core/v1's own
    scalar_items = [path for path, node in fields if path.endswith(("[]", "{}")) and node["type"] != "object"]
    missing = [path for path, node in fields if "description" not in node and path not in scalar_items]
    assert missing == []


def test_the_schemas_are_structural() -> None:
    for name, root in root_schemas():
        for path, node in walk(root):
            assert not {"oneOf", "allOf", "$ref", "title"} & node.keys(), f"{name} {path}"
            assert node.get("default", 0) is not None, f"{name} {path} defaults to null"
            if node.get("x-kubernetes-int-or-string"):  # the one union a structural schema allows
                assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], f"{name} {path}"
            elif path.startswith(".spec") or path.startswith(".status"):
                assert "anyOf" not in node, f"{name} {path}"
                assert "type" in node, f"{name} {path} has no type"


def test_the_models_parse_what_the_api_server_stores() -> None:
    spec = resources.TrainingJobSpec.model_validate(
        {
            "replicas": 128,
            "gpusPerReplica": 8,
            "priority": "build",
            "topology": {"required": "spine", "preferred": "leaf"},
            "backoffLimit": 3,
            "template": templates.pod(image="nemo", env=[{"name": "NCCL_DEBUG", "value": "WARN"}]),
        }
    )
    assert (spec.replicas, spec.gpus_per_replica, spec.gpu_type) == (128, 8, None)
    assert spec.topology is not None
    assert spec.topology.required == "spine"
    quota = resources.GPUQuotaSpec.model_validate({"parent": "root", "gpus": {"b200": {"guaranteed": 400}}})
    assert quota.gpus["b200"].over_quota_weight == 1
    assert quota.gpus["b200"].limit is None
