#!/usr/bin/env bash
# Download (here, where PyPI is reachable) the wheels a bare GPU machine lacks for nnft, into .whl/
# (ignored by git), plus an nnft wheel of the working tree. On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site; cd /tmp; python3 -m pytest -m gpu $REPO/tests; python3 $REPO/benchmarks/gpu.py
# (run from outside the repository: there the local nnft/ folder would shadow the package).
set -euo pipefail
cd "$(dirname "$0")/.."
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64
      --platform manylinux1_x86_64"
PY=${PYTHON:-python3}
mkdir -p .whl
for pkg in zarr==3.4.2 numcodecs==0.17.1 donfig==0.8.1.post1 google-crc32c==1.9.0 dask==2026.8.0 \
           distributed==2026.8.0 tornado==6.6.1 partd==1.4.2 locket==1.0.0 tblib==3.2.2 zict==3.0.0 \
           msgspec==0.22.0 pyerrors==2.17.0 autograd==1.9.1 numdifftools==0.11.2 iminuit==2.33.0 \
           python-rapidjson==1.25; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      $PLAT -d .whl "$pkg"
done
rm -f .whl/nnft-*.whl
$PY -m pip wheel -q --no-deps -w .whl .
ls .whl
