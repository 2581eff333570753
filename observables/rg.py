"""Coarse-graining of cos-net ensembles in parameter space (docs/conventions.md, arXiv:2405.17538).

A stored network ensemble records its spec and seed; chunk k is ``draw_params`` from
``chunk_rng(seed, k)``. :class:`CoarseGrainedSource` regenerates the parameters of every chunk,
drops the neurons outside the cutoff and re-evaluates the fields, presenting the result with the
FieldStore reading protocol so that every observable runs on it unchanged.

Cutoffs
-------
* ``mode="momentum"``: keep neurons with |p_i| <= Lambda (``metric="pmag"``: the continuum
  |p| with components folded into (-pi/a, pi/a]; ``"phat"``: the lattice momentum phat).
* ``mode="fisher"``: keep neurons whose Fisher information I_i = 1/(p_i^2 + m^2) (of the amplitude
  of a cos-net with amplitude factor 1/sqrt(p^2 + m^2)) is at least the cutoff I_c. This is the
  momentum cutoff Lambda^2 = 1/I_c - m^2 (:func:`fisher_to_momentum`).

For the lattice cos-net, dropping the neurons with |p| > Lambda leaves exactly the momentum-shell
propagator Gt(p) theta(Lambda - |p|) at every width (:func:`shell_propagator`), and the
connected 4-point function of the kept neurons is the cos-net formula with G replaced by the cut
propagator G_Lambda and the single-neuron scale G(0) unchanged (``cluster.cosnet_g4c(G_Lambda,
..., G0=G(0))``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from nnft.ensembles import draw_params, evaluate, spec_from_dict
from nnft.lattice import chunk_rng, free_propagator, free_propagator_momentum

from .cluster import amplitude_moments, cosnet_g4c
from .couplings import fit_quartic, local_tuples, quartic_coupling, vertex_sum
from .replicas import jackknife_error as _jk_error
from .symmetry import assess_deviations, correlator_replicas

__all__ = ["CoarseGrainedSource", "fisher_information", "fisher_to_momentum",
           "shell_propagator", "coarse_grained_propagator", "rg_flow", "plot_rg_flow",
           "InformationShellSource", "information_flow", "information_per_neuron",
           "information_to_momentum", "cosnet_information_scale", "plot_information_flow",
           "REDRAW_STREAM"]

_COS_ARCHS = ("LatticeCosNet", "ContinuumCosNet", "GaussianCosNet")


def fisher_information(p2, m2):
    """Fisher information (up to a constant) of a cos-net amplitude at momentum^2 p2: 1/(p2 + m2)."""
    return 1.0 / (np.asarray(p2, dtype=float) + m2)


def fisher_to_momentum(I_c, m2):
    """Momentum cutoff Lambda with I(Lambda) = I_c: Lambda^2 = 1/I_c - m^2 (0 if negative)."""
    if I_c <= 0:
        raise ValueError(f"I_c: must be positive, got {I_c}")
    return math.sqrt(max(1.0 / I_c - m2, 0.0))


def _p2_of_lattice(lattice, metric):
    if metric == "pmag":
        return np.asarray(lattice.pmag2())
    if metric == "phat":
        return np.asarray(lattice.phat2())
    raise ValueError(f"metric: must be 'pmag' or 'phat', got {metric!r}")


def shell_propagator(lattice, m2, cutoff, *, metric="pmag", mode="momentum"):
    """Exact coarse-grained lattice propagator Gt(p) theta(Lambda - |p|), shape lattice.shape.

    With ``mode="fisher"`` the cutoff is I_c and the kept region is 1/(p^2 + m^2) >= I_c.
    """

    Gt = np.asarray(free_propagator_momentum(lattice, m2))
    p2 = _p2_of_lattice(lattice, metric)
    return Gt * _keep(p2, cutoff, mode, m2)


def _keep(p2, cutoff, mode, m2):
    if mode == "momentum":
        return p2 <= cutoff ** 2 * (1 + 1e-12)
    if mode == "fisher":
        return fisher_information(p2, m2) >= cutoff * (1 - 1e-12)
    raise ValueError(f"mode: must be 'momentum' or 'fisher', got {mode!r}")


class CoarseGrainedSource:
    """A cos-net FieldStore with the neurons outside a cutoff removed, regenerated on the fly.

    Parameters
    ----------
    store : FieldStore
        A complete network store of a LatticeCosNet, ContinuumCosNet or GaussianCosNet
        (provenance: spec, seed, numpy backend).
    cutoff : float
        Lambda (``mode="momentum"``) or the information cutoff I_c (``mode="fisher"``).
    mode : {"momentum", "fisher"}
    metric : {"pmag", "phat"}
        |p|^2 of lattice momenta for LatticeCosNet (continuum nets use |w|^2).
    m2 : float, optional
        Mass^2 in the Fisher information (default: the spec's ``m2``).
    verify : bool
        Check that re-evaluating chunk 0 without a cutoff reproduces the stored chunk.

    Attributes mirror a FieldStore (``n_samples``, ``chunk``, ``n_chunks``, ``lattice``,
    ``components``, ``spec``, ``chunk_range``, ``read_chunk``, ``iter_chunks``, ...).
    ``kept_fraction`` is the mean fraction of neurons kept (after a full pass).
    """

    def __init__(self, store, cutoff, *, mode="momentum", metric="pmag", m2=None, verify=True):
        if getattr(store, "spec", None) is None or getattr(store, "seed", None) is None:
            raise ValueError("store: needs network provenance (spec and seed) to regenerate chunks")
        spec = spec_from_dict(store.spec)
        arch = type(spec).__name__
        if arch not in _COS_ARCHS:
            raise ValueError(f"store: coarse-graining needs a cos-net spec {_COS_ARCHS}, got {arch}")
        backend = getattr(store, "backend", "numpy") or "numpy"
        if backend != "numpy":
            raise ValueError(f"store: regenerating chunks needs the numpy backend, store has {backend!r}")
        if mode not in ("momentum", "fisher"):
            raise ValueError(f"mode: must be 'momentum' or 'fisher', got {mode!r}")
        if not cutoff > 0:
            raise ValueError(f"cutoff: must be positive, got {cutoff}")
        self.base = store
        self.spec_obj = spec
        self.cutoff = float(cutoff)
        self.mode = mode
        self.metric = metric
        self.m2 = float(getattr(spec, "m2", 0.0) if m2 is None else m2)
        if mode == "fisher" and self.m2 <= 0:
            raise ValueError("m2: the Fisher cutoff needs a positive mass (spec has no m2)")
        self.lattice = store.lattice
        self.n_samples = store.n_samples
        self.chunk = store.chunk
        self.n_chunks = store.n_chunks
        self.components = store.components
        self.n_replicas = 1
        self.weighted = False
        self.source = "coarse_grained"
        self.spec = store.spec
        self.seed = store.seed
        self.path = None
        self.extra = {"cutoff": self.cutoff, "mode": mode, "metric": metric}
        self.attrs = {"source": "coarse_grained", "cutoff": self.cutoff, "mode": mode}
        self._kept = [0.0, 0]
        if arch == "LatticeCosNet":
            self._p2 = _p2_of_lattice(self.lattice, metric).ravel()
        if verify:
            phi0 = self._regen(0, cut=False)
            ref, _ = store.read_chunk(0)
            if not np.allclose(np.asarray(phi0), np.asarray(ref), rtol=1e-9, atol=1e-9):
                raise ValueError("store: regenerated chunk 0 differs from the stored one "
                                 "(provenance mismatch: spec, seed or engine version)")

    # -- FieldStore reading protocol ---------------------------------------------------------
    def chunk_range(self, k):
        return self.base.chunk_range(k)

    def complete_chunks(self):
        return list(self.base.complete_chunks())

    def missing_chunks(self):
        return list(self.base.missing_chunks())

    def read_chunk(self, k):
        return self._regen(k, cut=True), None

    def iter_chunks(self, chunks=None):
        for k in (self.complete_chunks() if chunks is None else chunks):
            yield k, self._regen(k, cut=True), None

    @property
    def kept_fraction(self):
        return self._kept[0] / max(self._kept[1], 1)

    # -- regeneration -------------------------------------------------------------------------
    def _regen(self, k, cut=True):
        start, stop = self.chunk_range(k)
        n = stop - start
        spec, lat = self.spec_obj, self.lattice
        params = draw_params(spec, lat, n, chunk_rng(self.seed, k, np), np)
        if cut:
            if "k" in params:  # LatticeCosNet
                p2 = self._p2[params["k"]]
                keep = _keep(p2, self.cutoff, self.mode, self.m2)
                params["a"] = params["a"] * keep[:, None, :]
            else:
                w = params["W0"]
                p2 = np.sum(w * w, axis=-1)
                keep = _keep(p2, self.cutoff, self.mode, self.m2)
                params["W1"] = params["W1"] * keep[:, None, :]
            self._kept[0] += float(keep.sum())
            self._kept[1] += keep.size
        phi = evaluate(spec, params, lat, np)
        shape = (n,) + (() if spec.components is None else (spec.n_components,)) + tuple(lat.shape)
        return np.asarray(phi).reshape(shape)


def coarse_grained_propagator(source, *, n_blocks=32):
    """Measured <phit(p) phit(-p)>/V on a periodic lattice with jackknife replicas.

    Returns (value, error, replicas) arrays over lattice.shape (scalar fields).
    """
    lat = source.lattice
    shape = tuple(lat.shape)
    V = int(np.prod(shape))
    axes = tuple(range(1, len(shape) + 1))
    idx = np.arange(V)
    kv = np.stack(np.unravel_index(idx, shape), -1)
    neg = np.ravel_multi_index(tuple(np.moveaxis((-kv) % np.asarray(shape), -1, 0)), shape)

    def feats(phi):
        if phi.ndim != len(shape) + 1:
            raise ValueError("source: the coarse-grained propagator needs a scalar field")
        return np.fft.fftn(phi, axes=axes).reshape(phi.shape[0], V)

    res = correlator_replicas(source, np.stack([idx, neg], 1), stat="moment", features=feats,
                              n_blocks=n_blocks)
    val = np.real(res.value) / V
    reps = np.real(res.replicas) / V
    return val.reshape(shape), _jk_error(reps).reshape(shape), reps.reshape((n_blocks,) + shape)


def rg_flow(store, cutoffs, *, mode="momentum", metric="pmag", n_blocks=32, alpha=0.01,
            rtol_floor=1e-9, quartic=True, n_tuples=12, seed=0):
    """Flow of the propagator (and of the fitted quartic coupling) under cos-net coarse-graining.

    For each cutoff the store's chunks are regenerated without the shell
    (:class:`CoarseGrainedSource`) and the momentum-space propagator is compared, momentum by
    momentum, with the exact momentum-shell flow Gt(p) theta(Lambda - |p|) of the free lattice
    scalar (LatticeCosNet stores). Momenta outside the cutoff have exactly zero propagator; a
    relative error floor ``rtol_floor * Gt(0)`` guards against float round-off there.

    With ``quartic=True`` the connected 4-point function of the coarse-grained ensemble is fitted
    with the local tree-level template built from the cut propagator
    (``couplings.quartic_coupling``), giving lambda(Lambda); for LatticeCosNet the same fit of
    the exact finite-width result (``cluster.cosnet_g4c`` with G_Lambda) is reported alongside as
    ``lam_expected``.

    Returns
    -------
    xarray.Dataset
        dims ``cutoff`` and the momentum axes: ``Gt``, ``Gt_error``, ``Gt_expected`` (if known);
        over ``cutoff``: ``max_abs_z``, ``passed``, ``kept_fraction`` [, ``lam``, ``lam_error``,
        ``lam_expected``]; attrs ``verdict`` ("matches the momentum-shell flow" / "does not match").
    """
    spec = spec_from_dict(store.spec)
    lat = store.lattice
    if getattr(lat, "boundary", "open") != "periodic" or getattr(lat, "kind", "") != "lattice":
        raise ValueError("store: the RG flow needs a periodic Lattice")
    shape = tuple(lat.shape)
    exact = type(spec).__name__ == "LatticeCosNet"
    cutoffs = np.asarray(cutoffs, dtype=float)
    Gts, errs, exps, maxz, passed, kept, lams, lam_errs, lam_exp = ([] for _ in range(9))
    for c in cutoffs:
        src = CoarseGrainedSource(store, c, mode=mode, metric=metric, verify=len(Gts) == 0)
        val, err, reps = coarse_grained_propagator(src, n_blocks=n_blocks)
        Gts.append(val)
        errs.append(err)
        kept.append(src.kept_fraction)
        if exact:
            e = shell_propagator(lat, spec.m2, c, metric=metric, mode=mode)
            exps.append(e)
            err_f = np.sqrt(err ** 2 + (rtol_floor * e.flat[0]) ** 2)
            v = assess_deviations((val - e).ravel(), err_f.ravel(), dof=n_blocks - 1, alpha=alpha)
            maxz.append(v["max_abs_z"])
            passed.append(int(v["passed"]))
        if quartic and exact:
            GL = np.fft.ifftn(shell_propagator(lat, spec.m2, c, metric=metric, mode=mode)).real
            t4 = local_tuples(lat, 4, n_tuples, seed=seed)
            ds4 = quartic_coupling(src, lat, GL, tuples=t4, n_blocks=n_blocks)
            lams.append(ds4.attrs["lam"])
            lam_errs.append(ds4.attrs["lam_error"])
            G0 = float(free_propagator(lat, spec.m2).flat[0])
            k4 = amplitude_moments(spec.amplitude)[0] if spec.components is None else np.nan
            g4 = cosnet_g4c(GL, t4, spec.width, kurtosis=k4, G0=G0)
            lam_exp.append(fit_quartic(g4, np.asarray(ds4["error"]),
                                       vertex_sum(GL, t4, lattice=lat))["lam"])
    mdims = tuple(f"p{i}" for i in range(len(shape)))
    data = {"Gt": (("cutoff",) + mdims, np.array(Gts)),
            "Gt_error": (("cutoff",) + mdims, np.array(errs)),
            "kept_fraction": ("cutoff", np.array(kept))}
    attrs = {"mode": mode, "metric": metric, "n_blocks": n_blocks, "arch": type(spec).__name__}
    if exact:
        data["Gt_expected"] = (("cutoff",) + mdims, np.array(exps))
        data["max_abs_z"] = ("cutoff", np.array(maxz))
        data["passed"] = ("cutoff", np.array(passed))
        ok = all(passed)
        attrs.update({"verdict": "matches the momentum-shell flow" if ok else "does not match",
                      "passed": int(ok)})
    if lams:
        data["lam"] = ("cutoff", np.array(lams))
        data["lam_error"] = ("cutoff", np.array(lam_errs))
        data["lam_expected"] = ("cutoff", np.array(lam_exp))
    coords = {"cutoff": cutoffs}
    coords.update({f"p{i}": np.arange(L) for i, L in enumerate(shape)})
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    ds = ds.assign_coords(p2=(mdims, _p2_of_lattice(lat, metric)))
    return ds


def plot_rg_flow(ds, path):
    """PNG: coarse-grained propagator against |p| for each cutoff, with the exact shell flow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.sqrt(np.asarray(ds["p2"]).ravel())
    order = np.argsort(p)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, c in enumerate(np.asarray(ds["cutoff"])):
        g = np.asarray(ds["Gt"][i]).ravel()
        e = np.asarray(ds["Gt_error"][i]).ravel()
        ax.errorbar(p[order], g[order], e[order], fmt="o", ms=3, color=f"C{i}",
                    label=f"Lambda = {c:.3g}")
        if "Gt_expected" in ds:
            ax.plot(p[order], np.asarray(ds["Gt_expected"][i]).ravel()[order], "-",
                    color=f"C{i}", lw=0.8)
    ax.set_xlabel("|p|")
    ax.set_ylabel("Gt(p) after coarse-graining")
    ax.set_title("momentum-shell RG flow (lines: Gt(p) theta(Lambda - |p|))")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# Information-shell (Bayesian RG) coarse-graining for every architecture, from a computed metric
# ---------------------------------------------------------------------------------------------

#: Re-drawn shells of chunk k come from ``chunk_rng(seed + REDRAW_STREAM, k)`` (a stream
#: independent of the ensemble's own, fixed so that coarse-grained ensembles are reproducible).
REDRAW_STREAM = 0x42524721


def _slice_params(params, s, e):
    return {k: ([a[s:e] for a in v] if isinstance(v, list) else v[s:e]) for k, v in params.items()}


def information_per_neuron(spec, params, lattice, *, kind="amplitude", noise=1.0, scales=None,
                           batch=64):
    """:func:`fisher.neuron_information` in batches of ``batch`` networks (bounded memory)."""
    from .fisher import neuron_information
    n = (params["Ws"][0] if "Ws" in params else params["c" if "c" in params else "W0"]).shape[0]
    out = []
    for s in range(0, n, batch):
        sub = _slice_params(params, s, min(s + batch, n))
        sc = None if scales is None else scales(spec, sub, lattice)
        out.append(neuron_information(spec, sub, lattice, kind=kind, noise=noise, scales=sc))
    return np.concatenate(out, axis=0)


def cosnet_information_scale(spec, lattice, noise=1.0):
    """``V A^2 / (2 N noise^2)`` for a ContinuumCosNet in the amplitude form: the phase-averaged
    amplitude information of a neuron at frequency w is this over ``w^2 + m^2``."""
    from nnft.ensembles.params import continuum_norm
    return lattice.volume * continuum_norm(spec) ** 2 / (2 * spec.width * noise ** 2)


def information_to_momentum(I_c, spec, lattice, noise=1.0):
    """Momentum cutoff of an information cutoff for the amplitude-form cos-net:
    ``Lambda^2 = V A^2 / (2 N noise^2 I_c) - m^2`` (clipped to [0, spec.cutoff])."""
    if I_c <= 0:
        raise ValueError(f"I_c: must be positive, got {I_c}")
    L2 = cosnet_information_scale(spec, lattice, noise) / I_c - spec.m2
    return min(math.sqrt(max(L2, 0.0)), spec.cutoff)


class InformationShellSource:
    """A network FieldStore coarse-grained in parameter space with the computed Fisher metric.

    Every chunk is regenerated from the store's provenance (spec, seed: ``draw_params`` with
    ``chunk_rng(seed, k)``); the per-neuron Fisher information ``I_i`` of each network is computed
    from its Jacobian (:mod:`nnft.observables.fisher`); the neurons with ``I_i < info_cutoff``
    are removed (``shell="remove"``: outgoing weights set to zero) or re-drawn from the prior
    (``shell="redraw"``, stream ``chunk_rng(seed + REDRAW_STREAM, k)``); the fields are
    re-evaluated with ``ensembles.evaluate``. Any architecture with a Fisher metric (single-layer,
    DeepMLP (last hidden layer), cos-nets). Reading protocol as :class:`CoarseGrainedSource`.
    """

    def __init__(self, store, info_cutoff, *, shell="remove", kind="amplitude", noise=1.0,
                 scales=None, verify=True):
        from .fisher import INFORMATION_KINDS, _arch_kind
        if getattr(store, "spec", None) is None or getattr(store, "seed", None) is None:
            raise ValueError("store: needs network provenance (spec and seed) to regenerate chunks")
        backend = getattr(store, "backend", "numpy") or "numpy"
        if backend != "numpy":
            raise ValueError(f"store: regenerating chunks needs the numpy backend, store has {backend!r}")
        if shell not in ("remove", "redraw"):
            raise ValueError(f"shell: must be 'remove' or 'redraw', got {shell!r}")
        if kind not in INFORMATION_KINDS:
            raise ValueError(f"kind: must be one of {INFORMATION_KINDS}, got {kind!r}")
        if not info_cutoff >= 0:
            raise ValueError(f"info_cutoff: must be >= 0, got {info_cutoff}")
        self.spec_obj = spec_from_dict(store.spec)
        _arch_kind(self.spec_obj)
        self.base, self.cutoff, self.shell, self.kind = store, float(info_cutoff), shell, kind
        self.noise, self.scales = float(noise), scales
        for a in ("lattice", "n_samples", "chunk", "n_chunks", "components", "spec", "seed"):
            setattr(self, a, getattr(store, a))
        self.n_replicas, self.weighted, self.path = 1, False, None
        self.source = "information_shell"
        self.extra = {"cutoff": self.cutoff, "shell": shell, "kind": kind, "noise": self.noise}
        self.attrs = dict(self.extra, source="information_shell")
        self._kept = [0.0, 0]
        if verify:
            ref, _ = store.read_chunk(0)
            phi0 = self._fields(draw_params(self.spec_obj, self.lattice, ref.shape[0],
                                            chunk_rng(self.seed, 0, np), np), ref.shape[0])
            if not np.allclose(phi0, np.asarray(ref), rtol=1e-9, atol=1e-9):
                raise ValueError("store: regenerated chunk 0 differs from the stored one "
                                 "(provenance mismatch: spec, seed or engine version)")

    def chunk_range(self, k):
        return self.base.chunk_range(k)

    def complete_chunks(self):
        return list(self.base.complete_chunks())

    def missing_chunks(self):
        return list(self.base.missing_chunks())

    def read_chunk(self, k):
        return self.coarse_chunk(k, self.cutoff), None

    def iter_chunks(self, chunks=None):
        for k in (self.complete_chunks() if chunks is None else chunks):
            yield k, self.coarse_chunk(k, self.cutoff), None

    @property
    def kept_fraction(self):
        return self._kept[0] / max(self._kept[1], 1)

    def _fields(self, params, n):
        lat, spec = self.lattice, self.spec_obj
        phi = evaluate(spec, params, lat, np)
        shape = (n,) + (() if spec.components is None else (spec.n_components,)) + tuple(lat.shape)
        return np.asarray(phi).reshape(shape)

    def chunk_parameters(self, k):
        """(original params, re-drawn params or None, information (n, N)) of chunk k."""
        start, stop = self.chunk_range(k)
        n = stop - start
        spec, lat = self.spec_obj, self.lattice
        params = draw_params(spec, lat, n, chunk_rng(self.seed, k, np), np)
        fresh = (draw_params(spec, lat, n, chunk_rng(self.seed + REDRAW_STREAM, k, np), np)
                 if self.shell == "redraw" else None)
        info = information_per_neuron(spec, params, lat, kind=self.kind, noise=self.noise,
                                      scales=self.scales)
        return params, fresh, info

    def coarse_chunk(self, k, cutoff, *, parts=None):
        """Fields of chunk k with the shell ``I_i < cutoff`` removed / re-drawn."""
        from .fisher import coarse_grain_params
        params, fresh, info = self.chunk_parameters(k) if parts is None else parts
        keep = info >= cutoff
        coarse, _ = coarse_grain_params(self.spec_obj, params, keep, shell=self.shell, redraw=fresh)
        self._kept[0] += float(keep.sum())
        self._kept[1] += keep.size
        return self._fields(coarse, info.shape[0])


def _as_list(v):
    return v if isinstance(v, list) else [v]


def _jk(block_sums, counts, fn):
    """Delete-one-block jackknife of ``fn(means)`` from per-block sums; returns (value, error)."""
    S = np.asarray(block_sums)
    c = np.asarray(counts, dtype=float)
    tot, n = S.sum(0), c.sum()
    val = fn(tot / n)
    reps = np.array([fn((tot - S[b]) / (n - c[b])) for b in range(len(c))])
    B = len(c)
    return val, np.sqrt((B - 1) / B * ((reps - reps.mean(0)) ** 2).sum(0))


def information_flow(store, cutoffs, *, shell="remove", kind="amplitude", noise=1.0,
                     direction="uv_to_ir", separations=None, scales=None, alpha=0.01,
                     n_blocks=16, verify=True):
    """Flow of the two-point and connected four-point functions with the information cutoff.

    For each information cutoff ``I_c`` the neurons of every stored network whose computed
    Fisher information is below ``I_c`` are removed or re-drawn (:class:`InformationShellSource`)
    and the fields re-evaluated. Measured at the site ``x0`` (first site) and the sites ``x_r``
    at ``r`` lattice steps along axis 0 (component 0 of vector fields; fields of zero mean):
    ``G2(r) = <phi(x0) phi(x_r)>`` and ``G4c(r) = <phi0^2 phi_r^2> - <phi0^2><phi_r^2> -
    2 <phi0 phi_r>^2``, with delete-one-block jackknife errors (``n_blocks`` contiguous blocks
    of samples).

    ``direction="uv_to_ir"``: each cutoff is applied to the original networks.
    ``direction="ir_to_uv"``: starting from the coarsest ensemble, the shells are added back in
    order of information (:func:`fisher.restore_params`), ending with all neurons restored; the
    attrs ``restores_original`` records that the fully restored parameters and fields equal the
    original ones bit for bit (and the stored fields to 1e-9).

    Beside each information-shell ensemble, the momentum-shell flow of the same networks:
    the original fields with every lattice Fourier mode ``|p| > Lambda_p`` removed (``p`` in
    lattice units, ``2 pi n / L``), ``Lambda_p`` chosen so that the kept fraction of lattice
    modes equals the kept fraction of neurons (that of the first chunk):
    ``G2_momentum_shell``, ``G4c_momentum_shell`` (with errors), ``momentum_shell_cutoff``, and
    the attr ``momentum_shell_max_abs_z`` (largest |G2 - G2_momentum_shell| over the errors in
    quadrature; descriptive: for architectures other than the amplitude-form cos-net there is
    no reason for the two flows to agree).

    The quartic coupling of each flow, ``lam`` (``lam_error``, jackknife): the fit of
    ``G4c(0, 0, r, r) = lambda T(r)`` with the lattice vertex
    ``T(r) = -24 sum_y K(0, y)^2 K(r, y)^2``, ``K`` the flow's own measured two-point matrix
    (weights 1/error^2).

    For a ContinuumCosNet in the amplitude form, ``G2_expected`` is the momentum-shell
    propagator ``int_{|p| < Lambda} d^dp/(2 pi)^d exp(i p.r)/(p^2 + m^2)`` at the matching
    momentum cutoff (:func:`information_to_momentum`) and the verdict compares the two
    ("matches the momentum-shell flow" / "does not match the momentum-shell flow").

    Returns
    -------
    xarray.Dataset over ``cutoff`` (sorted in flow order) and ``r``.
    """
    from nnft.ensembles import ContinuumCosNet, continuum_propagator
    from .fisher import coarse_grain_params, restore_params
    if direction not in ("uv_to_ir", "ir_to_uv"):
        raise ValueError(f"direction: must be 'uv_to_ir' or 'ir_to_uv', got {direction!r}")
    src = InformationShellSource(store, 0.0, shell=shell, kind=kind, noise=noise, scales=scales,
                                 verify=verify)
    spec, lat = src.spec_obj, src.lattice
    cut = np.sort(np.asarray(cutoffs, dtype=float))
    if cut.size == 0 or np.any(cut < 0):
        raise ValueError("cutoffs: need one or more information cutoffs >= 0")
    if direction == "ir_to_uv":
        cut = cut[::-1]
    shape = tuple(lat.shape)
    V = int(np.prod(shape))
    if separations is None:
        separations = list(range(0, shape[0] // 2 + 1))
    r_idx = np.array([np.ravel_multi_index((r,) + (0,) * (len(shape) - 1), shape)
                      for r in separations])
    X = np.asarray(lat.positions())
    r_dist = np.linalg.norm(X[r_idx] - X[0], axis=-1)
    nc, nr = len(cut), len(r_idx)
    n_tot = int(store.n_samples)
    if not 2 <= n_blocks <= n_tot:
        raise ValueError(f"n_blocks: must be in [2, n_samples={n_tot}], got {n_blocks}")
    sums, counts, kept = np.zeros((n_blocks, nc, 5, nr)), np.zeros(n_blocks), np.zeros(nc)
    # momentum-shell companion: the original fields with their Fourier modes |p| above the
    # cutoff removed, the cutoff chosen so that the kept fraction of lattice modes equals the
    # kept fraction of neurons (from the first chunk's information)
    chunks = list(src.complete_chunks())
    info0 = src.chunk_parameters(chunks[0])[2] if chunks else np.zeros((1, 1))
    pmag = np.sqrt(sum(np.meshgrid(*[(2 * np.pi * np.fft.fftfreq(L)) ** 2 for L in shape],
                                   indexing="ij")))
    pflat = np.sort(pmag.ravel())
    masks, pcut = [], []
    for c in cut:
        f = float((info0 >= c).mean())
        n_keep = int(round(f * V))
        lam_p = pflat[n_keep - 1] if n_keep > 0 else -1.0
        masks.append(pmag <= lam_p + 1e-12)
        pcut.append(max(lam_p, 0.0))
    sums_mom = np.zeros((n_blocks, nc, 5, nr))
    # the full two-point matrix of every flow (lattice vertex of the fitted quartic coupling)
    S2 = np.zeros((n_blocks, nc, V, V))
    restored_ok = True
    for k in chunks:
        params, fresh, info = src.chunk_parameters(k)
        n = info.shape[0]
        start = src.chunk_range(k)[0]
        bid = (np.arange(start, start + n) * n_blocks) // n_tot
        if direction == "uv_to_ir":
            plist = [coarse_grain_params(spec, params, info >= c, shell=shell, redraw=fresh)[0]
                     for c in cut]
        else:
            cur, removed = coarse_grain_params(spec, params, info >= cut[0], shell=shell,
                                               redraw=fresh)
            plist = [cur]
            for c in cut[1:]:
                # add back the neurons with c <= I < cut[0] (kept at c, removed at cut[0])
                removed_c = dict(removed, keep=~((info >= c) & (info < cut[0])))
                plist.append(restore_params(cur, removed_c))
            full = restore_params(cur, removed)
            ok_params = all(np.array_equal(a, b) for key in params for a, b in
                            zip(_as_list(params[key]), _as_list(full[key])))
            phi_full = evaluate(spec, full, lat, np)
            phi_orig = evaluate(spec, params, lat, np)
            ref = np.asarray(store.read_chunk(k)[0]).reshape(phi_orig.shape)
            restored_ok &= ok_params and np.array_equal(phi_full, phi_orig) and \
                np.allclose(phi_full, ref, rtol=1e-9, atol=1e-9)
        phi0 = np.asarray(evaluate(spec, params, lat, np))[:, 0, :]
        phi0_k = np.fft.fftn(phi0.reshape((-1,) + shape), axes=tuple(range(1, len(shape) + 1)))
        for j, p in enumerate(plist):
            phi = np.asarray(evaluate(spec, p, lat, np))[:, 0, :]
            a, b = phi[:, :1], phi[:, r_idx]
            terms = np.stack([a * b, a * a * np.ones(nr), b * b, a * a * b * b, b], 1)
            np.add.at(sums[:, j], bid, terms)
            for u in np.unique(bid):
                m = bid == u
                S2[u, j] += phi[m].T @ phi[m]
            pm = np.fft.ifftn(phi0_k * masks[j][None], axes=tuple(range(1, len(shape) + 1)))
            pm = pm.real.reshape(phi.shape[0], V)
            a, b = pm[:, :1], pm[:, r_idx]
            terms = np.stack([a * b, a * a * np.ones(nr), b * b, a * a * b * b, b], 1)
            np.add.at(sums_mom[:, j], bid, terms)
            kept[j] += float((info >= cut[j]).sum())
        np.add.at(counts, bid, 1)
        n_neurons = info.shape[1]
    kept /= counts.sum() * n_neurons

    def g2(m):
        return m[:, 0]

    def g4c(m):
        return m[:, 3] - m[:, 1] * m[:, 2] - 2 * m[:, 0] ** 2

    G2, G2e = _jk(sums, counts, g2)
    G4, G4e = _jk(sums, counts, g4c)
    mean, meane = _jk(sums, counts, lambda m: m[:, 4])
    G2m, G2me = _jk(sums_mom, counts, g2)
    G4m, G4me = _jk(sums_mom, counts, g4c)
    # fitted quartic coupling of each flow: G4c(0, 0, r, r) = lambda T(r) with the lattice
    # vertex T(r) = -24 sum_y K(0, y)^2 K(r, y)^2 and K the flow's own measured two-point
    # matrix; weights 1/error(G4c)^2; jackknife with K re-estimated in every replica
    w = np.where(G4e > 0, 1.0 / np.where(G4e > 0, G4e, 1.0) ** 2, 0.0)

    def lam_of(m, K):
        out = np.empty(nc)
        for j in range(nc):
            T = -24.0 * (K[j][0] ** 2 * K[j][r_idx] ** 2).sum(-1)
            y = g4c(m[j][None])[0]
            out[j] = (w[j] * T * y).sum() / max((w[j] * T * T).sum(), 1e-300)
        return out

    tot, totK, n_all = sums.sum(0), S2.sum(0), counts.sum()
    lam = lam_of(tot / n_all, totK / n_all)
    lam_rep = np.array([lam_of((tot - sums[u]) / (n_all - counts[u]),
                               (totK - S2[u]) / (n_all - counts[u])) for u in range(n_blocks)])
    lam_err = np.sqrt((n_blocks - 1) / n_blocks * ((lam_rep - lam_rep.mean(0)) ** 2).sum(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        zmom = np.abs(G2 - G2m) / np.sqrt(G2e ** 2 + G2me ** 2)
    data = {"G2": (("cutoff", "r"), G2), "G2_error": (("cutoff", "r"), G2e),
            "G4c": (("cutoff", "r"), G4), "G4c_error": (("cutoff", "r"), G4e),
            "mean": (("cutoff", "r"), mean), "mean_error": (("cutoff", "r"), meane),
            "kept_fraction": ("cutoff", kept),
            "G2_momentum_shell": (("cutoff", "r"), G2m),
            "G2_momentum_shell_error": (("cutoff", "r"), G2me),
            "G4c_momentum_shell": (("cutoff", "r"), G4m),
            "G4c_momentum_shell_error": (("cutoff", "r"), G4me),
            "momentum_shell_cutoff": ("cutoff", np.asarray(pcut)),
            "lam": ("cutoff", lam), "lam_error": ("cutoff", lam_err)}
    attrs = {"arch": type(spec).__name__, "shell": shell, "kind": kind, "noise": float(noise),
             "direction": direction, "observation_model": "phi + N(0, noise^2) per site"}
    attrs["momentum_shell_max_abs_z"] = float(np.nanmax(zmom)) if zmom.size else 0.0
    if direction == "ir_to_uv":
        attrs["restores_original"] = int(restored_ok)
    if isinstance(spec, ContinuumCosNet) and spec.form == "amplitude" and shell == "remove":
        Lam = np.array([information_to_momentum(c, spec, lat, noise) if c > 0 else spec.cutoff
                        for c in cut])
        exp = np.array([continuum_propagator(r_dist, spec.d_in, spec.m2, L) for L in Lam])
        data["G2_expected"] = (("cutoff", "r"), exp)
        data["momentum_cutoff"] = ("cutoff", Lam)
        v = assess_deviations((G2 - exp).ravel(), G2e.ravel(), dof=n_blocks - 1, alpha=alpha)
        attrs.update({"verdict": "matches the momentum-shell flow" if v["passed"]
                      else "does not match the momentum-shell flow",
                      "passed": int(v["passed"]), "max_abs_z": float(v["max_abs_z"])})
    coords = {"cutoff": cut, "r": np.asarray(separations), "distance": ("r", r_dist)}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot_information_flow(ds, path):
    """PNG: G2(r) and G4c(r) against the information cutoff (errors; momentum-shell lines)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    cut = np.asarray(ds["cutoff"])
    for i, r in enumerate(np.asarray(ds["r"])):
        axes[0].errorbar(cut, ds["G2"][:, i], ds["G2_error"][:, i], fmt="o-", ms=3,
                         color=f"C{i}", label=f"r = {r}")
        if "G2_expected" in ds:
            axes[0].plot(cut, ds["G2_expected"][:, i], "--", color=f"C{i}", lw=0.8)
        axes[1].errorbar(cut, ds["G4c"][:, i], ds["G4c_error"][:, i], fmt="o-", ms=3,
                         color=f"C{i}")
    for ax, lab in zip(axes, ("G2(0, r)", "G4c(0, 0, r, r)")):
        ax.set_xscale("symlog", linthresh=max(float(cut[cut > 0].min()) if np.any(cut > 0)
                                              else 1e-3, 1e-12))
        ax.set_xlabel("information cutoff I_c")
        ax.set_ylabel(lab)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Bayesian RG flow, {ds.attrs['arch']} ({ds.attrs['shell']}; dashed: "
                 "momentum-shell flow)" if "G2_expected" in ds else
                 f"Bayesian RG flow, {ds.attrs['arch']} ({ds.attrs['shell']})")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
