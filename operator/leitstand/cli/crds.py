"""``leitstand crds``: write (or print) the CRDs generated from the models."""

from pathlib import Path
from typing import Annotated

import typer

from leitstand.kube import schemas


def crds(
    out: Annotated[
        Path | None, typer.Option(help="Directory to write <plural>.<group>.yaml into; stdout when absent.")
    ] = None,
) -> None:
    """Generate the TrainingJob and GPUQuota CRDs from the pydantic models."""
    definitions = schemas.definitions()
    if out is None:
        typer.echo("---\n".join(schemas.render(definition) for definition in definitions.values()), nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, definition in definitions.items():
        (out / name).write_text(schemas.render(definition))
        typer.echo(out / name)
