"""The measurements `nnft run` can make on an ensemble, each returning plain, reportable results.

Every function takes a :class:`Context` (one ensemble at one width: its store, spec, lattice and
GP kernel) and returns a dict of scalars (for the summary tables) plus, under ``"data"``, arrays
for plots. Cross-width summaries (1/N scaling fits) are made by :func:`width_scan_summary`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Context:
    """One ensemble at one width."""

    name: str
    spec: object
    lattice: object
    store: object
    width: int
    options: dict = field(default_factory=dict)
    seed: int = 0
    _kernel: object = None

    @property
    def kernel(self):
        """GP kernel matrix over the sites (None when the architecture has no closed form)."""
        if self._kernel is None:
            from .ensembles import gp_kernel

            try:
                self._kernel = gp_kernel(self.spec, self.lattice)
            except ValueError:
                self._kernel = False
        return self._kernel if self._kernel is not False else None


def _z_summary(value, error, expected):
    z = (np.asarray(value) - np.asarray(expected)) / np.asarray(error)
    z = z[np.isfinite(z)]
    return {"chi2_dof": float(np.mean(z**2)) if z.size else float("nan"),
            "max_abs_z": float(np.max(np.abs(z))) if z.size else float("nan"), "n_compared": int(z.size)}


def _tuples(ctx, order, count):
    """Fixed random point tuples (multisets: repeated points allowed), the same at every width.

    On a lattice the points are drawn from the sites of a small box at the origin (side 3, or
    ``options.box``), where the n-point functions are large compared with their noise; on a
    point set from all points, as in the founding papers' experiments.
    """
    if getattr(ctx.lattice, "kind", "") == "lattice":
        side = int(ctx.options.get("box", 3))
        box = np.stack(np.meshgrid(*[np.arange(min(side, L)) for L in ctx.lattice.shape],
                                   indexing="ij"), -1).reshape(-1, ctx.lattice.dim)
        sites = np.ravel_multi_index(box.T, ctx.lattice.shape)
    else:
        sites = np.arange(ctx.lattice.volume)
    n = min(count, math.comb(len(sites) + order - 1, order))
    rng = np.random.default_rng([ctx.seed, order, 7])
    out = set()
    while len(out) < n:
        out.add(tuple(sorted(rng.choice(sites, size=order, replace=True).tolist())))
    return np.array(sorted(out))


def _pairs(ctx):
    """Site pairs of the two-point comparison: (0, r) on periodic lattices, all pairs otherwise."""
    V = ctx.lattice.volume
    if getattr(ctx.lattice, "periodic", False):
        pairs = np.array([(0, j) for j in range(V)])  # G(r) = <phi(0) phi(r)>
    else:
        pairs = np.array([(i, j) for i in range(V) for j in range(i, V)])
    if len(pairs) > 4096:
        pairs = pairs[np.random.default_rng(ctx.seed).choice(len(pairs), 4096, replace=False)]
    return pairs


def two_point(ctx: Context) -> dict:
    """Measured two-point function against the GP kernel / exact propagator (chi^2/dof, max |z|)."""
    from .observables import moments

    pairs = _pairs(ctx)
    ds = moments(ctx.store, pairs)
    out = {"quantity": "two-point function"}
    K = ctx.kernel
    if K is not None:
        expected = K[pairs[:, 0], pairs[:, 1]]
        out.update(_z_summary(ds["value"].values, ds["error"].values, expected))
        out["data"] = {"measured": ds["value"].values, "error": ds["error"].values,
                       "expected": expected, "pairs": pairs}
    return out


propagator = two_point


def _connected_expected(ctx, tuples):
    """Closed-form finite-width connected correlator at ``tuples`` where PHYSICS.md gives one."""
    from .ensembles import LatticeCosNet
    from .lattice import free_propagator
    from .observables import cumulants

    from .ensembles import ErfNet, GaussNet, ReLUNet, TanhNet
    from .ensembles.kernels import neuron_moment

    spec = ctx.spec
    order = tuples.shape[1]
    if isinstance(spec, LatticeCosNet) and order == 4 and spec.components is None:
        G = free_propagator(ctx.lattice, spec.m2)
        k = 3.0 if spec.amplitude == "gaussian" else 1.0
        return cumulants.cosnet_connected_4pt(G, tuples, spec.width, kurtosis=k)
    single = (GaussNet, ErfNet, ReLUNet, TanhNet)
    if isinstance(spec, single) and spec.components is None and not spec.has_means:
        P = ctx.lattice.positions()
        cache = {}

        def E(*idx):
            key = tuple(sorted(idx))
            if key not in cache:
                cache[key] = neuron_moment(spec, P[list(key)])
            return cache[key]

        return cumulants.single_neuron_connected(E, E, tuples, spec.width, sigma=spec.sigma_w,
                                                 E6=E if order == 6 else None)
    return None


def _npoint_tuples(ctx, order):
    return _tuples(ctx, order, int(ctx.options.get(f"n_tuples_{order}", 12)))


# measurements that can run on the fly (no store): the point tuples each one needs
STREAMABLE = {"propagator": _pairs, "two_point": _pairs,
              "four_point": lambda ctx: _npoint_tuples(ctx, 4),
              "six_point": lambda ctx: _npoint_tuples(ctx, 6)}


def streaming_accumulators(ctx: Context, measure: list) -> dict:
    """One PointMoments accumulator covering every tuple the (streamable) measurements need."""
    from .observables import PointMoments

    tuples = []
    for what in measure:
        tuples.extend(map(tuple, STREAMABLE[what](ctx)))
    return {"moments": PointMoments(sorted(set(tuples)), max_order=6)}


def npoint(ctx: Context, order: int) -> dict:
    """Connected n-point function, deviation m_n from the GP and its background."""
    from .observables import connected_correlator, deviation_measure

    tuples = _npoint_tuples(ctx, order)
    ds = connected_correlator(ctx.store, tuples, order=order)
    val, err = ds["value"].values, ds["error"].values
    out = {"quantity": f"connected {order}-point function",
           "mean_abs_connected": float(np.mean(np.abs(val))),
           "mean_abs_connected_error": float(math.sqrt(np.sum(err**2)) / len(err))}
    expected = _connected_expected(ctx, tuples)
    if expected is not None:
        out.update({f"formula_{k}": v for k, v in _z_summary(val, err, expected).items()})
    K = ctx.kernel
    if K is not None:
        n_sub = int(ctx.options.get("n_sub", 10))
        dm = deviation_measure(ctx.store, tuples, K, n_sub=n_sub)
        out["m_n"] = float(dm["value"].values)
        out["m_n_error"] = float(dm["error"].values)
        if "background" in dm:
            out["background"] = float(dm["background"].values)
            out["background_error"] = float(dm["background_error"].values) if "background_error" in dm else float("nan")
    out["data"] = {"tuples": tuples, "value": val, "error": err,
                   "expected": expected if expected is not None else np.full_like(val, np.nan)}
    return out


def four_point(ctx):
    return npoint(ctx, 4)


def six_point(ctx):
    return npoint(ctx, 6)


def cluster(ctx: Context) -> dict:
    """Cluster-decomposition profile of the connected 4-point function with its decay fit."""
    from .observables.cluster import cluster_profile

    kw = {}
    from .ensembles import LatticeCosNet

    if isinstance(ctx.spec, LatticeCosNet):
        from .lattice import free_propagator
        from .observables.cluster import cluster_tuples, cosnet_g4c

        tuples, groups, seps = cluster_tuples(ctx.lattice, order=4, average=False)
        G = free_propagator(ctx.lattice, ctx.spec.m2)
        k = 3.0 if ctx.spec.amplitude == "gaussian" else 1.0
        kw["expected"] = cosnet_g4c(G, tuples, ctx.spec.width, kurtosis=k)
    # averaging over all V translates cuts the error ~3x on a 32^2 lattice but costs ~20x time
    average = bool(ctx.options.get("cluster_average", False))
    ds = cluster_profile(ctx.store, ctx.lattice, order=4, average=average, **kw)
    a = ds.attrs
    out = {"quantity": "cluster decomposition (connected 4-point, two 2-point clusters)",
           "verdict": a.get("verdict"), "plateau": a.get("plateau"),
           "plateau_error": a.get("plateau_error"), "plateau_z": a.get("plateau_z"),
           "rate": a.get("rate"), "rate_error": a.get("rate_error")}
    if "plateau_expected" in a:
        out["plateau_expected"] = a["plateau_expected"]
        out["plateau_expected_z"] = a.get("plateau_expected_z")
    out["data"] = {"R": ds["R"].values, "value": ds["value"].values, "error": ds["error"].values}
    if "expected" in ds:
        out["data"]["expected"] = ds["expected"].values
    out["dataset"] = ds
    return out


def symmetry(ctx: Context) -> dict:
    """Translation and hypercubic checks (and internal SO(D) for vector outputs)."""
    from .observables import symmetry as sym

    out = {"quantity": "symmetry checks"}
    results = {}
    if getattr(ctx.lattice, "kind", "") == "lattice":
        results["translation"] = sym.check_translation(ctx.store, ctx.lattice, seed=ctx.seed)
        if len(ctx.lattice.symmetry_ops()) > 1:
            results["hypercubic"] = sym.check_hypercubic(ctx.store, ctx.lattice, seed=ctx.seed)
    if getattr(ctx.spec, "components", None):
        results["internal SO(D)"] = sym.check_internal_rotation(ctx.store, seed=ctx.seed)
    for name, ds in results.items():
        out[f"{name}: verdict"] = ds.attrs.get("verdict")
        out[f"{name}: max |z|"] = ds.attrs.get("max_abs_z")
    out["datasets"] = results
    return out


MEASURE = {"propagator": propagator, "two_point": two_point, "four_point": four_point,
           "six_point": six_point, "cluster": cluster, "symmetry": symmetry}

from .measurements_ext import MEASURE_EXT  # noqa: E402

MEASURE.update(MEASURE_EXT)


def width_scan_summary(widths, per_width: dict) -> dict:
    """1/N scaling fits of m_4, m_6 and |G6c| across the widths of one ensemble."""
    from .observables import scaling_fit

    out = {}
    for key, order in (("four_point", 4), ("six_point", 6)):
        rows = [per_width[w].get(key) for w in widths]
        if not rows or any(r is None or "m_n" not in r for r in rows):
            continue
        m = np.array([r["m_n"] for r in rows])
        e = np.array([r["m_n_error"] for r in rows])
        bg = np.array([r.get("background", np.nan) for r in rows])
        # fit only widths whose signal stands clear of the background (3 errors above it)
        use = m > np.nan_to_num(bg, nan=0.0) + 3 * e
        entry = {"widths": list(widths), "m_n": m.tolist(), "m_n_error": e.tolist(),
                 "background": bg.tolist(), "fitted_widths": [int(w) for w, u in zip(widths, use) if u]}
        if use.sum() >= 2:
            fit = scaling_fit(np.asarray(widths)[use], m[use], e[use])
            entry.update(slope=float(fit["slope"]), slope_error=float(fit["slope_error_scaled"]),
                         chi2=float(fit["chi2"]), dof=int(fit["dof"]))
        out[f"m_{order}"] = entry
    return out
