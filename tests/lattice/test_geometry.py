import numpy as np
import pytest

from nnft.lattice import Lattice, PointSet, get_xp, to_numpy


def test_shape_volume_positions():
    lat = Lattice((3, 4), spacing=0.5, origin=(1.0, -1.0))
    assert lat.dim == 2 and lat.volume == 12 and lat.shape == (3, 4)
    pos = lat.positions()
    assert pos.shape == (12, 2)
    np.testing.assert_allclose(pos[0], [1.0, -1.0])
    np.testing.assert_allclose(pos[5], [1.0 + 0.5 * 1, -1.0 + 0.5 * 1])  # index (1, 1)
    assert lat.coords().shape == (3, 4, 2)


def test_momenta_and_phat2():
    lat = Lattice((4, 6), spacing=2.0)
    p = lat.momenta()
    assert p.shape == (4, 6, 2)
    np.testing.assert_allclose(p[1, 0], [2 * np.pi / 8, 0.0])
    np.testing.assert_allclose(p[0, 2], [0.0, 2 * np.pi * 2 / 12])
    ph = lat.phat2()
    expect = (4 / 4.0) * (np.sin(2.0 * p[..., 0] / 2) ** 2 + np.sin(2.0 * p[..., 1] / 2) ** 2)
    np.testing.assert_allclose(ph, expect)
    assert ph[0, 0] == 0
    pm = lat.pmag2()
    assert pm.max() <= 2 * (np.pi / 2.0) ** 2 + 1e-12


def test_round_trip_and_equality():
    lat = Lattice((5, 5, 2), spacing=0.25, origin=0.5, boundary="open")
    assert Lattice.from_dict(lat.to_dict()) == lat
    assert lat != Lattice((5, 5, 2))
    pts = PointSet([-1, -0.6, -0.2, 0.2, 0.6, 1])
    assert pts.shape == (6,) and pts.dim == 1 and pts.volume == 6
    assert Lattice.from_dict(pts.to_dict()) == pts
    pts2 = PointSet([[-1, -1], [-1, 1], [1, -1], [1, 1]])
    assert pts2.dim == 2 and pts2.positions().shape == (4, 2)


@pytest.mark.parametrize("kwargs, word", [
    (dict(shape=()), "shape"), (dict(shape=(0, 4)), "shape"), (dict(shape=(2.5,)), "shape"),
    (dict(shape="ab"), "shape"), (dict(shape=(4,), spacing=0), "spacing"),
    (dict(shape=(4,), spacing=float("nan")), "spacing"), (dict(shape=(4,), spacing="x"), "spacing"),
    (dict(shape=(4,), boundary="twisted"), "boundary"), (dict(shape=(4, 4), origin=(1, 2, 3)), "origin"),
])
def test_invalid_lattice(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Lattice(**kwargs)


def test_invalid_pointset_and_open_momenta():
    with pytest.raises(ValueError, match="points"):
        PointSet([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="points"):
        PointSet(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="periodic"):
        Lattice((4,), boundary="open").momenta()
    with pytest.raises(ValueError, match="momenta"):
        PointSet([0.0, 1.0]).momenta()


def test_symmetry_ops_group():
    lat = Lattice((4, 4))
    ops = lat.symmetry_ops()
    assert len(ops) == 8 and ops[0].is_identity  # the dihedral group D4
    assert len(Lattice((4, 6)).symmetry_ops()) == 4  # unequal axes: reflections only
    assert len(Lattice((3, 3, 3)).symmetry_ops()) == 48
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(2, 4, 4))
    images = {lat.apply_symmetry(phi, op).tobytes() for op in ops}
    assert len(images) == 8
    # a translation-invariant function of the displacement (G(r) = f(|r|)) is invariant
    g = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            g[i, j] = np.hypot(min(i, 4 - i), min(j, 4 - j))
    for op in ops:
        np.testing.assert_array_equal(lat.apply_symmetry(g[None], op)[0], g)
    # periodic reflection keeps site 0 fixed
    e = np.zeros((1, 4, 4)); e[0, 1, 0] = 1
    reflect0 = next(o for o in ops if o.perm == (0, 1) and o.flips == (True, False))
    flipped = lat.apply_symmetry(e, reflect0)
    assert flipped[0, 3, 0] == 1 and flipped.sum() == 1
    swap = next(o for o in ops if o.perm == (1, 0) and o.flips == (False, False))
    assert lat.apply_symmetry(e, swap)[0, 0, 1] == 1


def test_displacement_classes():
    lat = Lattice((6, 6))
    labels, reps = lat.displacement_classes()
    assert labels.shape == (6, 6)
    assert reps[0] == (0, 0) and labels[0, 0] == 0
    assert labels[1, 0] == labels[0, 1] == labels[5, 0] == labels[0, 5]
    assert labels[1, 1] != labels[1, 0]
    assert len(reps) == 10  # (0,0),(0,1),(1,1),(0,2),(1,2),(2,2),(0,3),(1,3),(2,3),(3,3)
    np.testing.assert_array_equal(lat.displacement((0, 0), (5, 1)), [-1, 1])


def test_backend_selection(monkeypatch):
    assert get_xp("numpy") is np
    assert get_xp(np) is np
    monkeypatch.setenv("NNFT_BACKEND", "numpy")
    assert get_xp() is np
    monkeypatch.setenv("NNFT_BACKEND", "fortran")
    with pytest.raises(ValueError, match="NNFT_BACKEND"):
        get_xp()
    with pytest.raises(ValueError, match="backend"):
        get_xp("tpu")
    xp_auto = get_xp("auto")
    assert xp_auto.__name__ in ("numpy", "cupy")


def test_cupy_refused_without_device():
    from nnft.lattice import cuda_available

    if cuda_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        get_xp("cupy")
    assert get_xp("auto") is np


def test_positions_on_backend(xp):
    lat = Lattice((4, 4))
    np.testing.assert_allclose(to_numpy(lat.positions(xp)), lat.positions())
    np.testing.assert_allclose(to_numpy(lat.phat2(xp)), lat.phat2())
