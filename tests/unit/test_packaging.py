"""The wheel the Dockerfile installs carries the data an installed leitstand needs."""

import subprocess
import sys
import zipfile
from pathlib import Path

from leitstand import locations

ROOT = Path(locations.PACKAGE_DIR).parent.parent


def test_the_wheel_ships_the_crds_profiles_and_kwok_stages(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("leitstand-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "leitstand/_data/crds/trainingjobs.leitstand.dev.yaml" in names
    assert "leitstand/_data/profiles/soofi.yaml" in names
    assert "leitstand/_data/stages/stages.yaml" in names
    assert "leitstand/core/scheduling.py" in names
