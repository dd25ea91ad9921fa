"""A TrainingJob's pod template (a core/v1 PodTemplateSpec) from a few words, for the tests.

``pod(cpu="200", annotations={...})`` is the template of one ``trainer`` container;
any other keyword goes into the pod spec as it is (``volumes=[...]``).
"""

from typing import Any

IMAGE = "nvcr.io/nvidia/pytorch:25.10-py3"


def pod(
    *,
    image: str = IMAGE,
    command: list[str] | None = None,
    env: list[dict[str, str]] | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "trainer", "image": image}
    if command:
        container["command"] = command
    if env:
        container["env"] = env
    requests = {key: value for key, value in (("cpu", cpu), ("memory", memory)) if value is not None}
    if requests:
        container["resources"] = {"requests": requests}
    metadata = {key: value for key, value in (("labels", labels), ("annotations", annotations)) if value}
    return {**({"metadata": metadata} if metadata else {}), "spec": {"containers": [container], **spec}}
