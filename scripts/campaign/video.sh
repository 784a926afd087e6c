#!/usr/bin/env bash
# One dgn-video campaign run on the CPU (issue 13), from a worktree so other work does not
# disturb it:
#   git worktree add /tmp/train-wt && cd /tmp/train-wt
#   nohup bash scripts/campaign/video.sh DATA BUDGET SEED [dgn train options] > DATA/video.log 2>&1 &
# Continues the shipped dgn-video on motion-parallax D_b (stretch 10 on) for BUDGET seconds
# (--time-budget), exports it to DATA/video-stretch/NAME/weights, then benchmarks it and the
# shipped dgn-video on the video test split (LIMIT frames, align auto, video depth auto =
# parallax), lossless and with the inputs JPEG-compressed at quality JPEG, and prints one line
# for each. Ship (scripts/gpu/install.py --continues DATA/video-stretch/NAME/weights dgn-video)
# only when it beats the shipped weights on the lossless split.
# Needs `bash scripts/campaign/data.sh DATA` (DATA/synth-hh-video, DATA/synth-video). The
# parallax cache (DATA/parallax-cache) is filled on the first run (2-11 min on one core).
# Two runs side by side: NAME=a ... & NAME=b ... --jpeg 0.3 & (stretch 13), one thread each
# (OMP_NUM_THREADS=1 is the default here); start the second once the first has filled the cache.
# A dry run: LIMIT=1 bash scripts/campaign/video.sh DATA 20 1 (point DATA at a folder of links).
set -euo pipefail
D=${1:?usage: video.sh DATA BUDGET SEED [dgn train options]}; BUDGET=${2:?budget}
SEED=${3:?seed}; shift 3
D=$(cd "$D" && pwd)
PY=${PYTHON:-python}
NAME=${NAME:-video}
LIMIT=${LIMIT:-40}  # test frames (stretch 11 on: 40 of the split's 100)
JPEG=${JPEG:-80}  # the compressed benchmark's JPEG quality
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
for split in synth-hh-video synth-video; do
  [ -d "$D/$split" ] || { echo "$D/$split: missing; run scripts/campaign/data.sh $D" >&2; exit 2; }
done
S="$D/video-stretch"; RUN="$S/$NAME"; W="$RUN/weights"
mkdir -p "$S"
SHIPPED="$ROOT/weights/dgn-video.safetensors"
"$PY" -m dgn_cli train --task video --data "$D/synth-hh-video" --depth-model parallax \
  --depth-cache "$D/parallax-cache" --init "$SHIPPED" --steps 100000 --time-budget "$BUDGET" \
  --batch-size 4 --crop 160 --lr 5e-4 --widths 16,32,64 --seed "$SEED" --cache-scenes \
  --workers 0 --precision "${PRECISION:-bf16}" --val-count 4 --ema 0.995 "$@" --out "$RUN/run" \
  --export dgn-video --export-dir "$W" --export-dtype fp16
bench() {  # bench WEIGHTS OUT [--jpeg Q]: the video split, JSON to OUT (written atomically)
  local weights=$1 out=$2; shift 2
  "$PY" -m dgn_cli benchmark --dataset synth --data "$D/synth-video" --limit "$LIMIT" \
    --no-timing --no-ablation --weights "$weights" --json "$@" >"$out.part"
  mv "$out.part" "$out"
}
# The shipped weights' numbers are kept per checkpoint (named by its hash) and limit: a run that
# finds them measured skips them (a later run, or the second of two side by side once the first
# has written them; two that reach this point together both measure).
tag=$(sha256sum "$SHIPPED" | cut -c1-12)-$LIMIT
for q in lossless "$JPEG"; do
  jpeg=(); [ "$q" = lossless ] || jpeg=(--jpeg "$q")
  bench "$W/dgn-video.safetensors" "$RUN/bench-$q.json" "${jpeg[@]}"
  [ -f "$S/bench-shipped-$tag-$q.json" ] || bench "$SHIPPED" "$S/bench-shipped-$tag-$q.json" "${jpeg[@]}"
done
"$PY" - "$RUN" "$S" "$tag" lossless "$JPEG" <<'PY'
import json, sys
run, s, tag, *qualities = sys.argv[1:]
def psnr(path: str, method: str) -> float:
    return next(r["psnr"] for r in json.load(open(path))["quality"] if r["name"] == method)
for q in qualities:
    new = psnr(f"{run}/bench-{q}.json", "refined depth")
    old = psnr(f"{s}/bench-shipped-{tag}-{q}.json", "refined depth")
    blurry = psnr(f"{run}/bench-{q}.json", "blurry input")
    label = "lossless" if q == "lossless" else f"JPEG q{q}"
    print(f"video split, {label}: new {new:.2f} vs shipped {old:.2f} ({new - old:+.2f} dB); "
          f"blurry {blurry:.2f}")
PY
