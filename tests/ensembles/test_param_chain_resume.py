"""Parameter-space chains written to a store resume after a crash, bit for bit."""
import numpy as np
import pytest

from nnft.ensembles.deformed import DeformedCosNet
from nnft.ensembles.param_chains import ParamHMC, load_param_chunk, run_param_chain
from nnft.lattice import FieldStore, Phi4Action
from nnft.lattice.store import StoreError

N_CHUNKS = 5


class Crash(Exception):
    pass


def _run(path, seed=7, callback=None, n_times=30, **kw):
    th = DeformedCosNet.from_action(Phi4Action((4, 4), "C", m2=0.5, g=3.0), 32)
    return run_param_chain(ParamHMC(th), 4, n_times, path, chunk_times=6, seed=seed, n_therm=10,
                           save_params=True, callback=callback, **kw)


def _crash_after(k):
    def cb(kc, phi, lw):
        if kc == k:
            raise Crash(f"killed after chunk {kc}")
    return cb


def _same_bytes(a, b):
    fa, fb = FieldStore.open(a), FieldStore.open(b)
    assert fa.complete_chunks() == fb.complete_chunks() == list(range(N_CHUNKS))
    for k in range(N_CHUNKS):
        if fa.chunk_file(k).read_bytes() != fb.chunk_file(k).read_bytes():
            return False
        pa, pb = load_param_chunk(fa, k), load_param_chunk(fb, k)
        if not all(np.array_equal(pa[key], pb[key]) for key in pa):
            return False
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "chain"
    return path, _run(path)


def test_resume_after_crash_is_bit_identical(tmp_path, reference):
    ref_path, ref = reference
    path = tmp_path / "chain"
    with pytest.raises(Crash):
        _run(path, callback=_crash_after(1))  # dies after chunk 1 is complete
    assert FieldStore.open(path).complete_chunks() == [0, 1]
    seen = []
    res = _run(path, callback=lambda k, phi, lw: seen.append((k, phi.copy())))
    assert [k for k, _ in seen] == list(range(N_CHUNKS))  # complete chunks replayed first
    assert _same_bytes(path, ref_path)
    fs = FieldStore.open(path)
    for k, phi in seen:
        assert np.array_equal(phi, fs.read_chunk(k)[0])
    assert np.array_equal(res.accept_prob, ref.accept_prob)
    assert np.array_equal(res.exp_mdH, ref.exp_mdH)
    assert all(np.array_equal(res.state[key], ref.state[key]) for key in ("k", "c", "a", "phi"))
    assert res.settings == ref.settings
    # a finished store reruns to the same result without new updates
    again = _run(path)
    assert np.array_equal(again.accept_prob, ref.accept_prob) and again.timings["production"] < 1


def test_crash_between_state_and_chunk_is_resumed(tmp_path, reference, monkeypatch):
    """Killed after the state after chunk 2 was saved but before chunk 2 was marked complete."""
    ref_path, _ = reference
    path = tmp_path / "chain"
    real = FieldStore.write_chunk

    def dying(self, k, phi, log_weight=None):
        if k == 2:
            raise Crash("killed while writing chunk 2")
        return real(self, k, phi, log_weight)

    monkeypatch.setattr(FieldStore, "write_chunk", dying)
    with pytest.raises(Crash):
        _run(path)
    monkeypatch.setattr(FieldStore, "write_chunk", real)
    assert FieldStore.open(path).complete_chunks() == [0, 1]
    _run(path)
    assert _same_bytes(path, ref_path)


def test_changed_seed_differs(tmp_path, reference):
    # companion: the comparison above can fail
    ref_path, _ = reference
    _run(tmp_path / "other", seed=8)
    assert not _same_bytes(tmp_path / "other", ref_path)


def test_resume_refuses_other_settings(tmp_path):
    path = tmp_path / "chain"
    with pytest.raises(Crash):
        _run(path, callback=_crash_after(0))
    with pytest.raises(StoreError, match="does not match"):
        _run(path, n_times=36)
    th = DeformedCosNet.from_action(Phi4Action((4, 4), "C", m2=0.5, g=3.0), 32)
    with pytest.raises(StoreError, match="different chain settings"):
        run_param_chain(ParamHMC(th), 4, 30, path, chunk_times=6, seed=7, n_therm=11,
                        save_params=True)
    with pytest.raises(StoreError, match="different chain settings"):  # another sampler setting
        run_param_chain(ParamHMC(th, momentum_fraction=0.25), 4, 30, path, chunk_times=6, seed=7,
                        n_therm=10, save_params=True)
