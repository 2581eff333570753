"""Sine-net: a single hidden layer with ``sin`` activations, as a plug-in architecture.

    f(x) = b1 + sum_{i=1..N} W1_i sin(W0_i . x + b0_i)

with the parameter laws of the other single-layer nets (docs/conventions.md):
``W0 ~ N(0, sigma_w^2 / d_in)``, ``b0 ~ N(0, sigma_b^2)``, ``W1 ~ N(0, sigma_w^2 / N)``,
``b1 ~ N(0, sigma_b^2)``.

GP kernel in closed form. With ``u = W0.x + b0`` and ``v = W0.y + b0`` jointly Gaussian,
``K0(x, y) = sigma_b^2 + sigma_w^2 x.y / d_in`` their covariance,
``E[sin u sin v] = (E cos(u - v) - E cos(u + v)) / 2 = exp(-(K0(x,x) + K0(y,y)) / 2) sinh K0(x, y)``,
so ``K(x, y) = sigma_b^2 + sigma_w^2 exp(-(K0(x,x) + K0(y,y)) / 2) sinh K0(x, y)``.

Everything else comes from the single-layer machinery: the parameter draw, the evaluation on
NumPy or CuPy, and the exact finite-width theory (``nnft.ensembles.exact_connected``, by
quadrature over one neuron). This file is the template for a new architecture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..specs import _SingleLayer, register_architecture

__all__ = ["SineNet"]


@register_architecture
@dataclass(frozen=True)
class SineNet(_SingleLayer):
    """Sine-net: ``h = sin(W0.x + b0)``; closed-form GP kernel (module docstring)."""

    activation_name: ClassVar[str] = "sin"

    def kernel_matrix(self, X) -> np.ndarray:
        """GP kernel ``E[f(x) f(y)]`` over the rows of ``X`` (V, d_in) in closed form."""
        X = np.asarray(X, dtype=float)
        K0 = self.sigma_b ** 2 + self.sigma_w ** 2 * (X @ X.T) / self.d_in
        d = np.diag(K0)
        return self.sigma_b ** 2 + self.sigma_w ** 2 * np.exp(-(d[:, None] + d[None, :]) / 2) \
            * np.sinh(K0)
