#!/usr/bin/env bash
# Smoke run (~90 s on one H200 once the machine is up): the GPU works, the CUDA tests pass,
# Table VIII timing at 1280x720 in fp32 and bf16 (paper-width random-weight DGN), and a
# 15-second budgeted training run of each task, all at once, plus one with --compile.
# Writes to OUT: bench-fp32.json, bench-bf16.json, smoke.tgz (every log), status.txt.
source "$(dirname "$0")/env.sh"
fails=()
step() { local name=$1; shift; echo "== $name" >&2; "$@" || { echo "!! $name failed" >&2; fails+=("$name"); }; }

step env "$PY" -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" | tee "$WORK/env.txt"
if [ "$DRY" != 1 ]; then
  step pytest-cuda "$PY" -m pytest -q -m cuda -p no:cacheprovider tests >"$WORK/pytest-cuda.txt" 2>&1
  tail -3 "$WORK/pytest-cuda.txt"
fi
for p in fp32 bf16; do
  # (dry run: "auto" for the bf16 file, so a CPU without native bf16 can run it too)
  prec=$p; [ "$DRY" = 1 ] && [ "$p" = bf16 ] && prec=auto
  step "bench-$p" "$PY" -m dgn_cli benchmark --device "$DEVICE" --precision "$prec" \
    --size "$BENCH_SIZE" --runs "$BENCH_RUNS" --warmup 2 --weights random --json \
    >"$OUT/bench-$p.json" 2>"$WORK/bench-$p.err"
done
pids=()
for task in image video baseline depth; do
  train "smoke-$task" "$task" 15 "$WORK/weights" & pids+=($!)
done
# torch.compile compiles inside the first step (tens of seconds): is it worth it? (Not on
# the dry run's CPU, where inductor takes over a minute; DGN_COMPILE=1 forces it.)
if [ "$DRY" != 1 ] || [ "${DGN_COMPILE:-0}" = 1 ]; then
  train smoke-compile image 15 "$WORK/weights-compile" --compile & pids+=($!)
fi
for i in "${!pids[@]}"; do wait "${pids[$i]}" || fails+=("train-$i"); done
for f in "$WORK"/smoke-*.json; do
  "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[1], 'steps', d['step'], 'wall', round(d['wall_time_s'],1), 'wait', round(d['data_wait_fraction'],3), 'val', d['val'])" "$f" || true
done
[ -d "$WORK/run-smoke-compile" ] && { grep -h compile_fallback "$WORK/run-smoke-compile/log.jsonl" || echo "compile: no fallback"; }
echo "failed: ${fails[*]:-none}" | tee "$OUT/status.txt"
tar -czf "$OUT/smoke.tgz" -C "$WORK" --exclude='*.safetensors' --exclude='*.pt' .
[ ${#fails[@]} -eq 0 ]
