"""Hypothesis strategies that write TrainingJob and GPUQuota manifests from the CRDs' own schemas.

Mostly valid values (within bounds, matching patterns, from the enums), and with some
probability a value just outside a bound, of the wrong type, or an unknown field, so
the API server sees both sides of every rule. Half of the manifests are drawn with
``strict`` values only (no deliberate mistakes), so many pass every structural rule and
reach the CEL rules and the operator.
"""

import string
from typing import Any

from hypothesis import strategies as st

GOOD_QUANTITIES = ["32", "500m", "1", "0.5", "224", "256Gi", "2Ti", "1e3", "1800Gi"]
QUANTITIES = [*GOOD_QUANTITIES, "lots", "12 GB", "-1", ""]


def _wrong() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=5), st.integers(-3, 3), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)
    )


def from_schema(schema: dict[str, Any], *, depth: int = 0, strict: bool = False) -> st.SearchStrategy[Any]:
    """Values for ``schema`` (a structural OpenAPI schema): mostly valid, or only valid when ``strict``."""
    strategy = _valid(schema, depth, strict)
    if strict:
        return strategy
    return st.one_of(strategy, strategy, strategy, strategy, strategy, strategy, strategy, strategy, strategy, _wrong())


POD_TEMPLATE = "x-test-pod-template"  # stands for core/v1's PodTemplateSpec in a spec's schema


def pod_templates(schema: dict[str, Any], *, strict: bool) -> st.SearchStrategy[Any]:
    """Pod templates: mostly a few realistic valid ones, varied; else drawn from core/v1's schema (which, a
    hundred fields wide, is nearly always wrong somewhere: the API server's own rules, not ours)."""
    containers = st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["trainer", "logger", "sidecar"]), "image": st.sampled_from(["nemo", "busybox"])},
            optional={
                "command": st.lists(st.sampled_from(["torchrun", "train.py", "--nproc-per-node=8"]), max_size=3),
                "resources": st.fixed_dictionaries({}, optional={
                    "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), st.sampled_from(GOOD_QUANTITIES)),
                    "limits": st.dictionaries(st.sampled_from(["cpu", "rdma/ib"]), st.sampled_from(["1", "8"]))}),
            },
        ),
        min_size=1,
        max_size=2,
        unique_by=lambda container: container["name"],
    )  # fmt: skip
    valid = st.fixed_dictionaries(
        {"spec": st.fixed_dictionaries({"containers": containers}, optional={
            "terminationGracePeriodSeconds": st.integers(0, 3600),
            "volumes": st.just([{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}}]),
            "nodeSelector": st.dictionaries(st.sampled_from(["pool", "zone"]), st.sampled_from(["a", "b"]))})},
        optional={"metadata": st.fixed_dictionaries({}, optional={
            "annotations": st.dictionaries(st.sampled_from(["note", "leitstand.dev/sim-duration"]),
                                           st.sampled_from(["1s", "x"]))})},
    )  # fmt: skip
    if strict:
        return valid
    plain = {key: value for key, value in schema.items() if key != POD_TEMPLATE}
    return st.one_of(valid, valid, valid, valid, valid, valid, valid, _valid(plain, 3, strict=False))


def _valid(schema: dict[str, Any], depth: int, strict: bool) -> st.SearchStrategy[Any]:
    if schema.get(POD_TEMPLATE):
        return pod_templates(schema, strict=strict)
    kind = schema.get("type")
    if "enum" in schema:
        if strict:
            return st.sampled_from(schema["enum"])
        return st.one_of(
            st.sampled_from(schema["enum"]),
            st.sampled_from(schema["enum"]),
            st.text(string.ascii_lowercase, max_size=8),
        )
    rules = " ".join(rule["rule"] for rule in schema.get("x-kubernetes-validations", []))
    if kind == "integer":
        low, high = schema.get("minimum", -(10**6)), schema.get("maximum", 10**6)
        if strict:
            return st.one_of(st.integers(low, min(high, low + 64)), st.integers(low, high))
        return st.one_of(
            st.integers(low, min(high, low + 64)),
            st.integers(low, high),
            st.sampled_from([low - 1, high + 1, low, high]),
        )
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=10**6)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if "isQuantity" in rules:
            return st.sampled_from(GOOD_QUANTITIES if strict else QUANTITIES)
        if "format" in schema and schema["format"] == "date-time":
            return st.sampled_from(["2027-01-15T08:00:00Z"] if strict else ["2027-01-15T08:00:00Z", "yesterday"])
        size = schema.get("maxLength", 64)
        if "pattern" in schema:
            matching = st.from_regex(schema["pattern"], fullmatch=True).filter(lambda text: len(text) <= size)
            return matching if strict else st.one_of(matching, st.text(max_size=8))
        return st.text(min_size=schema.get("minLength", 0), max_size=min(size, 40))
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        return st.lists(
            from_schema(items, depth=depth + 1, strict=strict) if depth < 4 else st.text(max_size=4),
            max_size=min(schema.get("maxItems", 4), 4) + (0 if strict else 1),
        )
    if kind == "object":
        properties = schema.get("properties")
        if properties:
            required = set(schema.get("required", []))
            fields = {
                name: from_schema(sub, depth=depth + 1, strict=strict) for name, sub in properties.items() if depth < 5
            }
            strategy = st.fixed_dictionaries(
                {name: value for name, value in fields.items() if name in required},
                optional={name: value for name, value in fields.items() if name not in required},
            )
            if strict:
                return strategy
            return st.one_of(
                strategy,
                strategy,
                strategy,
                st.builds(lambda d, k: {**d, k: 1}, strategy, st.sampled_from(["unknown", "gpu", "Replicas"])),
            )
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            keys = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
            if not strict:
                keys = st.one_of(keys, st.text(max_size=6))
            return st.dictionaries(keys, from_schema(values, depth=depth + 1, strict=strict), max_size=3)
        return st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)
    return _wrong()


def manifests(kind: str, crd: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Whole manifests of ``kind``: a valid name, and a spec drawn from the CRD's schema."""
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    if "template" in spec.get("properties", {}):
        properties = {**spec["properties"], "template": {**spec["properties"]["template"], POD_TEMPLATE: True}}
        spec = {**spec, "properties": properties}
    names = st.one_of(
        st.from_regex(r"[a-z][a-z0-9]{0,20}", fullmatch=True), st.sampled_from(["9lives", "x" * 60, "ok-name"])
    )
    return st.builds(
        lambda name, body: {
            "apiVersion": "leitstand.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": body,
        },
        names,
        st.one_of(from_schema(spec), from_schema(spec, strict=True)),
    )
