"""nnft.lattice: geometry, array backend, the Zarr field store, the free field.

Nothing here imports nnft.ensembles or nnft.observables (ARCHITECTURE.md).
"""
__version__ = "0.1.0"

from .errors import UserError
from .backend import array_module, backend_name, cuda_available, get_xp, to_numpy
from .geometry import HypercubicOp, Lattice, PointSet, geometry_from_dict
from .random import bit_generator_name, chunk_rng, resolve_seed
from .store import (CODECS, ChunkProblem, CorruptChunkError, CorruptStoreError, FieldStore,
                    NonFiniteError, StoreError, StoreMismatchError, StoreWriteError,
                    VerifyReport)
from .sampling import chunk_bounds, fill_store, progress_bar, run_chunks, stream_chunks
from .free_field import (effective_mass_exact, free_field_chunk, free_field_exact,
                         free_propagator, free_propagator_momentum, sample_free_field)
from .actions import CONVENTIONS, Phi4Action, convert_couplings, field_scale, free_action
from .diagrams import (Interaction, PropagatorContext, diagrams, evaluate_diagram,
                       perturbative_correlator, topologies)
from .mcmc import (HMC, ChainResult, Metropolis, load_chain_diagnostics, run_chain,
                   tune_step_size)

__all__ = [
    "UserError",
    "array_module", "backend_name", "cuda_available", "get_xp", "to_numpy",
    "HypercubicOp", "Lattice", "PointSet", "geometry_from_dict",
    "bit_generator_name", "chunk_rng", "resolve_seed",
    "FieldStore", "StoreError", "StoreMismatchError", "CorruptChunkError", "CorruptStoreError",
    "NonFiniteError", "StoreWriteError", "ChunkProblem", "VerifyReport", "CODECS",
    "chunk_bounds", "fill_store", "progress_bar", "run_chunks", "stream_chunks",
    "effective_mass_exact", "free_field_chunk", "free_field_exact", "free_propagator",
    "free_propagator_momentum", "sample_free_field",
    "CONVENTIONS", "Phi4Action", "convert_couplings", "field_scale", "free_action",
    "Interaction", "PropagatorContext", "diagrams", "evaluate_diagram",
    "perturbative_correlator", "topologies",
    "HMC", "ChainResult", "Metropolis", "load_chain_diagnostics", "run_chain", "tune_step_size",
]
