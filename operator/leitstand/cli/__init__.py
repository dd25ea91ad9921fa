"""The ``leitstand`` command (also installed as the kubectl plugin ``kubectl-leitstand``).

``main`` is the only place that turns a UserError into one line on stderr and
an exit code; everything below raises and never prints a traceback for a
user's mistake.
"""

import sys

import typer
from rich.console import Console

from leitstand import __version__
from leitstand.cli import crds, demo, dev_cluster, kueue, observability, replaying, running, simulating, views
from leitstand.errors import UserError

app = typer.Typer(
    name="leitstand",
    help="Leitstand: fair-share, gang and topology-aware GPU scheduling for Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(dev_cluster.app, name="dev-cluster")
app.command("run")(running.run)
app.command("demo")(demo.demo)
app.command("crds")(crds.crds)
app.command("replay")(replaying.replay)
app.command("simulate")(simulating.simulate)
app.command("dashboards")(observability.dashboards)
app.command("jobs")(views.jobs)
app.command("explain")(views.explain)
app.command("queues")(views.queues)
app.command("top")(views.top)
app.command("kueue")(kueue.kueue)


@app.command()
def version() -> None:
    """Print Leitstand's version."""
    typer.echo(f"leitstand {__version__}")


def main() -> None:
    """Entry point of the console scripts."""
    try:
        app()
    except UserError as error:
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
