"""Elementwise activation functions given by name or by a safe expression string.

An activation is stored in a spec as a string, so specs stay JSON-serialisable. The string is
either a registered name (``"relu"``, ``"erf"``, ``"tanh"``, ...; see :data:`NAMED`) or an
expression in the variable ``x`` built from numbers, ``+ - * / **``, the constants ``pi`` and
``e`` and the whitelisted functions of :data:`FUNCTIONS` (e.g. ``"x * tanh(x)"`` or
``"maximum(x, 0.1 * x)"``). Nothing else is accepted: no attribute access, no names other than
``x``, no keyword arguments. The same expression is evaluated with NumPy or CuPy
(:func:`compile_activation`) and translated to CUDA C for the fused kernels
(:func:`cuda_expression`).
"""
from __future__ import annotations

import ast
import functools
import math

import numpy as np

#: Registered activation names and the expression each one stands for.
NAMED = {
    "relu": "maximum(x, 0)",
    "erf": "erf(x)",
    "tanh": "tanh(x)",
    "sigmoid": "1 / (1 + exp(-x))",
    "softplus": "log1p(exp(-abs(x))) + maximum(x, 0)",
    "gelu": "0.5 * x * (1 + erf(x / sqrt(2)))",
    "silu": "x / (1 + exp(-x))",
    "sin": "sin(x)",
    "cos": "cos(x)",
    "abs": "abs(x)",
    "identity": "x",
}

#: Whitelisted functions: name -> (number of arguments, CUDA C function name).
FUNCTIONS = {
    "exp": (1, "exp"), "log": (1, "log"), "log1p": (1, "log1p"), "expm1": (1, "expm1"),
    "sqrt": (1, "sqrt"), "abs": (1, "fabs"), "sin": (1, "sin"), "cos": (1, "cos"),
    "tan": (1, "tan"), "tanh": (1, "tanh"), "sinh": (1, "sinh"), "cosh": (1, "cosh"),
    "arctan": (1, "atan"), "erf": (1, "erf"), "sign": (1, "_nnft_sign"),
    "maximum": (2, "fmax"), "minimum": (2, "fmin"),
}

CONSTANTS = {"pi": math.pi, "e": math.e}

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


def _erf(xp):
    if xp is np:
        from scipy.special import erf
        return erf
    from cupyx.scipy.special import erf  # pragma: no cover - GPU only
    return erf


def _xp_function(name, xp):
    if name == "erf":
        return _erf(xp)
    if name == "arctan":
        return xp.arctan
    return getattr(xp, name)


def _check_node(node, where):
    if isinstance(node, ast.Expression):
        return _check_node(node.body, where)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ValueError(f"{where}: only numeric constants are allowed, got {node.value!r}")
        if not math.isfinite(float(node.value)):
            raise ValueError(f"{where}: constants must be finite, got {node.value!r}")
        return
    if isinstance(node, ast.Name):
        if node.id != "x" and node.id not in CONSTANTS:
            raise ValueError(f"{where}: unknown name {node.id!r}; the variable is 'x' and the "
                             f"constants are {sorted(CONSTANTS)}")
        return
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise ValueError(f"{where}: operator {type(node.op).__name__} is not allowed "
                             "(allowed: + - * / **)")
        _check_node(node.left, where)
        _check_node(node.right, where)
        return
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise ValueError(f"{where}: unary operator {type(node.op).__name__} is not allowed")
        _check_node(node.operand, where)
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            fname = getattr(node.func, "id", ast.dump(node.func))
            raise ValueError(f"{where}: function {fname!r} is not allowed; allowed functions: "
                             f"{sorted(FUNCTIONS)}")
        if node.keywords:
            raise ValueError(f"{where}: keyword arguments are not allowed")
        nargs = FUNCTIONS[node.func.id][0]
        if len(node.args) != nargs:
            raise ValueError(f"{where}: {node.func.id} takes {nargs} argument(s), "
                             f"got {len(node.args)}")
        for a in node.args:
            _check_node(a, where)
        return
    raise ValueError(f"{where}: expression element {type(node).__name__} is not allowed")


@functools.lru_cache(maxsize=256)
def _parse(expr: str):
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"activation: cannot parse expression {expr!r}: {e.msg}") from None
    _check_node(tree, f"activation {expr!r}")
    if not any(isinstance(n, ast.Name) and n.id == "x" for n in ast.walk(tree)):
        raise ValueError(f"activation {expr!r}: the expression must use the variable x")
    return tree


def expression_of(activation: str) -> str:
    """The expression an activation name or expression stands for (validated).

    Raises
    ------
    ValueError
        ``activation`` is neither a registered name nor a valid whitelisted expression.
    """
    if not isinstance(activation, str) or not activation.strip():
        raise ValueError(f"activation must be a non-empty string (a name in {sorted(NAMED)} or an "
                         f"expression in x), got {activation!r}")
    expr = NAMED.get(activation.strip(), activation.strip())
    _parse(expr)
    return expr


def validate_activation(activation: str) -> str:
    """Return ``activation`` stripped, raising ValueError if it is unknown or not allowed."""
    expression_of(activation)
    return activation.strip()


def _build(node, xp):
    """Turn a checked AST node into a function of x (evaluated with xp)."""
    if isinstance(node, ast.Expression):
        return _build(node.body, xp)
    if isinstance(node, ast.Constant):
        v = float(node.value)
        return lambda x: v
    if isinstance(node, ast.Name):
        if node.id == "x":
            return lambda x: x
        v = CONSTANTS[node.id]
        return lambda x: v
    if isinstance(node, ast.UnaryOp):
        f = _build(node.operand, xp)
        if isinstance(node.op, ast.USub):
            return lambda x: -f(x)
        return f
    if isinstance(node, ast.BinOp):
        a, b = _build(node.left, xp), _build(node.right, xp)
        op = type(node.op)
        if op is ast.Add:
            return lambda x: a(x) + b(x)
        if op is ast.Sub:
            return lambda x: a(x) - b(x)
        if op is ast.Mult:
            return lambda x: a(x) * b(x)
        if op is ast.Div:
            return lambda x: a(x) / b(x)
        return lambda x: a(x) ** b(x)
    if isinstance(node, ast.Call):
        fn = _xp_function(node.func.id, xp)
        args = [_build(a, xp) for a in node.args]
        if len(args) == 1:
            (g,) = args
            return lambda x: fn(g(x))
        g, h = args
        return lambda x: fn(g(x), h(x))
    raise AssertionError(node)  # pragma: no cover - excluded by _check_node


_FAST = {
    "relu": lambda xp: (lambda z: xp.maximum(z, 0.0, out=z) if xp is np else xp.maximum(z, 0.0)),
    "tanh": lambda xp: (lambda z: xp.tanh(z, out=z) if xp is np else xp.tanh(z)),
    "erf": lambda xp: (lambda z, _f=_erf(xp): _f(z, out=z) if xp is np else _f(z)),
    "sin": lambda xp: (lambda z: xp.sin(z, out=z) if xp is np else xp.sin(z)),
    "cos": lambda xp: (lambda z: xp.cos(z, out=z) if xp is np else xp.cos(z)),
    "identity": lambda xp: (lambda z: z),
}


def compile_activation(activation: str, xp=np):
    """A callable ``act(z)`` evaluating the activation elementwise with array module ``xp``.

    For the common names the callable may overwrite its argument in place (NumPy), so pass a
    temporary.
    """
    name = activation.strip()
    if name in _FAST:
        return _FAST[name](xp)
    return _build(_parse(expression_of(name)), xp)


def _cuda(node) -> str:
    if isinstance(node, ast.Expression):
        return _cuda(node.body)
    if isinstance(node, ast.Constant):
        return repr(float(node.value))
    if isinstance(node, ast.Name):
        return "x" if node.id == "x" else repr(CONSTANTS[node.id])
    if isinstance(node, ast.UnaryOp):
        return ("-" if isinstance(node.op, ast.USub) else "+") + f"({_cuda(node.operand)})"
    if isinstance(node, ast.BinOp):
        a, b = _cuda(node.left), _cuda(node.right)
        if isinstance(node.op, ast.Pow):
            return f"pow((double)({a}), (double)({b}))"
        return f"(({a}) {_BINOPS[type(node.op)]} ({b}))"
    if isinstance(node, ast.Call):
        cname = FUNCTIONS[node.func.id][1]
        return f"{cname}(" + ", ".join(f"(double)({_cuda(a)})" for a in node.args) + ")"
    raise AssertionError(node)  # pragma: no cover


def cuda_expression(activation: str) -> str:
    """The activation as a CUDA C double expression in the variable ``x``.

    Uses the helper ``_nnft_sign`` for ``sign``; kernels define it (see ``ensembles.cuda``).
    """
    return _cuda(_parse(expression_of(activation)))


def is_odd(activation: str) -> bool:
    """True for registered activations known to be odd functions (zero mean under N(0, v))."""
    return activation.strip() in ("erf", "tanh", "sin", "identity")


# -- float32 activations of the "fast" generator -------------------------------------------------

# erf(x) ~ x P(x^2) / Q(x^2) on [-4, 4] (the float32 rational approximation of Eigen/XLA);
# |x| > 4 clamps to 4 (erf(4) = 1 - 1.5e-8 rounds to 1 in float32).
_ERF_P = tuple(np.float32(v) for v in (
    -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
    -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02))
_ERF_Q = tuple(np.float32(v) for v in (
    -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
    -1.42647390514189e-02))
#: measured bound on |erf_float32(x) - erf(x)| over float32 x (tests/ensembles/test_fast_generator.py)
ERF_FLOAT32_MAX_ABS_ERROR = 5e-7


def erf_float32(x, out=None):
    """erf of a float32 array by a rational approximation, about 10x faster than scipy's erf.

    ``erf(x) = x P(x^2)/Q(x^2)`` with ``x`` clamped to [-4, 4] (degrees 6/4 in ``x^2``). The
    absolute error is below :data:`ERF_FLOAT32_MAX_ABS_ERROR` (5e-7, a few float32 ulp of 1) for
    every float32 ``x``; the result is odd and within [-1, 1].

    Parameters
    ----------
    x : float32 ndarray
    out : float32 ndarray, optional
        May be ``x`` itself (then ``x`` is overwritten).
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"erf_float32: x must be a float32 array, got {x.dtype}")
    if out is None:
        out = np.empty_like(x)
    t = np.clip(x, np.float32(-4.0), np.float32(4.0), out=out)  # out is free until the divide
    x2 = t * t
    p = x2 * _ERF_P[0]
    p += _ERF_P[1]
    for a in _ERF_P[2:]:
        p *= x2
        p += a
    p *= t
    q = x2 * _ERF_Q[0]
    q += _ERF_Q[1]
    for b in _ERF_Q[2:]:
        q *= x2
        q += b
    np.divide(p, q, out=out)
    np.clip(out, np.float32(-1.0), np.float32(1.0), out=out)
    return out


_FAST32 = {
    "relu": lambda z: np.maximum(z, np.float32(0.0), out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "erf": lambda z: erf_float32(z, out=z),
    "sin": lambda z: np.sin(z, out=z),
    "cos": lambda z: np.cos(z, out=z),
    "identity": lambda z: z,
    "exp": lambda z: np.exp(z, out=z),
}


def compile_activation_float32(activation: str):
    """A callable ``act(z)`` for float32 NumPy arrays (may work in place; returns float32).

    The named activations of :data:`_FAST32` use float32 kernels (``erf`` uses
    :func:`erf_float32`); other names and expressions are evaluated by the NumPy expression
    compiler (float32 in, float32 out; scipy's erf in expressions) and cast back to float32.
    """
    name = activation.strip()
    if name in _FAST32:
        return _FAST32[name]
    f = _build(_parse(expression_of(name)), np)

    def act(z):
        r = f(z)
        return np.asarray(r, dtype=np.float32) if np.ndim(r) else np.full_like(z, r)

    return act
