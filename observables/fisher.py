"""Fisher information metric of a network's parameters, computed from the network (arXiv:2405.17538).

Observation model
-----------------
The field a network produces on the sites is observed with independent Gaussian noise of
variance ``noise**2`` at every site and output component::

    y_a(x) = phi_a(x; theta) + eps_a(x),    eps ~ N(0, noise^2).

The Fisher metric of the parameters is then ``F = J^T J / noise^2`` with
``J[(a, x), j] = d phi_a(x) / d theta_j`` (the Jacobian of the field at the sites).

Coordinates: prior units
------------------------
Parameters are measured in units of their prior width: ``theta_j = mu_j + s_j u_j`` with ``s_j``
the standard deviation of ``theta_j`` under the architecture's prior, *conditional on the
discrete / non-Gaussian labels it was drawn with* (e.g. the amplitude of a cos-net neuron in the
"amplitude" form has prior width ``A / sqrt(N (|w|^2 + m^2))`` given its frequency w). The metric
in these coordinates, ``F_u = S J^T J S / noise^2`` with ``S = diag(s)``, is the information an
observation carries about a parameter relative to the prior's information about it (the prior
precision is 1 in every direction): ``F_u[j, j] << 1`` means the observation cannot tell the
parameter from a fresh prior draw. This is the distinguishability scale Bayesian RG coarse-grains
with. Parameters with zero prior width (e.g. ``sigma_b = 0``) get zero information. Discrete
parameters (the lattice momentum index of a LatticeCosNet neuron) are not coordinates.

Per-neuron information
----------------------
``kind="amplitude"``: the information of the neuron's outgoing weight(s), ``I_i = sum_a
F_u[(W1_ai), (W1_ai)]`` (the diagonal of the metric in the amplitude directions).
``kind="neuron"``: the trace of the neuron's whole diagonal block (incoming weights, bias,
outgoing weights). For deep MLPs the neurons are those of the last hidden layer.

For a cos-net ``phi(x) = sum_i a_i cos(w_i . x + c_i)`` in the amplitude form
``a_i = A xi_i / sqrt(N (w_i^2 + m^2))`` the amplitude information is
``A^2 sum_x cos^2(w_i . x + c_i) / (N (w_i^2 + m^2) noise^2)``, i.e. ``V A^2 / (2 N noise^2
(w_i^2 + m^2))`` up to the O(1) oscillating part of ``sum_x cos^2``: ordering neurons by
information orders them by |w| and an information cutoff is a momentum cutoff. In the "density"
form (frequencies drawn with density ~ 1/(w^2 + m^2), constant amplitude width; this is how
``LatticeCosNet`` is written) the amplitude information is flat in w: the ordering is not a
momentum ordering. The identity is a property of the parametrisation, and it is computed here,
not assumed.

Jacobians are analytic for single-hidden-layer nets and cos-nets (the activation's derivative
by a central difference of the architecture's own compiled activation) and by backpropagation
for deep MLPs; :func:`fd_jacobian` gives the central finite-difference reference through
``ensembles.evaluate`` (the architecture's own evaluation code). No training anywhere.
"""
from __future__ import annotations

import math

import numpy as np

from nnft.ensembles import evaluate
from nnft.ensembles.activations import compile_activation
from nnft.ensembles.evaluate import gauss_shift
from nnft.ensembles.params import continuum_norm, momentum_alias
from nnft.ensembles.specs import (ContinuumCosNet, DeepMLP, GaussianCosNet, GaussNet,
                                  LatticeCosNet, MassMixtureCosNet, _SingleLayer)
from nnft.lattice.backend import xp_of

__all__ = ["param_layout", "prior_scales", "jacobian", "fd_jacobian", "fisher_metric",
           "neuron_information", "coarse_grain_params", "restore_params", "INFORMATION_KINDS"]

INFORMATION_KINDS = ("amplitude", "neuron")
_PHASE_STD = math.pi / math.sqrt(3.0)  # std of a phase uniform on (-pi, pi]


def _arch_kind(spec):
    if isinstance(spec, MassMixtureCosNet):
        raise ValueError("spec: MassMixtureCosNet is not supported by the Fisher metric "
                         "(its neurons share a random mass)")
    if isinstance(spec, LatticeCosNet):
        return "latcos"
    if isinstance(spec, (GaussianCosNet, ContinuumCosNet)):
        return "cos"
    if isinstance(spec, DeepMLP):
        return "deep"
    if isinstance(spec, _SingleLayer):
        return "single"
    raise ValueError(f"spec: no Fisher metric for architecture {type(spec).__name__}; allowed: "
                     "single-layer nets, DeepMLP, GaussianCosNet, ContinuumCosNet, LatticeCosNet")


def param_layout(spec, params):
    """Continuous parameters in Jacobian column order: list of ``(key, layer, shape)``.

    ``key`` indexes ``params`` (``layer`` the list index for DeepMLP ``Ws``/``bs``, else None);
    ``shape`` is the per-network shape, flattened in C order.
    """
    kind = _arch_kind(spec)
    if kind == "deep":
        out = []
        for l in range(len(params["Ws"])):
            out.append(("Ws", l, tuple(params["Ws"][l].shape[1:])))
            out.append(("bs", l, tuple(params["bs"][l].shape[1:])))
        return out
    if kind == "latcos":
        return [("c", None, tuple(params["c"].shape[1:])), ("a", None, tuple(params["a"].shape[1:]))]
    out = [("W0", None, tuple(params["W0"].shape[1:])), ("b0", None, tuple(params["b0"].shape[1:])),
           ("W1", None, tuple(params["W1"].shape[1:]))]
    if kind == "single":
        out.append(("b1", None, tuple(params["b1"].shape[1:])))
    return out


def _get(params, key, layer):
    return params[key] if layer is None else params[key][layer]


def prior_scales(spec, params, lattice):
    """Prior standard deviation of every continuous parameter, same layout as ``params``.

    Returns a dict ``{(key, layer): array (n, *shape)}`` (conditional on the network's own
    frequencies where the prior width depends on them, see the module docstring).
    """
    kind = _arch_kind(spec)
    xp = xp_of(_get(params, *param_layout(spec, params)[0][:2]))
    out = {}

    def full(key, layer, s):
        a = _get(params, key, layer)
        return xp.broadcast_to(xp.asarray(s, dtype=xp.float64), a.shape)

    if kind == "single":
        N, d = spec.width, spec.d_in
        out[("W0", None)] = full("W0", None, spec.sigma_w / math.sqrt(d))
        out[("b0", None)] = full("b0", None, spec.sigma_b)
        out[("W1", None)] = full("W1", None, spec.sigma_w / math.sqrt(N))
        out[("b1", None)] = full("b1", None, spec.sigma_b)
    elif kind == "deep":
        for l, W in enumerate(params["Ws"]):
            out[("Ws", l)] = full("Ws", l, spec.sigma_w / math.sqrt(W.shape[-1]))
            out[("bs", l)] = full("bs", l, spec.sigma_b)
    elif kind == "latcos":
        N = spec.width
        G0 = momentum_alias(lattice, spec.m2, np)[2]
        out[("c", None)] = full("c", None, _PHASE_STD)
        out[("a", None)] = full("a", None, math.sqrt(2.0 * G0 / N))
    else:
        N, d = spec.width, spec.d_in
        out[("b0", None)] = full("b0", None, _PHASE_STD)
        if isinstance(spec, GaussianCosNet):
            out[("W0", None)] = full("W0", None, spec.sigma_w / math.sqrt(d))
            out[("W1", None)] = full("W1", None, spec.s / math.sqrt(N))
        else:
            out[("W0", None)] = full("W0", None, spec.cutoff / math.sqrt(d + 2.0))
            A = continuum_norm(spec) / math.sqrt(N)
            if spec.form == "amplitude":  # amplitude factor 1/sqrt(w^2 + m^2), given w
                w = params["W0"]
                s = A / xp.sqrt((w * w).sum(axis=-1) + spec.m2)  # (n, N)
                out[("W1", None)] = xp.broadcast_to(s[:, None, :], params["W1"].shape)
            else:
                out[("W1", None)] = full("W1", None, A)
    return out


def _act_and_derivative(expr, xp, h=1e-5):
    act = compile_activation(expr, xp)

    def f(z):
        return act(xp.array(z, copy=True))

    def df(z):
        return (f(z + h) - f(z - h)) / (2 * h)
    return f, df


def _single_layer_parts(spec, params, lattice, xp):
    """(W0, b0, W1, b1, X, act, dact, shift) of a single-hidden-layer view of the network."""
    X = xp.asarray(lattice.positions(xp), dtype=xp.float64)
    kind = _arch_kind(spec)
    if kind == "latcos":
        P = xp.asarray(lattice.momenta(xp)).reshape(lattice.volume, lattice.dim)
        W0, b0, W1, b1 = P[params["k"]], params["c"], params["a"], None
        expr, shift = "cos", None
    elif kind == "cos":
        W0, b0, W1, b1 = params["W0"], params["b0"], params["W1"], None
        expr, shift = "cos", None
    else:
        W0, b0, W1, b1 = params["W0"], params["b0"], params["W1"], params["b1"]
        if isinstance(spec, GaussNet):
            expr, shift = "exp(x)", gauss_shift(spec, X, xp)
        else:
            expr, shift = spec.activation_expr, None
    f, df = _act_and_derivative(expr, xp)
    return W0, b0, W1, b1, X, f, df, shift


def jacobian(spec, params, lattice, *, whiten=True, scales=None):
    """Jacobian of the fields on the sites with respect to the continuous parameters.

    Parameters
    ----------
    spec, params, lattice
        An architecture, parameters of n networks as drawn by ``ensembles.draw_params`` and the
        lattice / point set they are evaluated on.
    whiten : bool
        Columns in prior units (``d phi / d u_j = s_j d phi / d theta_j``, module docstring).
    scales : dict, optional
        Replace :func:`prior_scales` (for checks with a deliberately wrong prior width).

    Returns
    -------
    array (n, D * V, P)
        Rows: output component a and site v (index ``a * V + v``); columns in
        :func:`param_layout` order.
    """
    kind = _arch_kind(spec)
    layout = param_layout(spec, params)
    xp = xp_of(_get(params, *layout[0][:2]))
    cols = _deep_columns(spec, params, lattice, xp) if kind == "deep" else \
        _single_columns(spec, params, lattice, xp)
    if whiten:
        sc = prior_scales(spec, params, lattice) if scales is None else scales
    out = []
    for key, layer, shape in layout:
        c = cols[(key, layer)]  # (n, D, V, *shape)
        if whiten:
            c = c * sc[(key, layer)][:, None, None]
        n, D, V = c.shape[:3]
        out.append(c.reshape(n, D * V, -1))
    return xp.concatenate(out, axis=-1)


def _single_columns(spec, params, lattice, xp):
    W0, b0, W1, b1, X, f, df, shift = _single_layer_parts(spec, params, lattice, xp)
    n = W0.shape[0]
    z = xp.matmul(W0, X.T) + b0[:, :, None]  # (n, N, V)
    if shift is not None:
        z = z - shift
    h, dh = f(z), df(z)
    D = W1.shape[1]
    V = X.shape[0]
    g = W1[:, :, :, None] * dh[:, None, :, :]  # (n, D, N, V): d phi_a(v) / d b0_i
    cols = {}
    eye = xp.eye(D)
    Wout = eye[None, :, None, :, None] * xp.moveaxis(h, 2, 1)[:, None, :, None, :]
    kind = _arch_kind(spec)
    if kind == "latcos":
        cols[("c", None)] = xp.moveaxis(g, 3, 2)
        cols[("a", None)] = Wout
        return cols
    cols[("W0", None)] = xp.moveaxis(g, 3, 2)[..., None] * X[None, None, :, None, :]
    cols[("b0", None)] = xp.moveaxis(g, 3, 2)
    cols[("W1", None)] = Wout  # (n, D, V, D, N)
    if kind == "single":
        cols[("b1", None)] = xp.broadcast_to(eye[None, :, None, :], (n, D, V, D))
    return cols


def _deep_columns(spec, params, lattice, xp):
    """Backpropagation through a DeepMLP: d phi_a(v) / d (Ws[l], bs[l]) for every layer."""
    X = xp.asarray(lattice.positions(xp), dtype=xp.float64)
    f, df = _act_and_derivative(spec.activation_expr, xp)
    Ws, bs = params["Ws"], params["bs"]
    L = len(Ws)
    hs, dzs = [xp.broadcast_to(X.T, (Ws[0].shape[0],) + X.T.shape)], []
    for l in range(L - 1):
        z = xp.matmul(Ws[l], hs[-1]) + bs[l][:, :, None]  # (n, width, V)
        hs.append(f(z))
        dzs.append(df(z))
    n, D = Ws[-1].shape[0], Ws[-1].shape[1]
    V = X.shape[0]
    cols = {}
    eye = xp.eye(D)
    cols[("Ws", L - 1)] = eye[None, :, None, :, None] * xp.moveaxis(hs[-1], 2, 1)[:, None, :, None, :]
    cols[("bs", L - 1)] = xp.broadcast_to(eye[None, :, None, :], (n, D, V, D))
    # delta[n, a, i, v] = d phi_a(v) / d z_i(v) at layer l
    delta = Ws[-1][:, :, :, None] * dzs[-1][:, None]  # (n, D, width, V)
    for l in range(L - 2, -1, -1):
        hprev = hs[l]  # (n, k, V)
        dv = xp.moveaxis(delta, 3, 2)  # (n, D, V, width)
        cols[("bs", l)] = dv
        cols[("Ws", l)] = dv[..., None] * xp.moveaxis(hprev, 2, 1)[:, None, :, None, :]
        if l > 0:
            delta = xp.einsum("naiv,nik->nakv", delta, Ws[l]) * dzs[l - 1][:, None]
    return cols


def fd_jacobian(spec, params, lattice, *, eps=1e-5, whiten=True, scales=None):
    """Central finite-difference Jacobian through ``ensembles.evaluate`` (reference, slow).

    Same conventions as :func:`jacobian`; each parameter is moved by ``eps * s_j`` (prior
    units) in all networks at once.
    """
    layout = param_layout(spec, params)
    xp = xp_of(_get(params, *layout[0][:2]))
    sc = prior_scales(spec, params, lattice) if scales is None else scales
    cols = []
    for key, layer, shape in layout:
        base = _get(params, key, layer)
        n = base.shape[0]
        step = sc[(key, layer)] if whiten else xp.ones(base.shape)
        for j in range(int(np.prod(shape, dtype=int))):
            idx = np.unravel_index(j, shape)
            sl = (slice(None),) + tuple(int(i) for i in idx)
            hj = eps * step[sl]
            fields = []
            for sign in (1.0, -1.0):
                p = _replace(params, key, layer, base.copy())
                _get(p, key, layer)[sl] = base[sl] + sign * hj
                fields.append(evaluate(spec, p, lattice, xp, method="dense"
                                       if isinstance(spec, LatticeCosNet) else "auto"))
            dphi = (fields[0] - fields[1]) / (2 * eps)
            cols.append(dphi.reshape(n, -1))
    return xp.stack(cols, axis=-1)


def _replace(params, key, layer, new):
    p = dict(params)
    if layer is None:
        p[key] = new
    else:
        p[key] = list(params[key])
        p[key][layer] = new
    return p


def fisher_metric(spec, params, lattice, *, noise=1.0, average=False, scales=None):
    """Fisher metric ``F = S J^T J S / noise^2`` of each network (module docstring).

    Returns (n, P, P), or (P, P) averaged over the networks (the ensemble's prior) when
    ``average``.
    """
    if not noise > 0:
        raise ValueError(f"noise: must be positive, got {noise}")
    J = jacobian(spec, params, lattice, scales=scales)
    xp = xp_of(J)
    F = xp.matmul(xp.swapaxes(J, 1, 2), J) / noise ** 2
    return F.mean(axis=0) if average else F


def _neuron_columns(spec, params):
    """For each continuous block: (key, layer, column offset, shape, neuron axis, role)."""
    kind = _arch_kind(spec)
    out, off = [], 0
    L = len(params["Ws"]) if kind == "deep" else 0
    for key, layer, shape in param_layout(spec, params):
        ax, role = None, None
        if kind == "deep":
            if layer == L - 1 and key == "Ws":
                ax, role = 1, "out"
            elif layer == L - 2:
                ax, role = 0, "in"
        elif key in ("W1", "a"):
            ax, role = 1, "out"
        elif key in ("W0", "b0", "c"):
            ax, role = 0, "in"
        out.append((key, layer, off, shape, ax, role))
        off += int(np.prod(shape, dtype=int))
    return out


def neuron_information(spec, params, lattice, *, noise=1.0, kind="amplitude", scales=None):
    """Per-neuron Fisher information ``I_i`` of each network: array (n, N).

    ``kind="amplitude"``: information of the outgoing weight(s) (summed over output
    components); ``kind="neuron"``: trace of the neuron's diagonal block. Prior units, observation
    noise ``noise`` per site (module docstring).
    """
    if kind not in INFORMATION_KINDS:
        raise ValueError(f"kind: must be one of {INFORMATION_KINDS}, got {kind!r}")
    if not noise > 0:
        raise ValueError(f"noise: must be positive, got {noise}")
    J = jacobian(spec, params, lattice, scales=scales)
    xp = xp_of(J)
    diag = (J * J).sum(axis=1) / noise ** 2  # (n, P): diagonal of F
    n = diag.shape[0]
    I = None
    for key, layer, off, shape, ax, role in _neuron_columns(spec, params):
        if role is None or (kind == "amplitude" and role != "out"):
            continue
        block = diag[:, off:off + int(np.prod(shape, dtype=int))].reshape((n,) + shape)
        other = tuple(i + 1 for i in range(len(shape)) if i != ax)
        per = block.sum(axis=other) if other else block
        I = per if I is None else I + per
    return I


def _neuron_slots(spec, params):
    """Where neuron i's parameters live: list of (key, layer, neuron axis incl. network axis)."""
    kind = _arch_kind(spec)
    if kind == "deep":
        return [("Ws", -2, 1), ("bs", -2, 1), ("Ws", -1, 2)]
    if kind == "latcos":
        return [("k", None, 1), ("c", None, 1), ("a", None, 2)]
    return [("W0", None, 1), ("b0", None, 1), ("W1", None, 2)]


def _mask_for(mask, arr, axis):
    xp = xp_of(arr)
    m = xp.asarray(mask)
    shape = [1] * arr.ndim
    shape[0], shape[axis] = m.shape[0], m.shape[1]
    return m.reshape(shape)


def coarse_grain_params(spec, params, keep, *, shell="remove", redraw=None):
    """Remove or re-draw the neurons outside ``keep``.

    Parameters
    ----------
    keep : bool array (n, N)
        Neurons kept (the high-information ones).
    shell : {"remove", "redraw"}
        "remove": the outgoing weights of the dropped neurons are set to zero. "redraw": all
        parameters of the dropped neurons are replaced by those of ``redraw`` (a fresh draw from
        the prior with ``draw_params``; arXiv:2405.17538 re-draws).

    Returns
    -------
    (coarse_params, removed)
        ``removed`` holds the original values of the dropped shell; :func:`restore_params` puts
        them back bit for bit.
    """
    if shell not in ("remove", "redraw"):
        raise ValueError(f"shell: must be 'remove' or 'redraw', got {shell!r}")
    if shell == "redraw" and redraw is None:
        raise ValueError("redraw: shell='redraw' needs parameters drawn from the prior")
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in params.items()}
    removed = {"keep": keep, "values": []}
    for key, layer, ax in _neuron_slots(spec, params):
        if shell == "remove" and not (ax == 2):
            continue
        arr = _get(params, key, layer)
        xp = xp_of(arr)
        m = _mask_for(keep, arr, ax)
        if shell == "remove":
            new = xp.where(m, arr, xp.zeros((), dtype=arr.dtype))
        else:
            new = xp.where(m, arr, _get(redraw, key, layer))
        removed["values"].append((key, layer, ax, arr))
        if layer is None:
            out[key] = new
        else:
            out[key][layer] = new
    return out, removed


def restore_params(coarse, removed):
    """Add the removed shell back (IR -> UV): the original parameters, bit for bit."""
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in coarse.items()}
    keep = removed["keep"]
    for key, layer, ax, orig in removed["values"]:
        arr = _get(coarse, key, layer)
        xp = xp_of(arr)
        new = xp.where(_mask_for(keep, arr, ax), arr, orig)
        if layer is None:
            out[key] = new
        else:
            out[key][layer] = new
    return out
