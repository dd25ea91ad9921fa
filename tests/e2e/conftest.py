"""Session fixtures for the end-to-end tests: one real local control plane for the run.

The control plane is built and started by the same launcher as `leitstand
dev-cluster` and `make demo`. A control plane that fails to start fails the
tests with the launcher's message; it is never a reason to skip.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from leitstand.devcluster import binaries, cluster, profiles
from leitstand.errors import UserError
from leitstand.kube import connection
from leitstand.kube.client import Client

NEEDED = ("etcd", "kube-apiserver", "kwok", "kubectl")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.LocalCluster]:
    """The dev profile (10 nodes, 80 GPUs) on real etcd, kube-apiserver and kwok."""
    try:
        for name in binaries.missing(NEEDED):
            binaries.build(name, log=tmp_path_factory.mktemp("build") / f"{name}.log")
        local = cluster.LocalCluster("e2e", profiles.load("dev"), directory=tmp_path_factory.mktemp("control-plane"))
        local.start()
    except UserError as error:
        pytest.fail(f"the local control plane did not start: {error}", pytrace=False)
    yield local
    local.stop()


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return binaries.locate("kubectl")


@pytest.fixture
async def admin(control_plane: cluster.LocalCluster) -> AsyncIterator[Client]:
    """An API client with cluster-admin rights (group system:masters)."""
    async with Client(connection.load(control_plane.kubeconfig)) as client:
        yield client
