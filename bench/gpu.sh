#!/usr/bin/env bash
# Every GPU measurement in one short run (`make bench-gpu`), in two parts each sized for a single
# call on a lent GPU machine: BENCH=sd21 runs SD 2.1-base-shaped generation and LoRA fine-tuning
# against their plain loops (random weights, 512 px), embed and exact-rarity throughput, and the
# CLIP ViT-B/16 classifier; BENCH=sdxl runs SDXL base-shaped (random weights, bench/sdxl.py)
# generation and LoRA fine-tuning at 1024 px against their plain loops; BENCH=all (the default)
# runs both. Each step has its own time limit inside a total budget (BUDGET seconds, default 450
# for sd21, 540 for sdxl, 990 for both), so one slow or failing step cannot eat the others' time; results land
# in $OUT (default bench-out/), one log per step plus summary.txt, ready to be copied into
# docs/benchmarks.md.
#
# GPU machines here cannot reach a package index: `make bench-gpu-wheels` (on a machine that can)
# downloads the few pure-Python packages such a machine lacks into .whl/, and this script puts
# them on PYTHONPATH when it finds them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
BENCH=${BENCH:-all}
case "$BENCH" in
  all) BUDGET=${BUDGET:-990} ;;
  sd21) BUDGET=${BUDGET:-450} ;;
  sdxl) BUDGET=${BUDGET:-540} ;;
  *) echo "BENCH=$BENCH: expected all, sd21 or sdxl" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SITE=""
if compgen -G ".whl/*.whl" >/dev/null; then
  SITE=/tmp/geosynth-bench-site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || echo "wheel install failed" >>"$OUT/summary.txt"
fi
export PYTHONPATH="$PWD/src:$PWD/bench${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u +"date: %Y-%m-%dT%H:%MZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$PY" -c 'import torch, diffusers, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "| diffusers", diffusers.__version__, "| transformers", transformers.__version__)' 2>&1
  nproc
} | tee "$OUT/machine.txt"

# step NAME LIMIT CMD...: run CMD with at most LIMIT seconds, never past the total budget.
step() {
  local name=$1 limit=$2 left
  shift 2
  limit=$((limit * ${LIMIT_SCALE:-1}))
  left=$((BUDGET - SECONDS))
  if ((left < 20)); then
    echo "$name: skipped (budget spent)" | tee -a "$OUT/summary.txt"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s, ${SECONDS}s elapsed)"
  local t0=$SECONDS
  timeout --signal=KILL "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUT/$name.log"
  echo "$name: rc=$rc in $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"
}

if [[ "${SMOKE:-0}" == 1 ]]; then
  # A CPU check of this script itself (tiny sizes, toy models): `SMOKE=1 bash bench/gpu.sh`.
  : "${LIMIT_SCALE:=5}"
  BUDGET=$((BUDGET * LIMIT_SCALE))
  D=cpu; SD=toy; RES=32; STEPS=4; PER=2; FT_STEPS=3; RAR=2000x500; EMB=24; CLF=toy-clip-lora; WK=0
  XL=toy-sdxl; XL_RES=32; XL_STEPS=3; XL_PER=2; XL_BATCH=2
else
  D=cuda; SD=/tmp/geosynth-sd21-random; RES=512; STEPS=50; PER=16; FT_STEPS=20; RAR=1000000x27000
  EMB=2048; CLF=vit-b16-lora; WK=8
  XL=/tmp/geosynth-sdxl-random; XL_RES=1024; XL_STEPS=20; XL_PER=4; XL_BATCH=2
fi

if [[ "$BENCH" != sdxl ]]; then
[[ "${SMOKE:-0}" == 1 ]] || step build_sd21 90 "$PY" bench/sd21.py "$SD"
# One rank-16 LoRA per class, as DataDream: the plain loop runs its adapters at every step,
# geosynth fuses each class's LoRA while the class generates. GEN_COMPARE=unfused,compile also
# times geosynth unfused and compiled (about 30 s and 90 s more on the GPU).
step generate 150 "$PY" bench/generate.py --model "$SD" --device $D --precision fp16 \
  --resolution $RES --steps $STEPS --classes 2 --per-class $PER --batch-size $PER \
  --lora-rank 16 --compare "${GEN_COMPARE:-}"
step finetune_fp16 130 "$PY" bench/finetune.py --model "$SD" --device $D --precision fp16 \
  --resolution $RES --batch-size 8 --steps $FT_STEPS --warmup 3
step rarity 150 "$PY" bench/rarity.py --device $D --sizes $RAR --with-prdc ''
step embed 90 "$PY" bench/embed.py --device $D --precisions fp16,bf16 --images $EMB \
  --batch-size 256 --workers $WK
step train_clf 90 "$PY" bench/train_clf.py --configs $CLF --images 256 --epochs 2 \
  --batch-size 64 --device $D
# The diffusers example's setting (UNet LoRA, frozen text encoder: geosynth caches the prompts),
# with geosynth also run without channels-last to show what NHWC brings.
step finetune_bf16 130 "$PY" bench/finetune.py --model "$SD" --device $D --precision bf16 \
  --resolution $RES --batch-size 8 --steps $FT_STEPS --warmup 3 --text-encoder frozen \
  --variants plain,geosynth,geosynth-nchw
# One measured point of docs/finetune.md's derived memory table ("Memory"): batch 8, gradient
# checkpointing, UNet + text-encoder LoRA; its peak (max_memory_allocated) replaces the estimate.
step finetune_memory_gc 100 "$PY" bench/finetune.py --model "$SD" --device $D --precision fp16 \
  --resolution $RES --batch-size 8 --steps 4 --warmup 1 --gradient-checkpointing \
  --variants plain,geosynth
# Last, on what is left of the budget: torch.compile's warm-up is long (in the warm-up steps).
step finetune_compile 150 "$PY" bench/finetune.py --model "$SD" --device $D --precision bf16 \
  --resolution $RES --batch-size 8 --steps $FT_STEPS --warmup 3 --text-encoder frozen --compile
fi

if [[ "$BENCH" != sd21 ]]; then
# SDXL base's exact configurations with random weights (13.9 GB of fp32 safetensors, built on the
# GPU machine itself: it cannot reach a hub), 1024 px, its native size.
[[ "${SMOKE:-0}" == 1 ]] || step build_sdxl 180 "$PY" bench/sdxl.py "$XL"
# LoRA r16 on the UNet and both text encoders, bf16 frozen weights and fp32 LoRA factors, gradient
# checkpointing: steps/s and peak memory (max_memory_allocated) against the plain diffusers SDXL
# loop; the measured point of docs/finetune.md's derived SDXL table (row 2, B=2).
step finetune_sdxl 240 "$PY" bench/finetune.py --model "$XL" --device $D --precision bf16 \
  --resolution $XL_RES --batch-size $XL_BATCH --steps $FT_STEPS --warmup 2 \
  --gradient-checkpointing --variants plain,geosynth
# One rank-16 LoRA per class, fused per class in geosynth, against the plain loop (reload per
# class, adapters at every step); SDXL's VAE decodes in float32 under fp16 in both.
step generate_sdxl 200 "$PY" bench/generate.py --model "$XL" --device $D --precision fp16 \
  --resolution $XL_RES --steps $XL_STEPS --classes 2 --per-class $XL_PER --batch-size $XL_PER \
  --lora-rank 16
fi
echo "total ${SECONDS}s" | tee -a "$OUT/summary.txt"
