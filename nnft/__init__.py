"""nnft: lattice field theory from ensembles of randomly initialised neural networks.

The public surface lives in the subpackages ``nnft.lattice`` (geometry, stores, free field,
actions, Markov chains), ``nnft.ensembles`` (architectures, kernels, generation) and
``nnft.observables`` (correlators, errors, symmetry, locality, couplings, RG).
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nnft")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from .lattice import FieldStore, Lattice, PointSet, sample_free_field  # noqa: E402
from .ensembles import generate, gp_kernel, spec_from_dict  # noqa: E402

__all__ = ["FieldStore", "Lattice", "PointSet", "sample_free_field", "generate", "gp_kernel",
           "spec_from_dict", "__version__"]
