"""Generation engine: spectral = direct, reproducibility (calls, interruption, block size, threads,
dask workers), store provenance, streaming, errors."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles.engine import chunk_fields
from nnft.ensembles.evaluate import lattice_cos_direct
from nnft.lattice import FieldStore, Lattice, PointSet, StoreMismatchError, chunk_rng

LAT = Lattice((6, 4), spacing=0.5, origin=(-1.0, 0.25))
SPECS = [
    E.ErfNet(7, d_in=2, components=2, mu_w0=0.1),
    E.GaussNet(5, d_in=2),
    E.ReLUNet(9, d_in=2, sigma_b=0.0),
    E.CorrelatedNet(6, d_in=2, rho=0.4),
    E.ActivationNet(4, d_in=2, activation="x * tanh(x)"),
    E.DeepMLP(3, 6, "tanh", d_in=2, components=2),
    E.GaussianCosNet(8, d_in=2, amplitude="constant", components=3),
    E.ContinuumCosNet(8, d_in=2, form="density"),
    E.LatticeCosNet(10, m2=0.4, components=2),
]


def _read_all(store):
    return np.concatenate([phi for _, phi, _ in store.iter_chunks()])


@pytest.mark.parametrize("lat", [Lattice((8, 6)), Lattice((5, 3, 4), spacing=0.7, origin=(0.3, -1.1, 2.0)),
                                 Lattice((9,)), Lattice((4, 1))], ids=str)
def test_spectral_equals_direct(lat):
    spec = E.LatticeCosNet(37, m2=0.3, components=2)
    p = E.draw_params(spec, lat, 11, np.random.default_rng(5))
    spectral = E.lattice_cos_spectral(p, lat).reshape(11, 2, -1)
    direct = lattice_cos_direct(p, lat)
    np.testing.assert_allclose(spectral, direct, rtol=0, atol=1e-12 * np.abs(direct).max())
    # and through the engine's switches
    a = chunk_fields(spec, lat, 5, chunk_rng(3, 0), method="spectral")
    b = chunk_fields(spec, lat, 5, chunk_rng(3, 0), method="dense")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: type(s).__name__)
def test_block_and_threads_independence(spec, tmp_path):
    kw = dict(chunk=7, seed=12345)
    ref = E.generate(spec, LAT, 30, tmp_path / "a", block=1, threads=1, **kw)
    other = E.generate(spec, LAT, 30, tmp_path / "b", block=10 ** 9, threads=2, **kw)
    mid = E.generate(spec, LAT, 30, tmp_path / "c", block=333, threads=3, **kw)
    a = _read_all(ref)
    assert a.shape == (30,) + (() if spec.components is None else (spec.components,)) + LAT.shape
    assert np.all(np.isfinite(a))
    assert np.array_equal(a, _read_all(other))
    assert np.array_equal(a, _read_all(mid))


def test_resume_after_interruption_is_bit_identical(tmp_path):
    spec, lat = E.ErfNet(13, d_in=2, components=2), LAT
    kw = dict(chunk=5, seed=777)
    one = _read_all(E.generate(spec, lat, 42, tmp_path / "one", **kw))
    # call 1: chunks 0 and 3 only
    path = tmp_path / "three"
    s = E.generate(spec, lat, 42, path, chunks=[0, 3], **kw)
    assert s.complete_chunks() == [0, 3]

    # call 2: interrupted after two more chunks are written
    class Interrupt(Exception):
        pass

    seen = []

    def cb(k, phi, lw):
        seen.append(k)
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        E.generate(spec, lat, 42, path, callback=cb, threads=1, **kw)
    assert FieldStore.open(path).complete_chunks() == [0, 1, 2, 3]
    # call 3: resume (seed taken from the store)
    s = E.generate(spec, lat, 42, path, chunk=5)
    assert s.is_complete and s.seed == 777
    assert np.array_equal(one, _read_all(s))


def test_resume_after_killed_process(tmp_path):
    spec, lat = E.ErfNet(400, d_in=2), Lattice((16, 16), boundary="open")
    kw = dict(chunk=40, seed=99)
    path = tmp_path / "killed"
    code = ("import nnft.ensembles as E; from nnft.lattice import Lattice;"
            f"E.generate(E.ErfNet(400, d_in=2), Lattice((16, 16), boundary='open'), 400, {str(path)!r},"
            " chunk=40, seed=99, threads=1)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        t0 = time.time()
        while time.time() - t0 < 120:
            if (path / "zarr.json").exists() and FieldStore.open(path).complete_chunks():
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait()
    partial = FieldStore.open(path)
    assert 1 <= len(partial.complete_chunks())
    if proc.returncode != 0:  # killed mid-run (the usual case): the store is partial
        assert not partial.is_complete
    resumed = _read_all(E.generate(spec, lat, 400, path, **kw))
    one = _read_all(E.generate(spec, lat, 400, tmp_path / "one", **kw))
    assert np.array_equal(one, resumed)


def test_dask_workers_bit_identical(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec, lat = E.LatticeCosNet(20, m2=0.5, components=2), Lattice((6, 6))
    kw = dict(chunk=8, seed=2024)
    single = _read_all(E.generate(spec, lat, 50, tmp_path / "single", **kw))
    for n_workers in (1, 2):
        with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            s = E.generate_distributed(spec, lat, 50, tmp_path / f"dask{n_workers}", client, **kw)
        assert s.is_complete
        assert np.array_equal(single, _read_all(s))


def test_store_provenance_regenerates_chunks(tmp_path):
    spec, lat = E.DeepMLP(2, 5, "relu", d_in=1, components=2), PointSet([0.1, 0.5, 0.9])
    s = E.generate(spec, lat, 20, tmp_path / "s", chunk=6, seed=31)
    s = FieldStore.open(tmp_path / "s", lattice=lat, spec=spec.to_dict(), source="network")
    assert E.spec_from_dict(s.spec) == spec and s.seed == 31 and s.lattice == lat
    assert s.backend == "numpy" and s.bit_generator == "PCG64" and s.components == 2
    for k in range(s.n_chunks):
        start, stop = s.chunk_range(k)
        phi = chunk_fields(E.spec_from_dict(s.spec), s.lattice, stop - start, chunk_rng(s.seed, k))
        assert np.array_equal(phi, s.read_chunk(k)[0])


def test_callback_streaming_matches_store(tmp_path):
    spec, lat = E.GaussianCosNet(6, d_in=2), LAT
    s = E.generate(spec, lat, 23, tmp_path / "s", chunk=5, seed=8, dtype="float32")
    got = {}
    E.generate(spec, lat, 23, chunk=5, seed=8, callback=lambda k, phi, lw: got.setdefault(k, phi))
    assert sorted(got) == list(range(5))
    streamed = np.concatenate([got[k] for k in range(5)])
    assert s.dtype == np.float32
    assert np.array_equal(streamed.astype(np.float32), _read_all(s))
    only = {}
    E.generate(spec, lat, 23, chunk=5, seed=8, chunks=[3],
               callback=lambda k, phi, lw: only.setdefault(k, phi))
    assert list(only) == [3] and np.array_equal(only[3], got[3])


def test_generate_errors(tmp_path):
    spec, lat = E.ErfNet(3, d_in=2), LAT
    E.generate(spec, lat, 10, tmp_path / "s", chunk=5, seed=1)
    with pytest.raises(StoreMismatchError, match="spec"):
        E.generate(E.ErfNet(4, d_in=2), lat, 10, tmp_path / "s", chunk=5)
    with pytest.raises(StoreMismatchError, match="seed"):
        E.generate(spec, lat, 10, tmp_path / "s", chunk=5, seed=2)
    with pytest.raises(ValueError, match="n_samples"):
        E.generate(spec, lat, 0, callback=lambda *a: None)
    with pytest.raises(ValueError, match="chunk"):
        E.generate(spec, lat, 10, callback=lambda *a: None, chunk=0)
    with pytest.raises(ValueError, match="block"):
        E.generate(spec, lat, 10, callback=lambda *a: None, block=0)
    with pytest.raises(ValueError, match="callback"):
        E.generate(spec, lat, 10)
    with pytest.raises(ValueError, match="periodic"):
        E.generate(E.LatticeCosNet(3), PointSet([0.0, 1.0]), 10, callback=lambda *a: None)
    with pytest.raises(ValueError, match="spectral"):
        E.generate(spec, lat, 10, callback=lambda *a: None, method="spectral")
    with pytest.raises(ValueError, match="chunks"):
        E.generate(spec, lat, 10, callback=lambda *a: None, chunk=5, chunks=[2])


def test_means_shift_the_field():
    """Non-zero output-bias mean moves <phi> (symmetry breaking by parameter means)."""
    lat = PointSet([0.0, 1.0])
    out = []
    E.generate(E.ErfNet(5, mu_b1=2.0), lat, 4000, chunk=4000, seed=3,
               callback=lambda k, phi, lw: out.append(phi))
    m = out[0].mean(0)
    assert np.all(np.abs(m - 2.0) < 5 * out[0].std(0) / np.sqrt(4000))


def test_alias_table_is_exact():
    from nnft.ensembles.params import alias_table

    p = np.random.default_rng(0).random(77) ** 3
    p /= p.sum()
    accept, alias = alias_table(p)
    implied = accept / p.size
    np.add.at(implied, alias, (1 - accept) / p.size)
    np.testing.assert_allclose(implied, p, rtol=1e-12, atol=1e-16)
