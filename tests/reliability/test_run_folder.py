"""Fault injection and bad input at the front door: `nnft run` and `nnft measure` never destroy
what they did not make, never lie about a run's state, and refuse bad input in one line.

Each test names the protection it guards; removing that protection makes the test fail.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from nnft.cli import main as cli_main
from nnft.config import ConfigError, dump_toml, resolve_config
from nnft.lattice import Lattice, sample_free_field

SMALL = """
title = "small"
seed = 3
[[ensemble]]
name = "cos"
arch = "LatticeCosNet"
lattice = {{ shape = [8, 8] }}
widths = [4]
samples = {samples}
chunk = 200
params = {{ m2 = 0.5 }}
measure = ["propagator", "four_point"]
"""


def _cfg(samples=800, **extra):
    cfg = tomllib.loads(SMALL.format(samples=samples))
    cfg.update(extra)
    return cfg


def _write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _nnft(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "nnft", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


# ------------------------------------------------------------------------------ nnft measure
@pytest.fixture(scope="module")
def free_store(tmp_path_factory):
    base = tmp_path_factory.mktemp("free")
    return sample_free_field(Lattice((8, 8)), 0.5, 400, base / "s.zarr", chunk=100, seed=1)


def _tree_bytes(path):
    out = {}
    for dp, _, fs in os.walk(path):
        for f in fs:
            p = Path(dp) / f
            out[str(p.relative_to(path))] = p.read_bytes()
    return out


def test_measure_out_equal_to_store_is_refused_and_store_survives(free_store):
    """Guards: check_output_path(protect=[store]) — `--out` = the input store once deleted it."""
    before = _tree_bytes(free_store.path)
    r = _nnft("measure", free_store.path, "--out", free_store.path, "--what", "scalars",
              "--no-plots")
    assert r.returncode == 2
    assert r.stderr.startswith("nnft: error: output") and "input store" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert _tree_bytes(free_store.path) == before


def test_measure_out_inside_store_is_refused(free_store):
    r = _nnft("measure", free_store.path, "--out", Path(free_store.path) / "x.zarr",
              "--what", "scalars", "--no-plots")
    assert r.returncode == 2 and "input store" in r.stderr


def test_measure_refuses_foreign_output(free_store, tmp_path):
    """Guards: an existing path not written by nnft is never replaced."""
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    r = _nnft("measure", free_store.path, "--out", foreign, "--what", "scalars", "--no-plots")
    assert r.returncode == 2 and "was not written by nnft" in r.stderr
    assert (foreign / "chapter1.tex").read_text() == "precious"
    f = tmp_path / "notes.nc"
    f.write_bytes(b"my notes")
    r = _nnft("measure", free_store.path, "--out", f, "--what", "scalars", "--no-plots")
    assert r.returncode == 2 and f.read_bytes() == b"my notes"


def test_measure_refuses_foreign_plots_folder(free_store, tmp_path):
    plots = tmp_path / "figs"
    plots.mkdir()
    (plots / "fig1.pdf").write_text("mine")
    r = _nnft("measure", free_store.path, "--out", tmp_path / "m.zarr", "--what", "propagator",
              "--plots", plots)
    assert r.returncode == 2 and "not made by nnft" in r.stderr
    assert (plots / "fig1.pdf").read_text() == "mine"


def test_measure_rerun_replaces_its_own_output(free_store, tmp_path):
    out = tmp_path / "m.zarr"
    assert cli_main(["measure", str(free_store.path), "--out", str(out), "--what", "scalars",
                     "--no-plots", "--quiet"]) == 0
    assert cli_main(["measure", str(free_store.path), "--out", str(out), "--what", "scalars,xi",
                     "--no-plots", "--quiet"]) == 0
    import xarray as xr

    ds = xr.open_zarr(out, consolidated=False)
    assert ds.attrs["nnft_output"] == "nnft measure" and "xi2" in ds
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_measure_killed_while_writing_keeps_old_result(free_store, tmp_path, monkeypatch):
    """Guards: write_dataset writes a temporary and renames (a kill mid-write once left the
    old result deleted and the new one unreadable)."""
    import xarray as xr

    out = tmp_path / "m.zarr"
    assert cli_main(["measure", str(free_store.path), "--out", str(out), "--what", "scalars",
                     "--no-plots", "--quiet"]) == 0
    before = _tree_bytes(out)

    def killed(self, *a, **k):
        raise KeyboardInterrupt("kill during write")

    monkeypatch.setattr(xr.Dataset, "to_zarr", killed)
    rc = cli_main(["measure", str(free_store.path), "--out", str(out), "--what", "scalars,xi",
                   "--no-plots", "--quiet"])
    assert rc == 130
    assert _tree_bytes(out) == before


def test_measure_bad_error_method_refused_before_the_pass(free_store, tmp_path, monkeypatch,
                                                         capsys):
    """Guards: --error is checked before measuring (it was rejected after the whole pass)."""
    import nnft.observables as obs

    def no_pass(*a, **k):
        raise AssertionError("the measuring pass ran")

    monkeypatch.setattr(obs, "measure", no_pass)
    rc = cli_main(["measure", str(free_store.path), "--out", str(tmp_path / "m.zarr"),
                   "--what", "scalars", "--error", "bogus", "--no-plots"])
    assert rc == 2
    assert capsys.readouterr().err.startswith("nnft: error: --error: unknown method 'bogus'")


# ------------------------------------------------------------------------------- nnft run
def test_config_name_with_path_is_refused(tmp_path):
    """Guards: check_plain_name — `name = "../../x"` once wrote stores outside --out."""
    cfg = _cfg()
    cfg["ensemble"][0]["name"] = "../../x"
    with pytest.raises(ConfigError, match=r"ensemble\[0\]\.name: must be a plain name"):
        resolve_config(cfg)


def test_unknown_option_key_is_refused():
    """Guards: registry.check_options — a typo once silently changed the physics."""
    cfg = _cfg()
    cfg["ensemble"][0]["options"] = {"n_tuple_4": 3}
    with pytest.raises(ConfigError, match=r"options\.n_tuple_4: unknown option .*n_tuples_4"):
        resolve_config(cfg)
    cfg["ensemble"][0]["options"] = {"n_tuples_4": "many"}
    with pytest.raises(ConfigError, match=r"options\.n_tuples_4: must be an integer"):
        resolve_config(cfg)
    cfg["ensemble"][0]["options"] = {"n_tuples_4": 3}
    assert resolve_config(cfg)["ensemble"][0]["options"] == {"n_tuples_4": 3}


def test_option_of_unlisted_measurement_and_required_option():
    cfg = _cfg()
    cfg["ensemble"][0]["options"] = {"rg_mode": "fisher"}  # rg is not measured
    with pytest.raises(ConfigError, match="rg_mode: unknown option"):
        resolve_config(cfg)
    cfg["ensemble"][0]["measure"] = ["reweight"]
    cfg["ensemble"][0]["options"] = {}
    with pytest.raises(ConfigError, match=r"options\.g: required by measurement 'reweight'"):
        resolve_config(cfg)
    cfg["ensemble"][0]["options"] = {"g": 0.5, "match": "nearest"}
    with pytest.raises(ConfigError, match=r"options\.match: .*\['hartree', 'bare'\]"):
        resolve_config(cfg)


def test_repeated_widths_refused_at_check():
    """Guards: `widths = [4, 4]` passed --check and failed mid-run."""
    cfg = _cfg()
    cfg["ensemble"][0]["widths"] = [4, 4]
    with pytest.raises(ConfigError, match="each width may appear once"):
        resolve_config(cfg)


def test_multiline_title_round_trips(tmp_path):
    """Guards: tomli-w writer — a multi-line title once produced a config.toml that could not
    be re-run."""
    cfg = resolve_config(_cfg(title='two\nlines "quoted" \\ back'))
    assert resolve_config(tomllib.loads(dump_toml(cfg))) == cfg


def test_check_refuses_what_cannot_fit_memory(tmp_path):
    """Guards: resources.check_fits — [100000, 100000] once died with MemoryError mid-run."""
    text = SMALL.format(samples=800).replace("shape = [8, 8]", "shape = [100000, 100000]")
    p = _write(tmp_path, text)
    r = _nnft("run", p, "--check", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.startswith("nnft: error: not enough memory")
    assert len(r.stderr.strip().splitlines()) == 1
    r = _nnft("run", p, "--out", tmp_path / "o")
    assert r.returncode == 2 and not (tmp_path / "o").exists()  # nothing written


def test_check_prints_resources(tmp_path):
    p = _write(tmp_path, SMALL.format(samples=800))
    r = _nnft("run", p, "--check", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert "largest step:" in r.stdout and "stores on disk:" in r.stdout
    assert "rough time:" in r.stdout and not (tmp_path / "o").exists()
    # the exact parameter-space theory plans the samples before any sampling
    assert "samples for 1% relative error (you run 800), exact theory" in r.stdout
    assert "N=4" in r.stdout and "m_4:" in r.stdout


def test_check_refuses_what_cannot_fit_disk(tmp_path, monkeypatch):
    import shutil

    from nnft import resources

    cfg = resolve_config(_cfg())
    est = resources.estimate(cfg)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 1000))
    with pytest.raises(resources.RunError, match="not enough disk"):
        resources.check_fits(est, tmp_path / "o")


def test_rerun_with_other_config_refused_before_writing(tmp_path):
    """Guards: _check_same_ensembles — a refused re-run once overwrote config.toml and left
    status "running" over a valid report."""
    from nnft.run import run_config

    out = tmp_path / "r"
    run_config(resolve_config(_cfg()), out, quiet=True)
    before = {n: (out / n).read_bytes() for n in ("config.toml", "status.json", "report.md")}
    with pytest.raises(resources_run_error(), match="holds a run of a different config"):
        run_config(resolve_config(_cfg(samples=1000)), out, quiet=True)
    assert {n: (out / n).read_bytes() for n in before} == before
    # the same config with other measurements re-measures the existing stores
    cfg = _cfg()
    cfg["ensemble"][0]["measure"] = ["propagator"]
    run_config(resolve_config(cfg), out, quiet=True)
    assert json.loads((out / "status.json").read_text())["state"] == "complete"


def resources_run_error():
    from nnft.errors import RunError

    return RunError


def test_second_run_on_same_folder_is_refused(tmp_path):
    """Guards: the run-folder lock — two runs once interleaved in one folder."""
    from filelock import FileLock

    p = _write(tmp_path, SMALL.format(samples=800))
    out = tmp_path / "r"
    out.mkdir()
    (out / "status.json").write_text('{"state": "running"}')
    with FileLock(str(out / ".nnft.lock")):
        r = _nnft("run", p, "--out", out, "--quiet")
    assert r.returncode == 2 and "in use by another nnft run" in r.stderr
    assert json.loads((out / "status.json").read_text()) == {"state": "running"}
    assert not (out / "config.toml").exists()


def test_sigterm_marks_run_interrupted(tmp_path):
    """Guards: SIGTERM -> "interrupted" (a killed run once said "running" forever)."""
    text = (SMALL.format(samples=200000).replace("chunk = 200", "chunk = 2000")
            .replace("[8, 8]", "[16, 16]").replace("widths = [4]", "widths = [64]"))
    p = _write(tmp_path, text)
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "nnft", "run", str(p), "--out", str(out),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("stores/*.zarr")):
        time.sleep(0.05)  # the store appears (atomically) once generation has started
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    st = json.loads((out / "status.json").read_text())
    assert st["state"] == "interrupted", st
    assert not (out / "report.md").exists()
    r = _nnft("run", p, "--out", out, "--quiet", "--check")
    assert r.returncode == 0, r.stderr  # the folder is still usable: same config accepted


def test_disk_full_is_one_line_and_status_failed(tmp_path, monkeypatch):
    """Guards: OSError(ENOSPC) -> one line, exit 2, status "failed" (was a 16-71 line
    traceback with status "running" forever)."""
    import nnft.report as report

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "report.md"))

    monkeypatch.setattr(report, "write_report", full)
    p = _write(tmp_path, SMALL.format(samples=800))
    rc = cli_main(["run", str(p), "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2
    st = json.loads((tmp_path / "r" / "status.json").read_text())
    assert st["state"] == "failed" and "No space left" in st["error"]


def test_read_only_folder_is_one_line(tmp_path, monkeypatch):
    """Guards: EROFS -> one line, exit 2 (simulated: the tests run as root, who may write
    anywhere)."""
    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    p = _write(tmp_path, SMALL.format(samples=800))
    rc = cli_main(["run", str(p), "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 2 and not (tmp_path / "r").exists()


def test_internal_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Guards: only UserError is one line; a bug (plain ValueError inside nnft) is not hidden."""
    import nnft.run as run

    def bug(*a, **k):
        raise ValueError("an internal bug")

    monkeypatch.setattr(run, "_run", bug)
    p = _write(tmp_path, SMALL.format(samples=800))
    with pytest.raises(ValueError, match="an internal bug"):
        cli_main(["run", str(p), "--out", str(tmp_path / "r"), "--quiet"])
    assert json.loads((tmp_path / "r" / "status.json").read_text())["state"] == "failed"
