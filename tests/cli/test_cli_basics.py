"""The `nnft` command: help, version, the free-field job, one-line errors for bad configs."""
import subprocess
import sys

import pytest

import nnft


def nnft_cmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "nnft", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_help_and_version():
    r = nnft_cmd("--help")
    assert r.returncode == 0 and "run" in r.stdout and "free" in r.stdout
    r = nnft_cmd("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"nnft {nnft.__version__}"


def test_free_job_summary(tmp_path):
    r = nnft_cmd("free", str(tmp_path / "f.zarr"), "--L", "8", "--samples", "4000", "--chunk", "1000",
                 "--quiet")
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines()[2:]}
    for name in ("G(0)", "chi", "E", "<|M|>"):
        assert abs(float(lines[name][-1])) < 5, r.stdout  # z-score column


def test_free_job_bad_input(tmp_path):
    r = nnft_cmd("free", str(tmp_path / "f.zarr"), "--L", "1")
    assert r.returncode == 2 and r.stderr.startswith("nnft: error:") and "--L" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = nnft_cmd("free", str(tmp_path / "nodir" / "f.zarr"), "--L", "8", "--quiet")
    assert r.returncode == 2 and "parent directory" in r.stderr


GOOD = """
title = "t"
seed = 1
[[ensemble]]
name = "c"
arch = "LatticeCosNet"
lattice = { shape = [8, 8] }
widths = [4]
samples = 200
chunk = 100
params = { m2 = 0.5 }
measure = ["propagator"]
"""

BAD = [
    ("colour = 3\n" + GOOD, "colour: unknown key"),
    (GOOD.replace('seed = 1', 'seed = "one"'), "seed: must be an integer"),
    (GOOD.replace("widths = [4]", "widths = [0]"), "ensemble[0].widths"),
    (GOOD.replace("samples = 200", "samples = -5"), "ensemble[0].samples: must be >= 1"),
    (GOOD.replace('arch = "LatticeCosNet"', 'arch = "Transformer"'), "unknown architecture"),
    (GOOD.replace("m2 = 0.5", "m2 = -0.5"), "m2"),
    (GOOD.replace('measure = ["propagator"]', 'measure = ["vibes"]'), "unknown measurement"),
    (GOOD.replace("shape = [8, 8]", "shape = [8, 0]"), "ensemble[0].lattice"),
    ("backend = \"tpu\"\n" + GOOD, "backend: must be one of"),
    (GOOD.replace("params = { m2 = 0.5 }", "params = { m2 = 0.5, depth = 3 }"), "unknown field"),
    ("title = [", "not valid TOML"),
]


@pytest.mark.parametrize("text, words", BAD)
def test_bad_configs_one_line_and_no_output(tmp_path, text, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    r = nnft_cmd("run", str(cfg), "--out", str(out), "--quiet")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("nnft: error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    if words:
        assert words in r.stderr, r.stderr
    assert not out.exists()


def test_missing_config_file(tmp_path):
    r = nnft_cmd("run", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and "does not exist" in r.stderr
