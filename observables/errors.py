"""Statistical errors of estimators built from accumulators, with pluggable methods.

An *estimator* is a function ``estimator(acc) -> array`` of an accumulator (or of a dict /
list of accumulators: whatever structure the measurement holds). A measurement keeps the
accumulators of ``B`` contiguous *blocks* of store chunks (in sample order) and their sum
``total``; an error method turns ``(total, blocks, estimator)`` into a value and an error.

Built in: ``"jackknife"`` (delete-one-block jackknife; blocks are chunk blocks, so the memory
is O(B) accumulators and the pass over the data is one). Weighted ensembles need nothing
special: accumulators hold weighted sums (``log_weight`` of the store) and estimators are
ratios, which the jackknife handles.

Other methods register themselves::

    from nnft.observables.errors import register_error_method, ErrorEstimate

    def gamma(total, blocks, estimator, *, block_ranges=None, n_replicas=1, **options):
        ...
        return ErrorEstimate(value, error, "gamma", {"tau_int": ...})

    register_error_method("gamma", gamma)

``get_error_method("gamma")`` imports ``nnft.observables.gamma`` on first use, so a method
that lives in a module named like itself is found without an explicit import.

Protocol of a method: ``func(total, blocks, estimator, *, block_ranges, n_replicas,
**options) -> ErrorEstimate`` where ``blocks`` is a list (sample order) of accumulator
structures shaped like ``total``, ``block_ranges`` the list of ``(start, stop)`` sample ranges
of the blocks, ``n_replicas`` the store's replica count (Markov chains stored time-major,
sample = t * n_replicas + r). Accumulators of type :class:`~.accumulators.Series` carry
the per-sample time series for autocorrelation analyses.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["ErrorEstimate", "jackknife", "register_error_method", "get_error_method",
           "error_methods", "estimate", "tree_map", "tree_merge_copy"]


@dataclass
class ErrorEstimate:
    """Value and standard error of an estimator.

    Attributes
    ----------
    value : ndarray
        Estimator on the full ensemble.
    error : ndarray
        Standard error (same shape).
    method : str
        Name of the error method.
    attrs : dict
        Method details (e.g. ``n_blocks``, ``bias``, ``replicas``).
    """

    value: Any
    error: Any
    method: str
    attrs: dict = field(default_factory=dict)


_METHODS: dict[str, Callable] = {}
_PROTOCOL: dict[str, str] = {}


def _detect_protocol(func) -> str:
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return "estimator"
    return "series" if params and params[0] in ("values", "series", "x", "data") else "estimator"


def register_error_method(name: str, func: Callable, *, overwrite: bool = False,
                          protocol: str | None = None) -> None:
    """Register ``func`` as error method ``name``.

    Two protocols are accepted (``protocol=None`` detects it from the first parameter name:
    ``values``/``series``/``x``/``data`` mean "series"):

    * ``"estimator"``: ``func(total, blocks, estimator, *, block_ranges, n_replicas,
      **options) -> ErrorEstimate`` (see the module docstring);
    * ``"series"``: ``func(values, n_replicas=1, **options) -> (mean, error)`` for a 1-d
      series in time order. It is applied, element by element of the estimator's output, to
      the per-block jackknife pseudo-values ``B theta(total) - (B-1) theta(total - block_b)``
      (block means for linear estimators, the linearised estimator otherwise), in sample
      order; the value reported is ``estimator(total)``. Use ``blocks="chunks"`` in
      :func:`~.measure.measure` for the finest time resolution. Each block holds whole
      chunks, i.e. all replicas of its time slices, so the series is passed with
      ``n_replicas=1``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")
    if not callable(func):
        raise ValueError("func must be callable")
    if protocol is None:
        protocol = _detect_protocol(func)
    if protocol not in ("estimator", "series"):
        raise ValueError(f"protocol must be 'estimator' or 'series', got {protocol!r}")
    if name in _METHODS and not overwrite and _METHODS[name] is not func:
        raise ValueError(f"error method {name!r} is already registered (pass overwrite=True)")
    _METHODS[name] = func
    _PROTOCOL[name] = protocol


def get_error_method(name: str) -> Callable:
    """The registered error method ``name`` (imports ``nnft.observables.<name>`` if needed)."""
    if name not in _METHODS:
        pkg = __name__.rsplit(".", 1)[0]
        try:
            importlib.import_module(f"{pkg}.{name}")
        except ImportError:
            pass
    if name not in _METHODS:
        raise ValueError(f"unknown error method {name!r}; available: {error_methods()}")
    return _METHODS[name]


def error_methods() -> list[str]:
    """Names of the registered error methods."""
    return sorted(_METHODS)


# ----------------------------------------------------------------------------------------------
def tree_map(fn, tree):
    """Apply ``fn`` to every accumulator of a dict / list / tuple structure (or a single one)."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(tree_map(fn, v) for v in tree)
    return fn(tree)


def _tree_zip(fn, a, b):
    if isinstance(a, dict):
        return {k: _tree_zip(fn, a[k], b[k]) for k in a}
    if isinstance(a, (list, tuple)):
        return type(a)(_tree_zip(fn, x, y) for x, y in zip(a, b))
    return fn(a, b)


def tree_merge_copy(trees):
    """Merged copy of a non-empty list of equally structured accumulator trees."""
    out = tree_map(lambda a: a.copy(), trees[0])
    for t in trees[1:]:
        _tree_zip(lambda x, y: x.merge(y), out, t)
    return out


def _n_samples(tree):
    vals = []
    tree_map(lambda a: vals.append(a.n_samples), tree)
    return min(vals) if vals else 0


def jackknife_error(replicas):
    """Jackknife standard error ``sqrt((B-1)/B sum_b |r_b - mean r|^2)`` over axis 0 (the
    delete-one-block replicas ``r_b``; complex replicas give the error of the modulus)."""
    replicas = np.asarray(replicas)
    b = replicas.shape[0]
    r = replicas - replicas.mean(axis=0)
    return np.sqrt((b - 1) / b * np.sum(np.abs(r) ** 2, axis=0))


def jackknife(total, blocks, estimator: Callable, **_ignored) -> ErrorEstimate:
    """Delete-one-block jackknife.

    ``theta_b = estimator(total - block_b)``; error
    ``sqrt((B - 1)/B * sum_b (theta_b - mean theta)^2)``. Empty blocks are skipped.
    The value is ``estimator(total)``; ``attrs["bias"]`` is the jackknife bias estimate
    ``(B - 1)(mean theta - value)`` (not subtracted).
    """
    value = np.asarray(estimator(total), dtype=float)
    blocks = [b for b in blocks if _n_samples(b) > 0]
    B = len(blocks)
    if B < 2:
        return ErrorEstimate(value, np.full_like(value, np.nan), "jackknife",
                             {"n_blocks": B, "note": "fewer than 2 non-empty blocks"})
    thetas = []
    for b in blocks:
        loo = tree_map(lambda a: a.copy(), total)
        _tree_zip(lambda x, y: x.subtract(y), loo, b)
        thetas.append(np.asarray(estimator(loo), dtype=float))
    th = np.stack(thetas)
    mean = th.mean(axis=0)
    err = jackknife_error(th)
    return ErrorEstimate(value, err, "jackknife",
                         {"n_blocks": B, "bias": (B - 1) * (mean - value),
                          "replicates": th})


register_error_method("jackknife", jackknife)


def _series_adapter(name, func):
    def run(total, blocks, estimator, *, block_ranges=None, n_replicas=1, **options):
        value = np.asarray(estimator(total), dtype=float)
        blocks_ne = [b for b in blocks if _n_samples(b) > 0]
        B = len(blocks_ne)
        if B < 2:
            return ErrorEstimate(value, np.full_like(value, np.nan), name, {"n_blocks": B})
        jk = jackknife(total, blocks_ne, estimator)
        pseudo = B * value[None] - (B - 1) * jk.attrs["replicates"]  # (B, ...)
        flat = pseudo.reshape(B, -1)
        err = np.empty(flat.shape[1])
        for i in range(flat.shape[1]):
            _, e = func(flat[:, i], 1, **options)
            err[i] = float(e)
        return ErrorEstimate(value, err.reshape(value.shape), name,
                             {"n_blocks": B, "series": "jackknife pseudo-values per block"})

    return run


def estimate(total, blocks, estimator: Callable, method: str = "jackknife",
             **options) -> ErrorEstimate:
    """Value and error of ``estimator`` with the named error method."""
    func = get_error_method(method)
    if _PROTOCOL.get(method) == "series":
        func = _series_adapter(method, func)
    return func(total, blocks, estimator, **options)
