"""What a dev cluster does before it starts anything: its name, its directory and who holds it."""

import os
from pathlib import Path

import pytest

from leitstand.devcluster import cluster
from leitstand.errors import UserError


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "-x", "x" * 64])
def test_a_cluster_name_must_be_a_plain_name(name: str) -> None:
    with pytest.raises(UserError, match="is not a valid cluster name"):
        cluster.default_directory(name)


def test_one_process_at_a_time_holds_a_cluster_directory(tmp_path: Path) -> None:
    directory = tmp_path / "clusters" / "demo"
    held = cluster._hold(directory)
    try:
        with pytest.raises(UserError, match="another process is starting or running the dev cluster"):
            cluster._hold(directory)
    finally:
        os.close(held)
    os.close(cluster._hold(directory))  # free again once the holder let go


def test_what_a_stopped_cluster_left_is_cleared_and_a_missing_directory_is_no_error(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    (directory / "etcd" / "member").mkdir(parents=True)
    (directory / "logs").mkdir()
    cluster._clear(directory)
    assert not directory.exists()
    cluster._clear(directory)
