"""A control plane of a test module's own, so its capacity and objects are predictable."""

from collections.abc import Iterator
from typing import Any

import pytest

from leitstand.devcluster import cluster, profiles
from leitstand.errors import UserError


def own_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str, profile: str = "dev", **options: Any
) -> Iterator[cluster.LocalCluster]:
    """Starts ``profile`` in a fresh directory; a failure to start fails the tests, never skips them."""
    local = cluster.LocalCluster(name, profiles.load(profile), directory=tmp_path_factory.mktemp(name), **options)
    try:
        local.start()
    except UserError as error:
        pytest.fail(f"the local control plane did not start: {error}", pytrace=False)
    yield local
    local.stop()
