"""Config-level studies: tables of a run config that are not per-ensemble measurements.

A study is one registered :class:`Study` with the name of its config table (``[mcmc]``), a
validator (raw table -> resolved table, :class:`nnft.errors.ConfigError` on mistakes), a
``smoke`` shrinker for ``nnft run --samples`` and a ``run(table, out, quiet=...)`` returning a
JSON-able dict with ``"summary"`` rows for the report. `nnft run` validates, shrinks and runs
every study a config names; to add one, write its module and register it here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .compare import run_mcmc_comparison, smoke_mcmc_section, validate_mcmc_section
from .param_mcmc import run_param_mcmc, smoke_param_mcmc, validate_param_mcmc

__all__ = ["Study", "STUDIES", "register_study"]


@dataclass(frozen=True)
class Study:
    table: str
    summary: str
    validate: Callable[[dict], dict]
    smoke: Callable[[dict, int], dict]
    run: Callable[..., dict]


STUDIES: dict[str, Study] = {}


def register_study(study: Study) -> Study:
    if study.table in STUDIES:
        raise ValueError(f"study table [{study.table}] is registered twice")
    STUDIES[study.table] = study
    return study


register_study(Study(
    table="mcmc",
    summary="network ensembles, the exact sampler, HMC and Metropolis on the same free theory: "
            "tau_int, bias and cost per independent sample against L",
    validate=validate_mcmc_section, smoke=smoke_mcmc_section, run=run_mcmc_comparison))

register_study(Study(
    table="param_mcmc",
    summary="deformed cos-nets sampled by Markov chains in parameter space at several widths N, "
            "extrapolated in 1/N and compared with field-space HMC on the lattice action",
    validate=validate_param_mcmc, smoke=smoke_param_mcmc, run=run_param_mcmc))
