"""The ``core/v1`` PodTemplateSpec schema of the TrainingJob CRD, made from the kube-apiserver's own OpenAPI.

``structural`` turns the API server's OpenAPI v3 document of ``/api/v1`` (what
``GET /openapi/v3/api/v1`` serves) into the structural schema a CRD may carry,
as controller-gen does for an embedded ``corev1.PodTemplateSpec``:

- every ``$ref`` inlined (the pod's types hold no cycle);
- descriptions and defaults dropped (the API server defaults the pods the
  operator creates, as it defaults any pod), except a default that a list
  map's key needs (a container port's ``protocol``);
- ``Quantity`` an integer or a string matching the quantity syntax, and
  ``IntOrString`` an integer or a string, both with ``x-kubernetes-int-or-string``;
- the patch-strategy and union markers dropped (CRDs do not take them), the
  list and map markers kept, so duplicate container names are refused;
- the template's ``metadata`` only its labels and annotations.

``SCHEMA_FILE`` holds the result for the Kubernetes release of ``hack/``; the
CRD generator embeds it, and an end-to-end test regenerates it from the
running API server and compares.
"""

import json
from pathlib import Path
from typing import Any

Schema = dict[str, Any]

SCHEMA_FILE = Path(__file__).with_name("podtemplatespec.json")
ROOT = "io.k8s.api.core.v1.PodTemplateSpec"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# The quantity syntax of resource.Quantity (sign, number, binary or decimal suffix, or exponent).
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_PATTERN = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"
_KEEP = {
    "type",
    "format",
    "properties",
    "items",
    "additionalProperties",
    "required",
    "enum",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}


def _reference(node: Schema) -> str | None:
    """The schema name a node refers to, directly or through a one-element ``allOf``."""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    every = node.get("allOf")
    if isinstance(every, list) and len(every) == 1 and "$ref" in every[0]:
        return str(every[0]["$ref"]).rsplit("/", 1)[-1]
    return None


def _convert(node: Schema, schemas: dict[str, Schema], seen: tuple[str, ...]) -> Schema:
    name = _reference(node)
    if name is not None:
        if name in seen:
            raise ValueError(f"the pod template's schema refers to itself through {name}")
        if name == QUANTITY:
            return {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": QUANTITY_PATTERN,
                "x-kubernetes-int-or-string": True,
            }
        if name == INT_OR_STRING:
            return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        return _convert(schemas[name], schemas, (*seen, name))
    result: Schema = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            result[key] = {field: _convert(inner, schemas, seen) for field, inner in sorted(value.items())}
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            result[key] = _convert(value, schemas, seen)
        elif key == "format" and value == "int-or-string":
            continue
        else:
            result[key] = value
    keys = result.get("x-kubernetes-list-map-keys") or []
    if keys:  # a list map's key must be required or defaulted: keep the API server's default of a key
        source_name = _reference(node.get("items") or {})
        source = schemas[source_name] if source_name else node.get("items") or {}
        item = result["items"]
        for key in keys:
            default = (source.get("properties") or {}).get(key, {}).get("default")
            if key not in (item.get("required") or []) and default is not None:
                item["properties"][key]["default"] = default
    return result


def structural(openapi: Schema) -> Schema:
    """The structural schema of a PodTemplateSpec, from the OpenAPI v3 document of ``/api/v1``."""
    schemas: dict[str, Schema] = openapi["components"]["schemas"]
    template = schemas[ROOT]
    spec = template["properties"]["spec"]
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": _STRING_MAP, "annotations": _STRING_MAP}},
            "spec": _convert(spec, schemas, (ROOT,)),
        },
    }


def render(schema: Schema) -> str:
    """The text of ``SCHEMA_FILE``: sorted, indented, one trailing newline (stable under regeneration)."""
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


def load() -> Schema:
    """The schema the CRD embeds."""
    loaded: Schema = json.loads(SCHEMA_FILE.read_text())
    return loaded
