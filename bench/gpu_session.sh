#!/usr/bin/env bash
# One prepared run on a lent GPU machine, from the source tree, within one device-tool call:
#   1. the GPU tests of the persistent GRU kernels (the CUDA kernel's parity on a GPU) and the CUDA matrix rows,
#   2. bench/triton_gru_probe.py --quick: the BiGRU alone, cuDNN vs Triton vs the CUDA kernel, then fused cbhg,
#   3. bench/gpu_check.py: the CUDA matrix with every runtime, ending in one `best:` line per model and shape,
#   4. `edgeseq export cbhg` itself: the report (report.json) with its PyTorch CUDA rows,
#   5. bench/gpu_summary.py: the verdict (kernels per step, cbhg b1 T200 against the 0.4 ms target), printed last.
# Each step has its own time limit and the next one runs whatever the last one did; logs and JSON go to $OUT
# (the device tool brings that folder back; commit what it printed under bench/results/).
#
#   run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=600)
#
# .whl/ (git-excluded, carried) holds wheels the GPU machine lacks (onnxslim); they go to a scratch folder on the
# path, nothing is installed into its Python. On a fresh checkout, make it first (here, not on the GPU machine):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl onnxslim==0.1.98
set -u
OUT=${OUT:-/tmp/edgeseq-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
# $OUT brings back at most 8 files: the five step logs / JSONs below, the matrix's report.json, summary.txt
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/summary.txt"

step() {  # step NAME SECONDS COMMAND...: run with a limit, keep the log, say how it ended
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc in $((SECONDS - started)) s"
    tail -n 25 "$OUT/$name.log"
}

step gpu-tests 160 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/test_cuda_gru.py tests/test_triton_gru.py tests/test_fuse.py tests/test_cuda.py tests/test_tensorrt.py \
    tests/test_onnx_runner.py
step triton-gru-quick 110 python3 bench/triton_gru_probe.py --quick --out "$OUT/triton-gru-quick.json"
step gpu-check 230 python3 bench/gpu_check.py --out "$OUT/gpu-check.json"
step matrix-cbhg 70 python3 -m edgeseq export cbhg --times 7,200 --batches 1,3 -n 20 --out /tmp/matrix-cbhg
cp /tmp/matrix-cbhg/report.json "$OUT/matrix-cbhg-report.json" 2>/dev/null  # report.md renders from it later
# last, so the device tool's output tail (its last 12,000 characters) always holds the verdict
echo "== summary"
python3 bench/gpu_summary.py "$OUT" | tee -a "$OUT/summary.txt"
