#!/usr/bin/env bash
# Everything gpugrad checks on a GPU, in one command: versions, the GPU
# tests, the CPU<->GPU crosscheck, compute-sanitizer memcheck on a few training steps, and the
# kernel and training benchmarks. Runs from the source tree (PYTHONPATH=$PWD), no network.
#
#   bench/gpu_check.sh                 # results to $OUT if set, else bench/results/
#   bench/gpu_check.sh --out DIR       # results to DIR
#   bench/gpu_check.sh --quick         # smaller benchmark sizes, fewer repetitions
#   bench/gpu_check.sh --dry-run       # no GPU: argument parsing and result files only
#
# Writes at most 6 files named <date>_<card>_*: a log, a summary, and the JSON and markdown of
# the kernel benchmarks and of the training-step benchmarks. Exit 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

DRY=0
QUICK=0
OUTDIR="${OUT:-bench/results}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --quick) QUICK=1 ;;
    --out) [ $# -ge 2 ] || { echo "gpu_check: --out needs a folder" >&2; exit 2; }; OUTDIR="$2"; shift ;;
    --out=*) OUTDIR="${1#--out=}" ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUTDIR" || { echo "gpu_check: cannot create $OUTDIR" >&2; exit 2; }

PY="${PYTHON:-python}"
if [ "$DRY" = 1 ]; then
  CARD="dry-run"
else
  CARD="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)"
  if [ -z "$CARD" ]; then
    echo "gpu_check: nvidia-smi finds no GPU; use --dry-run on a machine without one" >&2
    exit 2
  fi
fi
STEM="$OUTDIR/$(date +%Y-%m-%d)_$(echo "$CARD" | tr -cs 'A-Za-z0-9' '-' | sed 's/-$//')"
LOG="$STEM.log"
SUMMARY="$STEM.md"
: > "$LOG"
echo "# gpu_check: $CARD ($(date -u +%Y-%m-%dT%H:%MZ))" > "$SUMMARY"
echo "" >> "$SUMMARY"
FAILED=0

# step NAME LIMIT_SECONDS COMMAND...: run, log, and record pass/fail/skip with the time taken.
step() {
  local name="$1" limit="$2"; shift 2
  echo "=== $name: $*" | tee -a "$LOG"
  if [ "$DRY" = 1 ]; then
    echo "- $name: skipped (dry run)" >> "$SUMMARY"
    return 0
  fi
  local t0=$SECONDS
  timeout "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  local took=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    echo "- $name: passed (${took} s)" >> "$SUMMARY"
  else
    echo "- $name: FAILED, exit $rc (${took} s; see $(basename "$LOG"))" >> "$SUMMARY"
    FAILED=1
  fi
  tail -n 3 "$LOG"
}

versions() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -n 2
  "$PY" - <<'PY'
import platform, numpy
print("python", platform.python_version(), "| numpy", numpy.__version__)
for mod in ("cupy", "numba", "torch"):
    try:
        m = __import__(mod)
        print(mod, m.__version__)
    except Exception as e:
        print(mod, "unavailable:", e)
import cupy
print("CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
PY
}

crosscheck() {
  "$PY" -m gpugrad check --devices cpu,cuda
}

# A few training steps through every kernel family, small enough for memcheck's slowdown.
TRAIN_STEPS='
import numpy as np, gpugrad as gg, gpugrad.functional as F
rng = np.random.default_rng(0)
x = gg.tensor(rng.standard_normal((64, 32)).astype(np.float32), device="cuda")
y = gg.tensor(rng.integers(0, 10, 64), device="cuda")
w1 = gg.tensor(rng.standard_normal((48, 32)).astype(np.float32) * 0.2, device="cuda", requires_grad=True)
w2 = gg.tensor(rng.standard_normal((10, 48)).astype(np.float32) * 0.2, device="cuda", requires_grad=True)
opt = gg.optim.Adam([w1, w2], lr=1e-2)
for step in range(5):
    opt.zero_grad()
    h = F.leaky_relu(F.linear(x, w1)).tanh().sigmoid().relu()
    s = F.linear(h, w2)
    loss = F.cross_entropy(s, y) + F.mse_loss(F.softmax(s, axis=1), F.one_hot(y, 10).to("cuda"))
    loss = loss + F.binary_cross_entropy_with_logits(F.log_softmax(s, axis=1), F.one_hot(y, 10).to("cuda"))
    loss.backward()
    opt.step()
    print(step, float(loss.item()))
gg.config.matmul = "custom"
print("custom matmul", float((x @ w1.T).sum().item()))
gg.cuda.synchronize()
'

memcheck() {
  compute-sanitizer --tool memcheck --leak-check full --error-exitcode 1 "$PY" -c "$TRAIN_STEPS"
}

BENCH_ARGS=(--out "$OUTDIR" --stem "$(basename "$STEM")_bench")
[ "$QUICK" = 1 ] && BENCH_ARGS+=(--quick --reps 10)

step versions 60 versions
step "gpu tests (pytest -m gpu -x -q)" 150 "$PY" -m pytest -m gpu -x -q
step "crosscheck (gpugrad check)" 60 crosscheck
step "compute-sanitizer memcheck, 5 training steps" 90 memcheck
if [ "$DRY" = 1 ]; then
  "$PY" bench/gpu_bench.py --dry-run "${BENCH_ARGS[@]}" >> "$LOG" 2>&1 || FAILED=1
  echo "- benchmarks: dry run, case list only ($(basename "$STEM")_bench.json)" >> "$SUMMARY"
else
  # about 60 kernel rows at full size, most of whose time goes to drawing inputs on the host;
  # the limit is a cap (raised from 150 s with the layer and optimizer rows), not a measurement
  step "benchmarks (bench/gpu_bench.py)" 240 "$PY" bench/gpu_bench.py "${BENCH_ARGS[@]}"
  # training steps: gpugrad eager and graphed against torch eager and torch.compile
  step "training steps (gpu_bench.py --family steps)" 120 "$PY" bench/gpu_bench.py \
    --family steps --out "$OUTDIR" --stem "$(basename "$STEM")_steps" --reps 20
fi

# NCCL with world size 1: the communicator, all-reduce, broadcast and a weighted gradient
# average through DistributedOptimizer's flat buckets. Exit 3: CuPy has no NCCL library.
NCCL_SMOKE='
import os
os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
os.environ.setdefault("GPUGRAD_DIST_PORT", "29531")
os.environ.setdefault("GPUGRAD_DIST_TIMEOUT", "60")
import cupy as cp
from cupy.cuda import nccl
if not nccl.available:
    print("NCCL is not available to CuPy: pip install nvidia-nccl-cu12 (or -cu13)")
    raise SystemExit(3)
import numpy as np, gpugrad as gg, gpugrad.functional as F, gpugrad.distributed as dist
from gpugrad import nn, optim
be = dist.init("nccl")
assert (be.name, dist.world_size(), dist.rank()) == ("nccl", 1, 0), be.name
x = cp.arange(8, dtype=cp.float32)
dist.all_reduce(x); dist.broadcast(x); dist.barrier()
assert cp.array_equal(x, cp.arange(8, dtype=cp.float32))
gg.manual_seed(0)
model = nn.MLP([32, 64, 10]); model.to("cuda")
opt = dist.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), bucket_mb=0.004)
xb = gg.tensor(np.random.default_rng(0).normal(size=(16, 32)).astype(np.float32), device="cuda")
yb = gg.tensor(np.arange(16) % 10, device="cuda")
F.cross_entropy(model(xb), yb).backward()
before = [p.grad.numpy().copy() for p in model.parameters()]
opt.synchronize(weight=0.5)  # forces the bucketed NCCL all-reduce even with one rank
for p, g in zip(model.parameters(), before):
    np.testing.assert_allclose(p.grad.numpy(), 0.5 * g, rtol=1e-6)
opt.step(); dist.shutdown()
print("nccl", nccl.get_version(), "world size 1: all-reduce, broadcast, DistributedOptimizer ok")
'
step "NCCL smoke test, world size 1 (gpugrad.distributed)" 90 "$PY" -c "$NCCL_SMOKE"
[ -f "$STEM"_bench.md ] && { echo ""; cat "$STEM"_bench.md; } >> "$SUMMARY"

echo ""
cat "$SUMMARY"
echo "results: $STEM.{log,md} and ${STEM}_bench.{json,md}"
exit $FAILED
