"""The layering contract (.importlinter) holds, and it really catches a violation.

import-linter finds modules by walking a package's folder, but pyproject maps the library
layers from top-level folders (nnft.lattice = lattice/, ...). The tests therefore stage the
mapped package tree (the ``.py`` files only) in a temporary folder and run ``lint-imports``
there against the repository's ``.importlinter``.
``python tests/test_layers.py`` prints the report for the working tree.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / ".importlinter"
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or \
    shutil.which("lint-imports")

pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed "
                                "(pip install import-linter)")


def stage(dest: Path) -> Path:
    """Copy the package's modules into ``dest`` laid out as their dotted names say."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    for pkg in cfg["packages"]:
        src = ROOT / mapping.get(pkg, pkg.replace(".", "/"))
        out = dest.joinpath(*pkg.split("."))
        out.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy2(f, out / f.name)
    shutil.copy2(CONTRACT, dest / ".importlinter")
    return dest


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run([LINT, "--no-cache", "--no-logo", ".importlinter"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return stage(tmp_path_factory.mktemp("layers"))


def test_contract_holds(tree):
    r = lint(tree)
    assert r.returncode == 0, r.stdout + r.stderr


def test_library_layers_hold(tree):
    """The layers contract on its own (front end above observables > ensembles > lattice)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    r = subprocess.run([LINT, "--no-cache", "--no-logo", "--contract", "layers", ".importlinter"],
                       cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([LINT, "--no-cache", "--no-logo", "--contract", "acyclic-library",
                        ".importlinter"], cwd=tree, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("module, bad", [
    ("lattice/geometry.py", "from nnft.observables import accumulators"),
    ("ensembles/specs.py", "import nnft.observables.measure"),
    ("observables/errors.py", "from nnft import config"),
])
def test_contract_catches_an_upward_import(tmp_path, module, bad):
    tree = stage(tmp_path)
    path = tree / "nnft" / module
    path.write_text(path.read_text() + f"\n\ndef _violation():\n    {bad}\n")
    env = dict(os.environ, PYTHONPATH=str(tree))
    r = subprocess.run([LINT, "--no-cache", "--no-logo", "--contract", "layers", ".importlinter"],
                       cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "BROKEN" in r.stdout and f"nnft.{module[:-3].replace('/', '.')}" in r.stdout, r.stdout


def test_contract_catches_a_library_cycle(tmp_path):
    tree = stage(tmp_path)
    path = tree / "nnft" / "observables" / "combinatorics.py"
    path.write_text(path.read_text() + "\n\nfrom .accumulators import Accumulator  # noqa\n")
    env = dict(os.environ, PYTHONPATH=str(tree))
    r = subprocess.run([LINT, "--no-cache", "--no-logo", "--contract", "acyclic-library",
                        ".importlinter"], cwd=tree, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "combinatorics" in r.stdout, r.stdout


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        res = lint(stage(Path(tmp)))
        print(res.stdout, res.stderr)
        sys.exit(res.returncode)
