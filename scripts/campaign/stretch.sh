#!/usr/bin/env bash
# One campaign stretch on the CPU (issue 13), from a worktree so other work does not disturb it:
#   git worktree add /tmp/train-wt && cd /tmp/train-wt
#   nohup bash scripts/campaign/stretch.sh DATA STEPS SEED > DATA/stretch.log 2>&1 &
# Continues the shipped dgn-image and dgn-baseline (--init, the fixed recipe) for the same STEPS
# each, so the twins keep equal cumulative steps; exports them to DATA/stretch/weights; then
# benchmarks new and shipped weights on the handheld and lateral test splits (20 frames, depth
# ablation) and prints one line per split. Ship (scripts/gpu/install.py --continues
# DATA/stretch/weights dgn-image dgn-baseline) only when refined depth beats the shipped weights
# on both splits.
# Stretch 4: STEPS 4400 took 2434 s (image) + 1196 s (baseline) + ~8 min of benchmarks.
# BUDGET=SECONDS trains the first task for that long instead (--time-budget; STEPS is then an
# upper bound) and the others for the steps it reached, since CPU speed differs between sessions.
# WIDTHS=24,48,96 WIDEN=1 grows the shipped weights to wider channels (--widen; stretch 12).
# PARALLEL=1 trains the tasks at once, one thread each, all for STEPS (no BUDGET: the twins keep
# equal steps), and benchmarks the shipped weights on the core the first finished run frees.
# PRECISION=fp32 where bf16 does not pay (no AMX; check `dgn benchmark` or a short run).
set -euo pipefail
D=${1:?usage: stretch.sh DATA STEPS SEED}; STEPS=${2:?steps}; SEED=${3:?seed}
D=$(cd "$D" && pwd)
PY=${PYTHON:-python}
LIMIT=${LIMIT:-20}  # test frames per split (LIMIT=1 for a dry run)
TRAIN=${TRAIN:-synth-hh-train}  # training split under DATA (synth-hh-cont-train: continuous blur)
# more training splits under DATA, space-separated, joined to TRAIN's (--extra-data); stretch 7
# trained on both kinds of blur: EXTRA=synth-hh-cont-train
EXTRA=${EXTRA:-}
TASKS=${TASKS:-image baseline}
WIDTHS=${WIDTHS:-16,32,64}
PRECISION=${PRECISION:-bf16}
PARALLEL=${PARALLEL:-}
widen=()
[ -n "${WIDEN:-}" ] && widen=(--widen)
# The baseline diverged at 5e-4 in stretch 5 (step 4250) and trains stably at 3e-4.
declare -A LR=([image]=${LR_IMAGE:-5e-4} [baseline]=${LR_BASELINE:-3e-4})
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
S="$D/stretch"; W="$S/weights"
mkdir -p "$S"
extra=()
for split in $EXTRA; do extra+=(--extra-data "$D/$split"); done
BUDGET=${BUDGET:-}
steps_reached() {  # steps_reached RUN_DIR: the step of the run's end event
  "$PY" -c 'import json, sys
print([json.loads(l) for l in open(sys.argv[1])][-1]["step"])' "$1/log.jsonl"
}
train() {  # train TASK OPTIONS...: continue the shipped weights of TASK for STEPS
  local task=$1; shift
  "$PY" -m dgn_cli train --task "$task" --data "$D/$TRAIN" "${extra[@]}" --steps "$STEPS" \
    --batch-size 4 --crop 160 --lr "${LR[$task]}" --widths "$WIDTHS" --seed "$SEED" --cache-scenes \
    --workers 0 --precision "$PRECISION" --val-count 8 --val-every $(( STEPS / 4 )) "$@" \
    --init "$ROOT/weights/dgn-$task.safetensors" "${widen[@]}" --out "$S/runs/$task" \
    --export "dgn-$task" --export-dir "$W" --export-dtype fp16
}
bench() {  # bench SPLIT NAME OPTIONS...: 20 test frames, JSON to S/bench-SPLIT-NAME.json
  local split=$1 name=$2; shift 2
  "$PY" -m dgn_cli benchmark --dataset synth --data "$D/$split" --limit "$LIMIT" --no-timing \
    --json "$@" >"$S/bench-$split-$name.json"
}
SPLITS="synth-hh synth-lateral synth-hh-cont"
bench_shipped() {  # of the shipped weights only the refined row is compared
  for split in $SPLITS; do
    bench "$split" shipped --no-ablation --weights "$ROOT/weights/dgn-image.safetensors"
  done
}
bench_new() {  # the new weights with the depth ablation
  bench "$1" new --ablation --weights "$W/dgn-image.safetensors" \
    --baseline-weights "$W/dgn-baseline.safetensors"
}
if [ -n "$PARALLEL" ]; then
  [ -n "$BUDGET" ] && { echo "PARALLEL=1 trains for STEPS: leave BUDGET unset" >&2; exit 2; }
  export OMP_NUM_THREADS=1
  # the shipped benchmarks follow whichever training ends first, on the core it frees
  done_flag="$S/.first-done"; rm -f "$done_flag"
  pids=()
  for task in $TASKS; do
    ( train "$task"
      if mkdir "$done_flag" 2>/dev/null; then bench_shipped; fi ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  rmdir "$done_flag"
  # two splits at a time, one thread each
  for split in $SPLITS; do
    bench_new "$split" &
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  done
  wait
else
  for task in $TASKS; do
    budget=()
    [ -n "$BUDGET" ] && budget=(--time-budget "$BUDGET")
    train "$task" "${budget[@]}"
    if [ -n "$BUDGET" ]; then  # the twins train for equal steps
      STEPS=$(steps_reached "$S/runs/$task"); BUDGET=""
      echo "$task: $STEPS steps; the next tasks train as many"
    fi
  done
  bench_shipped
  for split in $SPLITS; do bench_new "$split"; done
fi
# shellcheck disable=SC2086  # SPLITS: one argument per split
"$PY" - "$S" $SPLITS <<'PY'
import json, sys
s = sys.argv[1]
for split in sys.argv[2:]:
    rows = {w: json.load(open(f"{s}/bench-{split}-{w}.json"))["quality"] for w in ("new", "shipped")}
    def psnr(w, method):
        return next(r["psnr"] for r in rows[w] if r["name"] == method)
    new, old = psnr("new", "refined depth"), psnr("shipped", "refined depth")
    print(f"{split}: refined depth new {new:.2f} vs shipped {old:.2f} ({new - old:+.2f} dB); "
          f"blurry {psnr('new', 'blurry input'):.2f}, baseline {psnr('new', 'no depth (baseline)'):.2f}, "
          f"reference {psnr('new', 'reference depth'):.2f}")
PY
