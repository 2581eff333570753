"""nnft.ensembles: network architectures, their kernels, and the generation engine.

Imports point one way: this package uses nnft.lattice and never nnft.observables.
"""
from .specs import (ActivationNet, ContinuumCosNet, CorrelatedNet, DeepMLP, ErfNet, GaussianCosNet,
                    GaussNet, LatticeCosNet, MassMixtureCosNet, ReLUNet, ScaleMixtureNet, Spec,
                    TanhNet, spec_from_dict, spec_from_json, ARCHITECTURES)
from .activations import NAMED as ACTIVATIONS
from .kernels import gp_kernel, neuron_moment, continuum_propagator
from .params import draw_params
from .evaluate import evaluate
from .spectral import lattice_cos_spectral
from .engine import chunk_fields, generate, generate_distributed, make_chunk_function
from .philox import fused_key, fused_params, philox4x32
from .exact import (exact_connected, exact_moments, exact_W, W_cumulant_series, neuron_moments,
                    deviation_exact, gp_connected, exact_two_point, estimator_variance,
                    plan_samples)
from .deep import deep_leading_connected, deep_linear_connected
from . import architectures
from .architectures import *  # noqa: F401,F403  (plug-in architectures, e.g. SineNet)
from .specs import register_architecture
from .deformed import (DeformedCosNet, LatticePotential, reweighting_nongaussianity,
                       width_extrapolation)
from .param_chains import (IndependenceSampler, ParamChainResult, ParamHMC, load_param_chunk,
                           run_param_chain)

__all__ = [
    "architectures", "register_architecture", *architectures.__all__,
    "Spec", "GaussNet", "ErfNet", "ReLUNet", "TanhNet", "ActivationNet", "DeepMLP",
    "GaussianCosNet", "ContinuumCosNet", "LatticeCosNet", "CorrelatedNet", "spec_from_dict",
    "spec_from_json", "ARCHITECTURES", "ACTIVATIONS", "gp_kernel", "neuron_moment",
    "continuum_propagator", "draw_params", "evaluate", "lattice_cos_spectral", "chunk_fields",
    "generate", "generate_distributed", "make_chunk_function", "fused_key", "fused_params",
    "philox4x32", "ScaleMixtureNet", "MassMixtureCosNet", "exact_connected", "exact_moments",
    "exact_W", "W_cumulant_series", "neuron_moments", "deviation_exact", "gp_connected",
    "exact_two_point", "estimator_variance", "plan_samples", "deep_leading_connected",
    "deep_linear_connected",
    "DeformedCosNet", "LatticePotential", "reweighting_nongaussianity", "width_extrapolation",
    "IndependenceSampler", "ParamHMC", "ParamChainResult", "run_param_chain", "load_param_chunk",
]
