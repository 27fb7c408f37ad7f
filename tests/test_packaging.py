"""The wheel carries the schemas: validation works from an installed wheel, not only the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_schemas_and_validates_from_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", tmp_path, ROOT],
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("fraudrules-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(installed)
    assert {f"fraudrules/schemas/{name}.json" for name in ("payment", "order", "verdict", "deadletter")} <= names
    assert "fraudrules/py.typed" in names

    script = (
        "import fraudrules, fraudrules.validation as v;"
        "print(fraudrules.__file__);"
        "print(v.check_schemas());"
        "print(v.validator('payment').is_valid({'createTime': '2023-12-08 22:19:02.808', 'orderId': 1,"
        " 'payAmount': 1.5, 'payPlatform': 0, 'provinceId': 3}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    module_file, problems, valid = completed.stdout.splitlines()
    assert module_file.startswith(str(installed))
    assert problems == "{'payment': [], 'order': [], 'verdict': [], 'deadletter': []}"
    assert valid == "True"
