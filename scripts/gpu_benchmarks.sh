#!/usr/bin/env bash
# The GPU rows of docs/performance.md in one call (about 6 minutes on one
# H100/H200): the paper config (256x256, 12 images per device) in PyTorch and
# JAX in the same process, the joint step in bf16 and float32, the generator
# and discriminator steps in bf16, per-layer times in bf16, then the whole
# training loop (300 bf16 joint steps on the synthetic source, 2 checkpoints,
# a 5-step jax.profiler trace copied to OUT_DIR/profile) against its step.
#
#   bash scripts/gpu_benchmarks.sh [OUT_DIR]     (default: $OUT or gpu_results)
#
# Needs python3 with JAX (CUDA), flax, optax, absl, PyTorch (CUDA) and
# ml_collections; nothing else of glcic-jax's dependencies (no TensorFlow,
# no clu). On a machine where pip cannot reach an index, put ml_collections'
# wheel in .whl/ first (docs/performance.md, GPU): it is installed from there.
# Writes log.txt, one JSON per run, table.md and the trace. GLCIC_LOOP_STEPS
# sets the loop's length (300). GLCIC_BENCH_EXTRA
# appends flags to every run (a CPU smoke test: "--steps=1 --warmup=0
# --config.image_size=64 --config.local_size=32 --config.per_device_batch_size=2
# --config.holes.max_bbox_shape=24 --config.holes.max_bbox_delta=8
# --config.holes.min_margin=4";
# batch 1 fails there: PyTorch BatchNorm refuses one value per channel).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_results}}
mkdir -p "$out"
log="$out/log.txt"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/glcic_site .whl/*.whl \
    && export PYTHONPATH=/tmp/glcic_site${PYTHONPATH:+:$PYTHONPATH}
fi
# JAX and PyTorch share the GPU: half of its memory each.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import jax, flax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)"
} 2>&1 | tee "$log"

bench() {
  local name=$1
  shift
  echo "=== $name: $*" | tee -a "$log"
  python3 scripts/benchmark_train.py --config=configs/gl_places.py \
    --json="$out/$name.json" "$@" ${GLCIC_BENCH_EXTRA:-} 2>&1 | grep -v "^[IW][0-9]" | tee -a "$log" | tail -8
}
bench joint_bf16 --phase=joint --steps=30 --config.compute_dtype=bfloat16
bench joint_f32 --phase=joint --steps=30 --config.compute_dtype=float32
bench g_bf16 --phase=g --steps=30 --config.compute_dtype=bfloat16
bench d_bf16 --phase=d --steps=30 --config.compute_dtype=bfloat16
bench layers_bf16 --phase=g --steps=10 --config.compute_dtype=bfloat16 --layers
loop_steps=${GLCIC_LOOP_STEPS:-300}
bench loop_bf16 --phase=joint --steps=10 --config.compute_dtype=bfloat16 --loop \
  --config.data.source=synthetic --loop_steps="$loop_steps" \
  --loop_log_every=$((loop_steps / 6)) --loop_checkpoint_every=$((loop_steps / 2)) \
  --config.profile_steps="($((loop_steps * 2 / 3)),5)" --loop_trace_dir="$out/profile"
python3 scripts/benchmark_table.py "$out"/*.json | tee "$out/table.md"
