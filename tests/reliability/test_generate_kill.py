"""kill -9 during ``generate`` at several points, then resume: bit-identical to one run.

Guards: chunk data written before its completion entry; Zarr's atomic file writes; resume
filling exactly the missing chunks; removal of the ``*.partial`` file a kill leaves behind.
"""
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import nnft.ensembles as E
from nnft.lattice import FieldStore, Lattice

N, CHUNK, SEED = 48, 6, 2024  # 8 chunks
SPEC, LAT = E.ErfNet(40, d_in=2), Lattice((8, 8))

CHILD = textwrap.dedent("""
    import sys, time
    import zarr.storage._local as zl
    import nnft.ensembles as E
    from nnft.lattice import Lattice
    path, mode = sys.argv[1], sys.argv[2]
    real_move = zl._move_with_retry

    def stop():
        print("STOP", flush=True)
        time.sleep(120)

    def move(tmp, dst, how):  # Zarr renames each finished file from its temporary name
        s = str(dst).replace("\\\\", "/")
        if mode == "inside_data_write" and s.endswith("/phi/c/2/0/0"):
            stop()  # the data file exists only as phi/c/2/0/0.<hex>.partial
        if mode == "before_record" and s.endswith("/complete/c/2"):
            stop()  # chunk 2's data is in place, its completion entry not yet
        return real_move(tmp, dst, how)

    zl._move_with_retry = move

    def cb(k, phi, lw):
        print(k, flush=True)
        if mode == "after_first_chunk" and k == 0:
            stop()
        if mode == "timed":
            time.sleep(0.01)

    E.generate(E.ErfNet(40, d_in=2), Lattice((8, 8)), %d, path, chunk=%d, seed=%d, threads=1,
               callback=cb)
""" % (N, CHUNK, SEED))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    return E.generate(SPEC, LAT, N, tmp_path_factory.mktemp("ref") / "ref", chunk=CHUNK,
                      seed=SEED, threads=1)


def all_bytes(store):
    return b"".join(store.read_chunk(k)[0].tobytes() for k in range(store.n_chunks))


def run_and_kill(path, mode, after_line):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == after_line:
                if mode == "timed":
                    time.sleep(0.004)  # somewhere inside the next chunk
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the child finished before it was killed"


@pytest.mark.parametrize("mode,after_line,complete", [
    ("after_first_chunk", "STOP", [0]),
    ("inside_data_write", "STOP", [0, 1]),
    ("before_record", "STOP", [0, 1]),
    ("timed", "3", None),
])
def test_kill9_then_resume_bit_identical(tmp_path, reference, mode, after_line, complete):
    ref = reference
    p = tmp_path / "killed"
    run_and_kill(p, mode, after_line)
    s = FieldStore.open(p)
    done = s.complete_chunks()
    if complete is not None:
        assert done == complete
    else:
        assert [0, 1, 2, 3] == done[:4] and len(done) < 8
    assert s.damaged_chunks() == []
    for k in done:  # whatever is counted complete is exactly the reference
        assert s.read_chunk(k)[0].tobytes() == ref.read_chunk(k)[0].tobytes()
    if mode == "inside_data_write":
        partial = s.partial_files()
        assert len(partial) == 1 and partial[0].parent == p / "phi" / "c" / "2" / "0"
        assert not s.chunk_file(2).exists()
    if mode == "before_record":
        assert s.chunk_file(2).exists() and 2 not in done  # data without record: not counted
    resumed = E.generate(SPEC, LAT, N, p, chunk=CHUNK, seed=SEED, threads=1)
    assert resumed.is_complete and resumed.partial_files() == []
    assert all_bytes(resumed) == all_bytes(ref)
    assert FieldStore.open(p).verify().clean
