"""``leitstand crds``: write (or print) the CRDs generated from the models."""

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from leitstand.devcluster import cluster, profiles
from leitstand.kube import connection, podtemplate, schemas
from leitstand.kube.client import Client

OPENAPI_PATH = "/openapi/v3/api/v1"


def refresh_pod_template() -> Path:
    """Rewrites ``podtemplate.SCHEMA_FILE`` from the OpenAPI of a throwaway kube-apiserver of hack/'s release."""
    with tempfile.TemporaryDirectory(prefix="leitstand-openapi-") as directory:
        local = cluster.LocalCluster("openapi", profiles.load("dev"), directory=Path(directory), install_crds=False)
        local.start()
        try:

            async def fetch() -> dict[str, object]:
                async with Client(connection.load(local.kubeconfig)) as client:
                    return await client.get(OPENAPI_PATH)

            document = asyncio.run(fetch())
        finally:
            local.stop()
    podtemplate.SCHEMA_FILE.write_text(podtemplate.render(podtemplate.structural(document)))
    return podtemplate.SCHEMA_FILE


def crds(
    out: Annotated[
        Path | None, typer.Option(help="Directory to write <plural>.<group>.yaml into; stdout when absent.")
    ] = None,
    refresh_pod_template_schema: Annotated[
        bool,
        typer.Option(
            "--refresh-pod-template",
            help="First regenerate the pod template's schema from a local kube-apiserver's OpenAPI (needs the "
            "binaries of `make binaries`).",
        ),
    ] = False,
) -> None:
    """Generate the TrainingJob and GPUQuota CRDs from the pydantic models."""
    if refresh_pod_template_schema:
        typer.echo(refresh_pod_template(), err=True)
    definitions = schemas.definitions()
    if out is None:
        typer.echo("---\n".join(schemas.render(definition) for definition in definitions.values()), nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, definition in definitions.items():
        (out / name).write_text(schemas.render(definition))
        typer.echo(out / name)
