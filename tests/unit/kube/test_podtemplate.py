"""The pod template's schema: core/v1's OpenAPI made structural, as the CRD embeds it."""

import re

from leitstand.kube import podtemplate, schemas

REF = "#/components/schemas/"


def document() -> dict:
    """A small OpenAPI v3 document shaped as the API server's /openapi/v3/api/v1."""
    return {
        "components": {
            "schemas": {
                podtemplate.ROOT: {
                    "description": "template",
                    "properties": {
                        "metadata": {"allOf": [{"$ref": REF + podtemplate.OBJECT_META}], "default": {}},
                        "spec": {"allOf": [{"$ref": REF + "io.k8s.api.core.v1.PodSpec"}], "default": {}},
                    },
                    "type": "object",
                },
                podtemplate.OBJECT_META: {"type": "object", "properties": {"name": {"type": "string"}}},
                "io.k8s.api.core.v1.PodSpec": {
                    "type": "object",
                    "required": ["containers"],
                    "properties": {
                        "containers": {
                            "type": "array",
                            "items": {"allOf": [{"$ref": REF + "io.k8s.api.core.v1.Container"}], "default": {}},
                            "x-kubernetes-list-map-keys": ["name"],
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-patch-merge-key": "name",
                            "x-kubernetes-patch-strategy": "merge",
                        },
                    },
                },
                "io.k8s.api.core.v1.Container": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "description": "the name", "default": ""},
                        "limits": {
                            "type": "object",
                            "additionalProperties": {"$ref": REF + podtemplate.QUANTITY},
                        },
                        "port": {"allOf": [{"$ref": REF + podtemplate.INT_OR_STRING}]},
                        "ports": {
                            "type": "array",
                            "items": {"allOf": [{"$ref": REF + "io.k8s.api.core.v1.ContainerPort"}]},
                            "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                            "x-kubernetes-list-type": "map",
                        },
                    },
                },
                "io.k8s.api.core.v1.ContainerPort": {
                    "type": "object",
                    "required": ["containerPort"],
                    "properties": {
                        "containerPort": {"type": "integer", "format": "int32", "default": 0},
                        "protocol": {"type": "string", "default": "TCP"},
                    },
                },
                podtemplate.QUANTITY: {"oneOf": [{"type": "string"}, {"type": "number"}]},
                podtemplate.INT_OR_STRING: {
                    "format": "int-or-string",
                    "oneOf": [{"type": "integer"}, {"type": "string"}],
                },
            }
        }
    }


def test_references_are_inlined_and_only_what_a_crd_takes_is_kept() -> None:
    schema = podtemplate.structural(document())
    assert schema["properties"]["metadata"]["properties"].keys() == {"labels", "annotations"}
    containers = schema["properties"]["spec"]["properties"]["containers"]
    assert containers["x-kubernetes-list-type"] == "map"
    assert "x-kubernetes-patch-merge-key" not in containers
    container = containers["items"]
    assert container["required"] == ["name"]
    assert container["properties"]["name"] == {"type": "string"}  # no description, no default
    quantity = container["properties"]["limits"]["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True
    assert quantity["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert container["properties"]["port"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    }


def test_a_list_maps_optional_key_keeps_its_default() -> None:
    container = podtemplate.structural(document())["properties"]["spec"]["properties"]["containers"]["items"]
    port = container["properties"]["ports"]["items"]["properties"]
    assert port["protocol"] == {"type": "string", "default": "TCP"}  # a key the API server would else refuse
    assert port["containerPort"] == {"type": "integer", "format": "int32"}  # required: its default goes


def test_the_quantity_pattern_is_the_quantity_syntax() -> None:
    good = ["1", "500m", "1.5Gi", "1e3", "8", "+2", ".5", "2Ti", "100k"]
    bad = ["abc", "12 GB", "1.5 Gi", "Gi", "", "1ki"]
    assert all(re.match(podtemplate.QUANTITY_PATTERN, q) for q in good)
    assert not any(re.match(podtemplate.QUANTITY_PATTERN, q) for q in bad)


def test_the_crd_embeds_the_checked_in_schema_whole() -> None:
    crd = schemas.definitions()["trainingjobs.leitstand.dev.yaml"]
    template = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["template"]
    assert {k: v for k, v in template.items() if k != "description"} == podtemplate.load()
    assert "containers" in template["properties"]["spec"]["required"]
