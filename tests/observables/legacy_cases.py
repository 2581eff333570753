"""Fixed-seed small cases of the store-level jackknife functions (issue 13 refactor).

``python tests/observables/legacy_cases.py`` records every case's numbers into
``tests/observables/data/legacy_jackknife.npz``; it was run with the pre-refactor engine (the
second jackknife engine of ``symmetry.py``), and ``test_legacy_equality.py`` recomputes the same
cases with the current code and asserts equality within float64 rounding.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("data") / "legacy_jackknife.npz"


def _numbers(obj, prefix, out):
    """Flatten a Dataset / JackknifeResult / tuple of arrays into {name: float array}."""
    if hasattr(obj, "data_vars"):
        for k in sorted(obj.data_vars):
            v = np.asarray(obj[k].values)
            if v.dtype.kind in "fcib":
                out[f"{prefix}/{k}"] = v
        for k in sorted(obj.attrs):
            v = obj.attrs[k]
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                out[f"{prefix}/@{k}"] = np.asarray(float(v))
        return out
    if hasattr(obj, "replicas"):
        out[f"{prefix}/value"] = np.asarray(obj.value)
        out[f"{prefix}/replicas"] = np.asarray(obj.replicas)
        return out
    if isinstance(obj, tuple):
        for i, v in enumerate(obj):
            out[f"{prefix}/{i}"] = np.asarray(v)
        return out
    raise TypeError(type(obj))


def cases(tmp):
    """Yield (name, thunk) for every recorded case; ``tmp`` is a scratch directory."""
    from nnft.ensembles import GaussNet, LatticeCosNet, generate
    from nnft.lattice import Lattice, free_propagator, sample_free_field
    from nnft.observables import cluster, couplings, generating, rg, symmetry

    lat = Lattice((6, 6))
    cos = generate(LatticeCosNet(width=4, m2=0.5), lat, 1200, Path(tmp) / "cos.zarr", chunk=300,
                   seed=3)
    vec = generate(GaussNet(width=3, d_in=2, components=2), Lattice((3, 3)), 900,
                   Path(tmp) / "vec.zarr", chunk=200, seed=4)
    lat1 = Lattice((8,))
    out = []
    sample_free_field(lat1, 1.0, 4000, seed=21, chunk=1000, callback=lambda k, p, lw: out.append(p))
    phi1 = np.concatenate(out)
    lw1 = -5e-4 * np.sum(phi1 ** 4, axis=1)
    G1 = free_propagator(lat1, 1.0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 5)) + np.array([0.5, 0, 1, 0, 0])
    t = [np.array([[0, 1], [2, 2], [3, 4]]), np.array([[0, 1, 2, 3], [0, 0, 1, 1], [4, 4, 4, 4]])]
    lwx = 0.3 * rng.standard_normal(len(x))

    yield "cr_array_connected", lambda: symmetry.correlator_replicas(x, t, n_blocks=10)
    yield "cr_array_moment_w", lambda: symmetry.correlator_replicas(
        x, t, stat="moment", log_weight=lwx, n_blocks=7)
    yield "cr_array_wick", lambda: symmetry.correlator_replicas(
        x, t[1], stat="wick_subtracted", n_blocks=12, groups=np.array([0, 1, 0]))
    yield "cr_complex", lambda: symmetry.correlator_replicas(
        x, np.array([[0, 1], [1, 2]]), stat="connected", n_blocks=8,
        features=lambda p: np.fft.fft(p, axis=1))
    yield "cr_store", lambda: symmetry.correlator_replicas(cos, t[1] * 7 % 36, n_blocks=9)
    yield "translation", lambda: symmetry.check_translation(cos, lat, n_blocks=10, seed=2)
    yield "hypercubic", lambda: symmetry.check_hypercubic(cos, lat, n_blocks=10, seed=3,
                                                          n_tuples=3)
    yield "internal", lambda: symmetry.check_internal_rotation(vec, n_blocks=10, seed=4)
    yield "translation_vec", lambda: symmetry.check_translation(vec, Lattice((3, 3)), n_blocks=8,
                                                                seed=1, orders=(2,))
    yield "cluster", lambda: cluster.cluster_profile(phi1, lat1, n_blocks=10)
    yield "cluster_trunc", lambda: cluster.cluster_profile(phi1, lat1, n_blocks=10,
                                                           stat="truncated", log_weight=lw1)
    yield "W", lambda: generating.generating_functional(
        phi1, 0.3 * rng.standard_normal((3, 8)), n_blocks=10, log_weight=lw1,
        expected=np.zeros(3))
    yield "W_store", lambda: generating.generating_functional(
        cos, 0.2 * np.ones((6, 6)), n_blocks=6, n_max=3)
    yield "quartic", lambda: couplings.quartic_coupling(phi1, lat1, G1, log_weight=lw1,
                                                        n_blocks=10, reference="unweighted",
                                                        n_tuples=6)
    yield "six", lambda: couplings.six_point_check(phi1, lat1, G1, log_weight=lw1, n_blocks=10,
                                                   n_tuples=4)
    yield "amputated", lambda: couplings.amputated_vertex(phi1, lat1, log_weight=lw1,
                                                          n_blocks=10, n_momenta=4)
    yield "cg_prop", lambda: rg.coarse_grained_propagator(rg.CoarseGrainedSource(cos, 2.0),
                                                          n_blocks=8)
    yield "rg_flow", lambda: rg.rg_flow(cos, [1.0, 2.5], n_blocks=6, n_tuples=4)


def compute(tmp):
    out = {}
    for name, thunk in cases(tmp):
        _numbers(thunk(), name, out)
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        res = compute(tmp)
    DATA.parent.mkdir(exist_ok=True)
    np.savez_compressed(DATA, **res)
    print(f"wrote {len(res)} arrays to {DATA}", file=sys.stderr)
