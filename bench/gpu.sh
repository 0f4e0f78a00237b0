#!/usr/bin/env bash
# Real-size GPU benchmarks without downloads (issue 13 §4), one script, < 8 min on one GPU.
#
# Builds random-weight models at real architecture sizes (recap-studio models tiny --size), then:
#   1. recaption img/s: the job vs a bare batched generate vs a per-image loop, fp16 and bf16,
#      every caption FIXED_TOKENS tokens (min_new_tokens = max_new_tokens), BLIP-base/-large and
#      a Qwen2-VL-2B-shaped VLM; the share of wall time inside generate (model busy share)
#   2. T2I training step at 512 px on an SD-1.5-shaped pipeline: ours vs the diffusers-script loop,
#      cached latents on / off (bench/t2i_step.py)
#   3. the T2I jobs end to end: t2i_train steps/s (cache off / cold / warm, EMA on), a cancel + EMA
#      resume, and generate img/s vs a bare pipeline loop with the job's busy share (bench/gpu_jobs.py)
#
#   bench/gpu.sh                 # on a GPU machine (writes bench-gpu-<date>.log next to the output)
#   bench/gpu.sh --dry-run       # tiny models on the CPU: proves every step runs (minutes, no GPU)
#
# Each step has its own time limit, so one slow step cannot eat the others' time; a step that
# fails or times out is reported and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
WORK=$(mktemp -d /tmp/recap-gpu-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FIXED_TOKENS=32
started=$SECONDS

step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | grep -v -E "Warning|warn\(|it/s\]|s/it\]" | tail -n 40
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0)) s"
}

if [[ $DRY == 1 ]]; then
    DEV=cpu
    echo "dry run: tiny models on the CPU; the figures say nothing about a GPU"
    $PY -m training.tiny --family blip --out "$WORK/blip" >/dev/null
    $PY -m training.tiny --family qwen2_vl --out "$WORK/qwen2_vl" >/dev/null
    CAPTIONERS=("$WORK/blip" "$WORK/qwen2_vl")
    DTYPES=(float32)
    REC=(--images 16 --batch-size 8 --repeats 1 --loop-images 4 --num-workers 1 --max-new-tokens 8)
    T2I=(--steps 3 --warmup 1 --batch 2 --resolution 64)
    JOBS=(--dry-run)
else
    DEV=cuda
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no GPU"; exit 2; }
    for spec in blip:base blip:large qwen2_vl:base sd:base; do
        fam=${spec%%:*} size=${spec##*:}
        step "build $fam $size" 240 $PY -m training.tiny --family "$fam" --size "$size" --device cuda \
            --fixed-new-tokens $FIXED_TOKENS --out "$WORK/$fam-$size"
    done
    CAPTIONERS=("$WORK/blip-base" "$WORK/blip-large" "$WORK/qwen2_vl-base")
    DTYPES=(float16 bfloat16)
    REC=(--images 512 --batch-size 64 --repeats 2 --loop-images 32 --num-workers 4 --max-new-tokens $FIXED_TOKENS --threads 0)
    T2I=(--steps 10 --warmup 3 --batch 4 --resolution 512 --model "$WORK/sd-base" --autocast bf16)
    JOBS=(--model "$WORK/sd-base" --device cuda --images 64 --steps 40 --batch-size 8 --prompts 64)
fi

for model in "${CAPTIONERS[@]}"; do
    for dtype in "${DTYPES[@]}"; do
        step "recaption $(basename "$model") $dtype" 150 $PY bench/recaption_throughput.py --model "$model" \
            --device $DEV --dtype "$dtype" "${REC[@]}"
    done
done
step "t2i training step" 120 $PY bench/t2i_step.py --device $DEV "${T2I[@]}"
step "t2i jobs and generation" 240 $PY bench/gpu_jobs.py "${JOBS[@]}"
echo "total $((SECONDS - started)) s"
