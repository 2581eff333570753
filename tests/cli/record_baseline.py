"""Record results.json of every example at its smoke size (the numbers the refactors must keep).

Run from the repository root: ``python tests/cli/record_baseline.py``. Writes
tests/cli/baseline/<example>.json (timings removed). The test that compares against them is
``tests/cli/test_baseline.py``; re-record only on purpose (a change of physics), never to make a
refactor pass.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from smoke import SMOKE_ARGS, strip_timings  # noqa: E402


def main():
    out_dir = ROOT / "tests" / "cli" / "baseline"
    out_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted((ROOT / "examples").glob("*.toml")):
            out = Path(tmp) / path.stem
            args = [sys.executable, "-m", "nnft", "run", str(path), "--out", str(out), "--quiet",
                    *SMOKE_ARGS(path)]
            r = subprocess.run(args, capture_output=True, text=True)
            if r.returncode:
                print(path.stem, "FAILED", r.stderr[-2000:])
                continue
            res = strip_timings(json.loads((out / "results.json").read_text()))
            (out_dir / f"{path.stem}.json").write_text(json.dumps(res, indent=1, sort_keys=True))
            print(path.stem, "recorded")


if __name__ == "__main__":
    main()
