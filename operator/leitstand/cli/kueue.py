"""``leitstand kueue``: a GPUQuota tree in Kueue's model (a migration aid; see ``leitstand.kube.kueue``)."""

from pathlib import Path
from typing import Annotated

import typer
import yaml

from leitstand.cli.simulating import quota_specs
from leitstand.errors import UserError
from leitstand.kube import kueue as translation


def kueue(
    files: Annotated[list[Path], typer.Argument(help="YAML files of GPUQuota manifests (other kinds are ignored).")],
    shared_node_label: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE carried by every GPU node outside the quotas' reservations; added to the shared "
            "flavors so that they keep off the reserved nodes. Repeatable."
        ),
    ] = None,
    queue_name: Annotated[
        str, typer.Option(help="Name of the LocalQueue made in every namespace (the jobs' queue-name label).")
    ] = translation.QUEUE_NAME,
) -> None:
    """Print the Kueue objects (Topology, ResourceFlavors, Cohorts, ClusterQueues, LocalQueues) of a GPUQuota tree.

    What has no Kueue equivalent is said on stderr, one note a line."""
    specs = {}
    for path in files:
        for name, spec in quota_specs(path).items():
            if name in specs:
                raise UserError(f"{path}: GPUQuota {name} is given twice")
            specs[name] = spec
    labels = {}
    for item in shared_node_label or []:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise UserError(f"--shared-node-label {item!r} is not KEY=VALUE")
        labels[key] = value
    result = translation.translate(specs, shared_node_labels=labels, queue_name=queue_name)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(yaml.safe_dump_all(result.objects, sort_keys=False), nl=False)
