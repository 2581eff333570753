"""Shared fixtures: the `xp` array-module fixture and skipping of `gpu` tests without a device."""
import numpy as np
import pytest

from nnft.lattice import cuda_available


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none present)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_XP_PARAMS = [pytest.param("numpy", id="numpy"), pytest.param("cupy", id="cupy", marks=pytest.mark.gpu)]


@pytest.fixture(params=_XP_PARAMS)
def xp(request):
    """The array module: NumPy always, CuPy too when a CUDA device is present."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy
