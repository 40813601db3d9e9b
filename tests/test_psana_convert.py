"""``mpireduce convert`` against the real psana2 (skipped when it is not installed).

Real psana is looked for in this interpreter, or in the one ``MPIREDUCE_REAL_PSANA_PYTHON``
names (a separate venv: psana is not a dependency of mpireduce). The test writes an xtc2
run with psana's ``xtcwriter``, converts it, and checks that real psana on the xtc2 and
the shim on the conversion report the same numbers for every event.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpireduce.psana.install import real_psana_available
from conftest import _env

ROOT = Path(__file__).resolve().parents[1]
DUMP = Path(__file__).parent / "psana_scripts" / "real_psana_dump.py"


def real_python():
    """An interpreter that imports the real psana, or None."""
    if real_psana_available():
        return sys.executable
    other = os.environ.get("MPIREDUCE_REAL_PSANA_PYTHON")
    if other and subprocess.run([other, "-c", "import psana.psexp"], capture_output=True).returncode == 0:
        return other
    return None


def xtcwriter(python):
    """psana's xtcwriter program next to that interpreter's site-packages."""
    out = subprocess.run([python, "-c", "import psana, os; print(os.path.dirname(os.path.dirname(psana.__file__)))"],
                         capture_output=True, text=True).stdout.strip()
    found = [p for p in (Path(out) / "bin" / "xtcwriter", Path(python).parent / "xtcwriter") if p.is_file()]
    return found[0] if found else shutil.which("xtcwriter")


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_convert_without_psana_says_how_to_install(tmp_path):
    if real_psana_available():
        pytest.skip("real psana is importable here")
    proc = subprocess.run([sys.executable, "-m", "mpireduce", "convert", "x.xtc2", "-o", str(tmp_path)],
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 2 and "pip install --no-deps psana==4.3.4" in proc.stderr


def test_real_psana_and_shim_agree_on_converted_run(tmp_path):
    python = real_python()
    if python is None:
        pytest.skip("real psana not importable (set MPIREDUCE_REAL_PSANA_PYTHON to a python that has it)")
    writer = xtcwriter(python)
    if writer is None:
        pytest.skip("psana's xtcwriter not found")
    subprocess.run([str(writer), "-n", "20", "-f", "run.xtc2"], cwd=tmp_path, check=True, capture_output=True)
    env = _env({"PYTHONPATH": str(ROOT)})
    convert = subprocess.run([python, "-m", "mpireduce", "convert", "run.xtc2", "-o", "h5"], cwd=tmp_path,
                             capture_output=True, text=True, env=env)
    assert convert.returncode == 0, convert.stderr
    real = subprocess.run([python, str(DUMP), "run.xtc2"], cwd=tmp_path, capture_output=True, text=True, env=env)
    ours = subprocess.run([sys.executable, "-m", "mpireduce.psana.run", "--force-shim", str(DUMP), "h5",
                           "xpptut15", "14"], cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert ours.returncode == 0, ours.stderr
    expected, got = json_lines(real.stdout), json_lines(ours.stdout)
    assert len(expected) == 20 and got == expected
