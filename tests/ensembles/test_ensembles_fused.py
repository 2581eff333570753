"""method="fused": Philox4x32-10 stream (known answers), its NumPy reference on the CPU
(two-point function vs the GP kernel, chunk independence, provenance) and the CUDA kernel against
the NumPy reference on identical parameters (gpu marker)."""
import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles.cuda import FUSED_ACTIVATIONS, fused_config, fused_source
from nnft.ensembles.engine import chunk_fields
from nnft.ensembles.evaluate import evaluate
from nnft.ensembles.philox import (box_muller, calls_per_neuron, fused_key, fused_params,
                                   philox4x32, philox_normals)
from nnft.lattice import FieldStore, Lattice, PointSet, StoreMismatchError

# Random123 kat_vectors (philox4x32 10): counter, key -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
X6 = np.array([-1, -0.6, -0.2, 0.2, 0.6, 1.0])
PAPER = {  # the papers' d_in = 1 point sets (docs/conventions.md)
    "ErfNet": (E.ErfNet(10), X6),
    "GaussNet": (E.GaussNet(200), 0.01 * X6),  # wide: exp activations have heavy tails
    "ReLUNet": (E.ReLUNet(10, sigma_b=0.0), np.array([.2, .4, .6, .8, 1., 1.2])),
}


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_philox_known_answers(ctr, key, want):
    got = philox4x32(np.array(ctr, dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert got.dtype == np.uint32 and tuple(int(v) for v in got) == want
    # vectorised: same answer inside a batch, broadcast key
    batch = np.array([ctr, (1, 2, 3, 4), ctr], dtype=np.uint32)
    out = philox4x32(batch, np.array(key, dtype=np.uint32))
    assert tuple(int(v) for v in out[2]) == want and np.array_equal(out[0], out[2])


def test_philox_rejects_bad_shapes():
    with pytest.raises(ValueError, match="counter"):
        philox4x32(np.zeros(3, np.uint32), np.zeros(2, np.uint32))
    with pytest.raises(ValueError, match="key"):
        philox4x32(np.zeros(4, np.uint32), np.zeros(3, np.uint32))


def test_box_muller_normals():
    ctr = np.zeros((50000, 4), dtype=np.uint32)
    ctr[:, 0] = np.arange(50000)
    g = philox_normals(ctr, np.array([7, 9], dtype=np.uint32)).ravel()
    n = g.size
    for k, (m, v) in enumerate([(0.0, 1 / n), (1.0, 2 / n), (0.0, 15 / n), (3.0, 96 / n)]):
        assert abs(np.mean(g ** (k + 1)) - m) / np.sqrt(v) < 5
    assert abs(np.mean(g ** 2) - 1.05) / np.sqrt(2 / n) > 5  # the check can fail
    # extremes of the uniforms stay finite
    z0, z1 = box_muller(np.array([0, 0xFFFFFFFF], np.uint32), np.array([0, 0xFFFFFFFF], np.uint32))
    assert np.all(np.isfinite(z0)) and np.all(np.isfinite(z1))


def test_fused_params_layout_and_offset():
    spec = E.ErfNet(7, d_in=3, components=2, mu_w0=0.5, sigma_b=0.7)
    key = fused_key(11, 2)
    p = fused_params(spec, 9, key)
    assert p["W0"].shape == (9, 7, 3) and p["b0"].shape == (9, 7)
    assert p["W1"].shape == (9, 2, 7) and p["b1"].shape == (9, 2)
    # float32 values
    for v in p.values():
        assert np.array_equal(v, v.astype(np.float32).astype(np.float64))
    # networks are addressed by counter: an offset block equals the rows of the full block
    q = fused_params(spec, 4, key, offset=3)
    for name in p:
        assert np.array_equal(q[name], p[name][3:7])
    # the stream itself: W0 of network 2, neuron 5 from counter (2, 5, 0, 0)
    g = philox_normals(np.array([2, 5, 0, 0], np.uint32), np.array(key, np.uint32))
    assert np.allclose(p["W0"][2, 5], 0.5 + g[:3] / np.sqrt(3), rtol=1e-6)
    assert calls_per_neuron(3, 2) == 2


def test_fused_key_depends_on_seed_and_chunk_only():
    assert fused_key(5, 0) == fused_key(5, 0)
    assert len({fused_key(5, 0), fused_key(5, 1), fused_key(6, 0)}) == 3
    with pytest.raises(ValueError):
        fused_key(5, -1)


def test_fused_chunk_independence(tmp_path):
    spec, lat = E.GaussNet(6, d_in=2, components=2), Lattice((4, 3), spacing=0.3)
    full = E.generate(spec, lat, 25, tmp_path / "a", chunk=10, seed=99, method="fused")
    part = E.generate(spec, lat, 25, tmp_path / "b", chunk=10, seed=99, method="fused",
                      chunks=[2, 1], threads=2)
    assert part.complete_chunks() == [1, 2]
    for k in (1, 2):
        assert np.array_equal(full.read_chunk(k)[0], part.read_chunk(k)[0])
    # chunk_fields with the chunk's key or its SeedSequence gives the same chunk
    from nnft.lattice.random import chunk_seed_sequence

    a = chunk_fields(spec, lat, 10, fused_key(99, 1), method="fused")
    b = chunk_fields(spec, lat, 10, chunk_seed_sequence(99, 1), method="fused")
    assert np.array_equal(a, b) and np.array_equal(a, full.read_chunk(1)[0])
    # equals the dense float64 evaluation of the fused parameters
    ref = evaluate(spec, fused_params(spec, 10, fused_key(99, 1)), lat, np).reshape(a.shape)
    assert np.array_equal(a, ref)
    other = E.generate(spec, lat, 25, tmp_path / "c", chunk=10, seed=98, method="fused")
    assert not np.allclose(other.read_chunk(1)[0], full.read_chunk(1)[0])


def test_fused_provenance_and_errors(tmp_path):
    spec, pts = E.ReLUNet(5, sigma_b=0.0), PointSet(X6)
    s = E.generate(spec, pts, 12, tmp_path / "s", chunk=4, seed=3, method="fused")
    s = FieldStore.open(tmp_path / "s")
    assert s.bit_generator == "Philox4x32-10 (in-kernel)" and s.extra["method"] == "fused"
    # resuming with another stream is refused
    with pytest.raises(StoreMismatchError, match="bit_generator"):
        E.generate(spec, pts, 12, tmp_path / "s", chunk=4, seed=3, method="auto")
    with pytest.raises(ValueError, match="fused"):
        E.generate(E.DeepMLP(2, 4, d_in=1), pts, 4, callback=lambda *a: None, method="fused")
    with pytest.raises(ValueError, match="fused"):
        chunk_fields(E.ActivationNet(3, activation="sin"), pts, 2, (1, 2), method="fused")
    with pytest.raises(ValueError, match="method"):
        E.generate(spec, pts, 4, callback=lambda *a: None, method="nope")
    with pytest.raises(ValueError, match="writer_threads"):
        E.generate(spec, pts, 4, callback=lambda *a: None, writer_threads=-1)


def test_writer_threads_never_change_results(tmp_path):
    spec, pts = E.ErfNet(8, d_in=1, components=2), PointSet(X6)
    seen = []
    a = E.generate(spec, pts, 50, tmp_path / "a", chunk=7, seed=4, writer_threads=0)
    b = E.generate(spec, pts, 50, tmp_path / "b", chunk=7, seed=4, writer_threads=1,
                   callback=lambda k, phi, lw: seen.append(k))
    c = E.generate(spec, pts, 50, tmp_path / "c", chunk=7, seed=4, writer_threads=3, threads=2,
                   method="fused")
    assert seen == list(range(8))
    for k in range(8):
        assert np.array_equal(a.read_chunk(k)[0], b.read_chunk(k)[0])
    assert c.is_complete

    class Boom(Exception):
        pass

    def bad(k, phi, lw):
        if k == 3:
            raise Boom

    with pytest.raises(Boom):
        E.generate(spec, pts, 50, tmp_path / "d", chunk=7, seed=4, writer_threads=1, callback=bad)
    d = FieldStore.open(tmp_path / "d")
    assert {0, 1, 2, 3} <= set(d.complete_chunks())


def _z(f, K):
    prod = f[:, :, None] * f[:, None, :]
    return (prod.mean(0) - K) / (prod.std(0) / np.sqrt(len(f)))


@pytest.mark.parametrize("name", sorted(PAPER))
def test_fused_two_point_matches_gp_kernel(name):
    spec, x = PAPER[name]
    pts = PointSet(x)
    out = []
    E.generate(spec, pts, 60000, chunk=20000, seed=2024, method="fused",
               callback=lambda k, phi, lw: out.append(phi))
    f = np.concatenate(out)
    K = E.gp_kernel(spec, pts)
    assert np.abs(_z(f, K)).max() < 5
    assert np.abs(_z(f, 1.05 * K)).max() > 5


def test_fused_vector_components_and_means():
    spec = E.TanhNet(8, d_in=2, components=3)
    lat = Lattice((2, 2), spacing=0.5)
    out = []
    E.generate(spec, lat, 30000, chunk=10000, seed=5, method="fused",
               callback=lambda k, phi, lw: out.append(phi.reshape(len(phi), 3, -1)))
    f = np.concatenate(out)
    K = E.gp_kernel(spec, lat)
    for a in range(3):
        assert np.abs(_z(f[:, a], K)).max() < 5
        assert np.abs(_z(f[:, a], 1.05 * K)).max() > 5
    # components independent: cross moment zero
    c = f[:, 0, 0] * f[:, 1, 0]
    assert abs(c.mean()) / (c.std() / np.sqrt(len(c))) < 5


def test_fused_kernel_source_and_config():
    for V, d, D in [(6, 1, 1), (6, 4, 3), (4096, 2, 1), (4096, 2, 3), (25, 2, 3), (1, 1, 1)]:
        cfg = fused_config(V, d, D)
        assert cfg["block"] <= 128 and cfg["NPB"] * (cfg["TILE"] * cfg["PQ"] + 1) * 16 <= 32768
        assert cfg["TILE"] % cfg["FLUSH"] == 0 and cfg["PQ"] * 4 >= d + 1 + D
        src = fused_source(FUSED_ACTIVATIONS["ErfNet"], d, D, cfg)
        assert "nnft_fused_single_layer" in src and "nnft_philox4x32_10" in src
        assert f"#define D_OUT {D}" in src
    with pytest.raises(ValueError, match="out_dtype"):
        fused_source(0, 1, 1, fused_config(6, 1, 1), "float16")


# ---------------------------------------------------------------------------------------------
# GPU: the kernel against the NumPy reference on identical parameters
# ---------------------------------------------------------------------------------------------
GPU_ARCHS = [E.GaussNet, E.ErfNet, E.ReLUNet, E.TanhNet]


def _gpu_case(cls, d_in, D, X, n, N, offset_check=False):
    import cupy

    from nnft.ensembles.cuda import fused_single_layer_cuda

    kw = dict(sigma_b=0.0) if cls is E.ReLUNet else {}
    spec = cls(N, d_in=d_in, components=None if D == 1 else D, mu_w0=0.05, mu_b1=-0.1, **kw)
    key = fused_key(1234, 5)
    V = X.shape[0]
    poison = cupy.full((n, D, V), np.nan)
    out, gp = fused_single_layer_cuda(spec, X, key, n, dump=True, out=poison)
    out = cupy.asnumpy(out)
    assert np.all(np.isfinite(out)), "unwritten or non-finite outputs"
    gp = {k: cupy.asnumpy(v).astype(np.float64) for k, v in gp.items()}
    ref_p = fused_params(spec, n, key)
    for k in ref_p:  # same parameter stream (float32 Box-Muller vs float64, a few ulp)
        assert np.all(np.isfinite(gp[k])), k
        np.testing.assert_allclose(gp[k], ref_p[k], rtol=2e-5, atol=2e-6, err_msg=k)
    lat = PointSet(X)
    # float32 kernel vs float64 evaluation of the parameters it generated
    exact = evaluate(spec, gp, lat, np)
    rel = np.linalg.norm(out - exact) / np.linalg.norm(exact)
    assert rel < 1e-6, f"relative error {rel:.2e} vs float64 on the same parameters"
    # vs the NumPy fused reference (the CPU method="fused")
    ref = evaluate(spec, ref_p, lat, np)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    if offset_check:
        part = cupy.asnumpy(fused_single_layer_cuda(spec, X, key, n - 7, offset=7))
        np.testing.assert_allclose(part, out[7:], rtol=1e-6, atol=1e-6 * np.abs(out).max())
    return rel


@pytest.mark.gpu
@pytest.mark.parametrize("D", [1, 3])
@pytest.mark.parametrize("d_in", [1, 2, 3, 4])
@pytest.mark.parametrize("cls", GPU_ARCHS, ids=lambda c: c.__name__)
def test_fused_kernel_matches_reference_points(cls, d_in, D):
    X = np.random.default_rng(d_in).uniform(-1, 1, size=(6, d_in))
    if cls is E.GaussNet:
        X *= 0.3
    _gpu_case(cls, d_in, D, X, n=300, N=997, offset_check=(d_in == 2))


@pytest.mark.gpu
@pytest.mark.parametrize("D", [1, 3])
@pytest.mark.parametrize("cls", GPU_ARCHS, ids=lambda c: c.__name__)
def test_fused_kernel_matches_reference_lattice(cls, D):
    X = Lattice((37, 41), spacing=0.05, origin=-1.0).positions()
    _gpu_case(cls, 2, D, X, n=19, N=300)


@pytest.mark.gpu
def test_fused_generate_gpu_equals_cpu_and_statistics(tmp_path):
    """The same seed gives the same ensemble on both backends (float32 rounding apart)."""
    spec, pts = E.ErfNet(20), PointSet(X6)
    gpu, cpu = [], []
    E.generate(spec, pts, 60000, chunk=20000, seed=1, backend="cupy", method="fused",
               callback=lambda k, phi, lw: gpu.append(phi.get()))
    E.generate(spec, pts, 4000, chunk=20000, seed=1, backend="numpy", method="fused",
               callback=lambda k, phi, lw: cpu.append(phi))
    f = np.concatenate(gpu)
    np.testing.assert_allclose(f[:4000], cpu[0], rtol=1e-5, atol=1e-5)
    K = E.gp_kernel(spec, pts)
    assert np.abs(_z(f, K)).max() < 5
    assert np.abs(_z(f, 1.05 * K)).max() > 5
    s = E.generate(spec, pts, 100, tmp_path / "g", chunk=50, seed=2, backend="cupy",
                   method="fused", dtype="float32")
    assert s.backend == "cupy" and s.bit_generator == "Philox4x32-10 (in-kernel)"
    assert np.all(np.isfinite(np.concatenate([p for _, p, _ in s.iter_chunks()])))
