"""``leitstand dev-cluster build|up|down|status``: the local control plane."""

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from leitstand.devcluster import binaries, cluster, profiles
from leitstand.errors import UserError

app = typer.Typer(help="A real local control plane: etcd, kube-apiserver and kwok nodes.", no_args_is_help=True)
console = Console(stderr=True, highlight=False, soft_wrap=True)

NameOption = Annotated[str, typer.Option("--name", help="Name of the cluster (its state directory).")]


def build_missing(names: list[str], *, force: bool = False) -> None:
    """Builds each binary of ``names`` that is missing (all of them with ``force``)."""
    todo = list(names) if force else binaries.missing(names)
    if not todo:
        return
    binaries.go_toolchain()
    logs = binaries.cache_dir().parent / "logs"
    console.print(
        f"Building {', '.join(todo)} from hack/ into {binaries.cache_dir()} (the first build takes several minutes)"
    )
    if not console.is_terminal:
        for name in todo:
            started = time.monotonic()
            binaries.build(name, log=logs / f"{name}.log")
            console.print(f"  built {name} {binaries.TOOLS[name].version} in {time.monotonic() - started:.0f} s")
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        for name in todo:
            tool = binaries.TOOLS[name]
            task = progress.add_task(f"go build {name} {tool.version}", total=1)
            binaries.build(name, log=logs / f"{name}.log")
            progress.update(task, completed=1, description=f"built {name} {tool.version}")


@app.command()
def build(
    names: Annotated[list[str] | None, typer.Argument(help="Binaries to build (default: all).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when a cached binary exists.")] = False,
) -> None:
    """Build the control-plane binaries from hack/ into the cache (only what is missing)."""
    chosen = names or list(binaries.DEFAULT_SET)
    unknown = sorted(set(chosen) - set(binaries.TOOLS))
    if unknown:
        raise UserError(f"unknown binary {unknown[0]!r}; choose from {', '.join(binaries.TOOLS)}")
    build_missing(chosen, force=force)
    for name in chosen:
        typer.echo(f"{name}\t{binaries.locate(name)}")


def raise_keyboard_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_ctrl_c_and_sigterm() -> None:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt, even when started with SIGINT ignored (a script's
    background job), so the foreground commands always tear down what they started."""
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def start(
    name: str,
    profile_name: str,
    *,
    port: int | None,
    apiserver_args: list[str],
    detached: bool,
    controllers: tuple[str, ...] = (),
) -> cluster.LocalCluster:
    """Builds what is missing and starts a cluster, reporting progress on stderr."""
    profile = profiles.load(profile_name)
    if port is not None:
        cluster.ensure_port_free(port, "--port")
    build_missing(["etcd", "kube-apiserver", "kwok", "kubectl", *(binaries.CONTROLLERS[c] for c in controllers)])
    local = cluster.LocalCluster(
        name,
        profile,
        api_port=port,
        apiserver_args=apiserver_args,
        detached=detached,
        controllers=controllers,
        progress=lambda message: console.print(f"  {message}"),
    )
    console.print(f"Starting dev cluster {name!r} (profile {profile.name}: {profile.description})")
    local.start()
    return local


@app.command()
def up(
    profile: Annotated[
        str, typer.Option(help="A profile name (demo, dev, soofi, industrial-ai-cloud) or YAML file.")
    ] = "dev",
    name: NameOption = "dev",
    port: Annotated[int | None, typer.Option(help="kube-apiserver port (default: a free one).")] = None,
    wait: Annotated[
        bool,
        typer.Option(help="Return once ready and leave the cluster running (stop it with `down`)."),
    ] = False,
    apiserver_arg: Annotated[
        list[str] | None,
        typer.Option(help="Extra kube-apiserver flag, e.g. --max-requests-inflight=5."),
    ] = None,
    controllers: Annotated[
        str,
        typer.Option(
            help="Real controllers to run, comma-separated: kube (kube-controller-manager: Job, ReplicaSet, "
            "Deployment, garbage collector, namespace), training-operator (Kubeflow PyTorchJob), jobset "
            "(JobSet, whose pods the Job controller of kube makes), and for the peers' stack kube-scheduler "
            "and kueue (Kueue's manager: it admits Jobs, kube-scheduler binds them). None by default."
        ),
    ] = "",
) -> None:
    """Start a local control plane with fake GPU nodes from a profile."""
    chosen = tuple(dict.fromkeys(c.strip() for c in controllers.split(",") if c.strip()))
    unknown = [c for c in chosen if c not in binaries.CONTROLLERS]
    if unknown:
        raise UserError(
            f"unknown controller {unknown[0]!r} in --controllers; choose from {', '.join(binaries.CONTROLLERS)}"
        )
    local = start(name, profile, port=port, apiserver_args=apiserver_arg or [], detached=wait, controllers=chosen)
    console.print(f"Ready: {local.profile.node_count} nodes, {local.profile.gpu_count} GPUs. Use it with:")
    console.print(f"  kubectl --kubeconfig {local.kubeconfig} get nodes")
    typer.echo(local.kubeconfig)
    if wait:
        return
    stop_on_ctrl_c_and_sigterm()
    console.print("Press Ctrl-C to stop it.")
    try:
        while True:
            local.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("Stopping…")
    finally:
        local.stop()


@app.command()
def down(name: NameOption = "dev") -> None:
    """Stop a cluster started with `up --wait` and remove its state."""
    state = cluster.down(cluster.default_directory(name))
    if state is None:
        console.print(f"no dev cluster named {name!r} is running")
        return
    console.print(f"stopped dev cluster {name!r}")


@app.command()
def status(name: NameOption = "dev") -> None:
    """Print the kubeconfig path of a running cluster and the state of its processes."""
    state = cluster.read_state(cluster.default_directory(name))
    if state is None:
        console.print(f"no dev cluster named {name!r}; start one with `leitstand dev-cluster up --wait`")
        raise typer.Exit(1)
    alive = cluster.running_components(state)
    for component, running in alive.items():
        console.print(f"  {component:<15} {'running' if running else 'STOPPED'} (pid {state.pids[component]})")
    console.print(f"  profile {state.profile}: {state.nodes} nodes, {state.gpus} GPUs; server {state.server}")
    typer.echo(state.kubeconfig)
    if not all(alive.values()):
        raise typer.Exit(1)


def kubeconfig_path(name: str) -> Path:
    state = cluster.read_state(cluster.default_directory(name))
    if state is None:
        raise UserError(f"no dev cluster named {name!r}; start one with `leitstand dev-cluster up --wait`")
    return Path(state.kubeconfig)
