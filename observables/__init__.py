"""nnft.observables: one-pass measurements of field ensembles with errors.

Accumulators (``update``/``merge``/``result``, shifted float64, weighted), the streaming
driver :func:`measure`, connected correlators, propagator tools, errors and plots.

Every measurement built on the per-block feature-moment engine is also a *plan*
(:mod:`nnft.observables.plan`): ``run_plans(store, {"t": translation_plan(lattice), ...})``
runs any number of them in one pass over the store (or, with :func:`stream_plans`, over the
generator's chunks).
"""
from .accumulators import (Accumulator, FourierTwoPoint, PointMoments, SampleFunction,
                           ScalarObservables, Series, SiteMean, SiteMoments, TwoPointMatrix,
                           FeatureMoments, SourceExponentials, multiset_closure,
                           normalize_tuples)
from .errors import (ErrorEstimate, error_methods, estimate, get_error_method, jackknife,
                     register_error_method)
from .measure import ArraySource, Measurement, StreamingMeasurement, measure, open_source
from .cumulants import (connected_correlator, cosnet_connected_4pt, cumulant_from_central,
                        deviation_measure, gp_npoint, joint_cumulant, moments, sample_cumulant,
                        scaling_fit, set_partitions, single_neuron_connected, MomentsPlan,
                        moments_plan, connected_plan)
from .propagator import (correlation_length, effective_mass, momentum_propagator,
                         propagator_check, scalar_observables, susceptibility, two_point,
                         two_point_matrix)
from .gamma import (GammaResult, chain_observables, gamma_effective_mass, gamma_error, make_obs,
                    n_eff, tau_int)
from . import stats, thermalization
from .stats import (OUTCOMES, FourierModeMoments, HeavyTailWarning, SeparationCovariance,
                    TailSample, Verdict, attach_verdict, combine_verdicts, correlator_test,
                    compare_error_estimates, gpd_tail_shape, heavy_tail_check, hill_tail_index,
                    momentum_space_test, oas_shrinkage, position_space_test,
                    relative_or_absolute, series_error_crosscheck, tail_sample, verdict_from_chi2,
                    verdict_from_z)
from .thermalization import (geweke_z, mser_cut, split_half_consistency, split_rhat,
                             thermalization_check)
from . import cluster, combinatorics, couplings, generating, plan, replicas, rg, symmetry
from .replicas import JackknifeResult, feature_replicas
from .plan import (CorrelatorPlan, MeasurementPlan, correlator_plan, run_plans, stream_plans)
from .symmetry import (ComparisonPlan, assess_deviations, check_hypercubic,
                       check_internal_rotation, check_translation, comparison_plan,
                       correlator_replicas, hypercubic_plan, internal_rotation_plan,
                       translation_plan)
from .cluster import ClusterPlan, cluster_plan, cluster_profile, cosnet_g6c, fit_decay
from .couplings import (AmputatedVertexPlan, QuarticPlan, SixPointPlan, amputated_vertex,
                        amputated_vertex_plan, quartic_coupling, quartic_plan, running_quartic,
                        six_point_check, six_point_plan, vertex_integral, vertex_models,
                        vertex_sum)
from .generating import GeneratingPlan, gaussian_W, generating_functional, generating_plan
from .rg import CoarseGrainedSource, rg_flow, shell_propagator
from . import eft, positivity, running
from .eft import (coupling_templates, eft_match, fit_couplings, nonlocal_quartic_template,
                  perturbative_check, predict_connected, rank_truncations)
from .eft import local_tuples as eft_tuples
from .eft import power_law_fit
from .running import (beta_functions, integrate_beta, running_comparison, running_templates)
from .positivity import (qft_checks, reflection_basis, reflection_positivity,
                         rp_matrix_from_fields)
from .reweighting import (ReweightingWarning, base_mass, hartree_mass, kish_ess, reweight,
                          reweighted_mean, reweighted_observables)

__all__ = [
    "Accumulator", "FourierTwoPoint", "PointMoments", "SampleFunction", "ScalarObservables",
    "Series", "SiteMean", "SiteMoments", "TwoPointMatrix", "multiset_closure",
    "normalize_tuples", "FeatureMoments", "SourceExponentials",
    "ErrorEstimate", "error_methods", "estimate", "get_error_method", "jackknife",
    "register_error_method",
    "ArraySource", "Measurement", "StreamingMeasurement", "measure", "open_source",
    "connected_correlator", "cosnet_connected_4pt", "cumulant_from_central",
    "deviation_measure", "gp_npoint", "joint_cumulant", "moments", "sample_cumulant",
    "scaling_fit", "set_partitions", "single_neuron_connected",
    "correlation_length", "effective_mass", "momentum_propagator", "propagator_check",
    "scalar_observables", "susceptibility", "two_point", "two_point_matrix",
    "GammaResult", "chain_observables", "gamma_effective_mass", "gamma_error", "make_obs",
    "n_eff", "tau_int",
    "ReweightingWarning", "base_mass", "hartree_mass", "kish_ess", "reweight",
    "reweighted_mean", "reweighted_observables",
    "cluster", "couplings", "generating", "rg", "symmetry",
    "assess_deviations", "check_hypercubic", "check_internal_rotation", "check_translation",
    "correlator_replicas", "cluster_profile", "cosnet_g6c", "fit_decay",
    "amputated_vertex", "quartic_coupling", "running_quartic", "six_point_check",
    "vertex_integral", "vertex_models", "vertex_sum", "gaussian_W", "generating_functional",
    "CoarseGrainedSource", "rg_flow", "shell_propagator",
    "eft", "coupling_templates", "eft_match", "eft_tuples", "nonlocal_quartic_template", "fit_couplings", "perturbative_check",
    "predict_connected", "rank_truncations", "power_law_fit",
    "running", "beta_functions", "integrate_beta", "running_comparison", "running_templates",
    "positivity", "qft_checks", "reflection_basis", "reflection_positivity", "rp_matrix_from_fields",
    "stats", "OUTCOMES", "Verdict", "verdict_from_chi2", "verdict_from_z", "combine_verdicts",
    "attach_verdict", "FourierModeMoments", "SeparationCovariance", "TailSample",
    "momentum_space_test", "position_space_test", "oas_shrinkage", "compare_error_estimates",
    "HeavyTailWarning", "hill_tail_index", "gpd_tail_shape", "heavy_tail_check",
    "relative_or_absolute", "correlator_test", "tail_sample", "series_error_crosscheck", "thermalization", "geweke_z", "mser_cut", "split_half_consistency",
    "split_rhat", "thermalization_check",
    "combinatorics", "replicas", "plan", "JackknifeResult", "feature_replicas",
    "MeasurementPlan", "CorrelatorPlan", "correlator_plan", "run_plans", "stream_plans",
    "ComparisonPlan", "comparison_plan", "translation_plan", "hypercubic_plan",
    "internal_rotation_plan", "ClusterPlan", "cluster_plan", "GeneratingPlan", "generating_plan",
    "QuarticPlan", "quartic_plan", "SixPointPlan", "six_point_plan", "AmputatedVertexPlan",
    "amputated_vertex_plan", "MomentsPlan", "moments_plan", "connected_plan",
]
