# Settings shared by smoke.sh and main.sh (sourced by them; see README.md).
#   bash scripts/gpu/smoke.sh OUT        on the GPU machine (carry: data/photos-gpu)
#   DGN_DRY_RUN=1 bash scripts/gpu/...   the same steps on this CPU: tiny models and frames,
#                                        every training budget DGN_BUDGET seconds (default 20)
set -euo pipefail
OUT=${1:?usage: bash $0 OUT_FOLDER}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"
# The project runs from the working tree: nothing is installed from a registry.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}
PHOTOS=${DGN_PHOTOS:-data/photos-gpu}
WORK=${DGN_WORK:-$(mktemp -d /tmp/dgn-gpu.XXXXXX)}
mkdir -p "$WORK"
[ -d "$PHOTOS" ] || { echo "no $PHOTOS: make it with dgn data photos $PHOTOS --from data/photos and name it in carry" >&2; exit 2; }

DRY=${DGN_DRY_RUN:-0}
if [ "$DRY" = 1 ]; then
  DEVICE=cpu PRECISION=fp32 BENCH_SIZE=160x96 BENCH_RUNS=1 TEST_COUNT=2 TEST_SIZE=160x96
  COMMON=(--batch-size 2 --crop 32 --frame-size 160x96 --val-count 1 --workers 1
          --log-every 5 --precision fp32)
  DGN_W=(--widths 4,8,8 --config blocks_per_scale=1 --config bottom_blocks=1 --config sft_chs=4
         --config baseline_extra_blocks=1 --config baseline_extra_mid_chs=8)
  DEPTH_W=(--widths 4,8)
  CONT_W=(--widths 20,40,80)  # continue_train: the shipped block counts, the least wider width
  VIDEO=(--crops-per-frame 8)
else
  # One H200, 16 cores: 14 render workers (1.4 renders/s per core measured on a Xeon, so
  # ~19 frames/s), batch 16 x 256^2 in bf16, channels-last; paper widths (32/64/128).
  DEVICE=cuda PRECISION=bf16 BENCH_SIZE=1280x720 BENCH_RUNS=10 TEST_COUNT=20 TEST_SIZE=
  COMMON=(--batch-size 16 --crop 256 --val-count 8 --workers 14 --crops-per-frame 32
          --log-every 50 --precision bf16 --lr 5e-4)
  DGN_W=()
  CONT_W=()  # continue_train: the paper widths, the shipped weights grown to them
  DEPTH_W=(--widths 16,32,64,128,256 --config input_scale=0.25 --crop 512)  # as shipped
  VIDEO=(--crops-per-frame 96 --val-count 4)   # 5-frame windows render 4.4x slower
fi
budget() { if [ "$DRY" = 1 ]; then echo "${DGN_BUDGET:-20}"; else echo "$1"; fi; }

# continue_train NAME TASK SECONDS EXPORT_DIR [extra options]: train() from the shipped
# weights/NAME.safetensors grown to the run's widths (--init --widen: at the start the wide net
# computes what the shipped one does, its new channels then learn), EMA 0.995 (a continuation
# averages from its start at full decay: 0.999 would keep most of the start over ~1000 steps).
continue_train() {
  # a local DGN_W is what train() sees (bash scopes dynamically) and ends with this call
  local name=$1 DGN_W=(${CONT_W[@]+"${CONT_W[@]}"})
  train "$@" --init "weights/$name.safetensors" --widen --ema 0.995
}

# train NAME TASK SECONDS EXPORT_DIR [extra options]: one budgeted run, fp16 export.
train() {
  local name=$1 task=$2 secs=$3 dest=$4 widths=("${DGN_W[@]}")
  shift 4
  [ "$task" = depth ] && widths=("${DEPTH_W[@]}")
  [ "$task" = video ] && set -- "${VIDEO[@]}" "$@"
  "$PY" -m dgn_cli train --data synth --photos "$PHOTOS" --synth-render frame --task "$task" \
    --time-budget "$(budget "$secs")" --out "$WORK/run-$name" --device "$DEVICE" \
    --export "$name" --export-dir "$dest" --export-dtype fp16 --overwrite \
    "${COMMON[@]}" ${widths[@]+"${widths[@]}"} "$@" --json >"$WORK/$name.json" 2>"$WORK/$name.err"
}
