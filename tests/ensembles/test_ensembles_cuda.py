"""CuPy kernels against their NumPy references on identical parameters (needs a CUDA device)."""
import numpy as np
import pytest

import nnft.ensembles as E
from nnft.ensembles.cuda import kernel_source
from nnft.ensembles.evaluate import evaluate
from nnft.ensembles.params import params_to
from nnft.lattice import Lattice, PointSet

LAT = Lattice((6, 5), spacing=0.4, origin=-1.0)
GPU_SPECS = [
    E.ErfNet(33, d_in=2, components=3),
    E.GaussNet(17, d_in=2),
    E.ReLUNet(40, d_in=2, sigma_b=0.0),
    E.TanhNet(12, d_in=2),
    E.ActivationNet(9, d_in=2, activation="x * tanh(x) + sign(x) * 0.1 + x**2"),
    E.CorrelatedNet(11, d_in=2, rho=0.3, activation="relu"),
    E.DeepMLP(3, 16, "erf", d_in=2, components=2),
    E.GaussianCosNet(21, d_in=2, components=2),
    E.ContinuumCosNet(21, d_in=2, form="density"),
    E.LatticeCosNet(50, m2=0.3, components=2),
]


def test_kernel_source_defines_without_device():
    src = kernel_source("erf(x)", 2, 3)
    assert "#define D_OUT 3" in src and "nnft_single_layer" in src


@pytest.mark.gpu
@pytest.mark.parametrize("spec", GPU_SPECS, ids=lambda s: type(s).__name__)
def test_cuda_matches_numpy_reference(spec):
    import cupy

    from nnft.ensembles.cuda import evaluate_cuda

    lat = LAT
    p = E.draw_params(spec, lat, 37, np.random.default_rng(0))
    ref = evaluate(spec, p, lat, np)
    got = cupy.asnumpy(evaluate_cuda(spec, params_to(p, cupy), lat, block=1000))
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())


@pytest.mark.gpu
def test_cuda_generate_statistics(tmp_path):
    """Device-drawn parameters (Philox): the GPU ensemble matches the kernel statistically."""
    spec, pts = E.ErfNet(20), PointSet([-1, -0.6, -0.2, 0.2, 0.6, 1.0])
    out = []
    E.generate(spec, pts, 60000, chunk=20000, seed=1, backend="cupy",
               callback=lambda k, phi, lw: out.append(phi.get()))
    f = np.concatenate(out)
    K = E.gp_kernel(spec, pts)
    prod = f[:, :, None] * f[:, None, :]
    z = (prod.mean(0) - K) / (prod.std(0) / np.sqrt(len(f)))
    assert np.abs(z).max() < 5
    assert np.abs((prod.mean(0) - 1.05 * K) / (prod.std(0) / np.sqrt(len(f)))).max() > 5
    s = E.generate(spec, pts, 100, tmp_path / "g", chunk=50, seed=2, backend="cupy")
    assert s.backend == "cupy" and s.bit_generator == "Philox4x3210"
