"""``leitstand replay SNAPSHOT.json``: run the core offline on a dumped snapshot."""

import json
from pathlib import Path
from typing import Annotated

import typer

from leitstand.core import dumps
from leitstand.core.scheduling import schedule
from leitstand.errors import UserError


def replay(
    snapshot: Annotated[Path, typer.Argument(help="A snapshot dumped by the operator (/api/v1/snapshot).")],
) -> None:
    """Replay a snapshot through the scheduling core and print its decisions as JSON."""
    try:
        data = json.loads(snapshot.read_text())
    except OSError as error:
        raise UserError(f"cannot read {snapshot}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{snapshot} is not JSON: {error.msg} at line {error.lineno}") from None
    try:
        loaded, policy, now = dumps.load(data)
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{snapshot} is not a valid Leitstand snapshot: {error!s}") from None
    typer.echo(json.dumps(dumps.describe(schedule(loaded, policy, now=now)), indent=2))
