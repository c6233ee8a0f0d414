#!/usr/bin/env bash
# One GPU check (issue "Performance", part 3): <= 8 min on one H100/H200, all JSON under one folder.
#
#   benchmarks/gpu_check.sh [OUT_DIR]            # GPU run (default OUT_DIR benchmarks/results/gpu_check_<UTC date>)
#   benchmarks/gpu_check.sh --dry-run OUT_DIR    # the same stages at tiny sizes on CPU (the test suite runs this)
#
# Stages (each with its own time limit, so the whole script stays within ~8 min even if one hangs;
# a stage that fails or times out is recorded in summary.json and the others still run):
#   1. bench_train, XModalViT teacher, paper size, batch 64: fp32_eager_explicit vs fp32_sdpa,
#      bf16_sdpa, bf16_sdpa_compile (img/s, peak memory, MFU; targets teacher >= 3x and >= 35 % MFU)
#   2. bench_train, students ViT-Ti / ViT-S, ZSE-SBIR, CrossATNet, batch 64: official regime vs bf16_sdpa
#   3. bench_zse_eval --roofline: exhaustive CA + RN pair scoring (bf16), fraction of the measured
#      bf16 GEMM rate, rerank@k scaling, the official per-pair path, Sketchy-25 time projected
#   4. bench_metrics' QuickDraw stage on cuda: all category metrics at QuickDraw-Ext size (92,291 x 54,151,
#      768-d, streamed in chunks; goal <= 10 s) -> bench_metrics_quickdraw.json
# Limits (seconds) can be overridden: T_TEACHER T_OTHERS T_ZSE T_METRICS.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="${PYTHON:-python}"
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT="${1:-$ROOT/benchmarks/results/gpu_check_$(date -u +%Y%m%d_%H%M)}"
mkdir -p "$OUT"

if [ "$DRY" = 1 ]; then
  T_TEACHER=${T_TEACHER:-120}; T_OTHERS=${T_OTHERS:-120}; T_ZSE=${T_ZSE:-120}; T_METRICS=${T_METRICS:-120}
  TRAIN_COMMON=(--quick --device cpu --batches 2 --steps 1 --warmup 1 --no-loader)
  ZSE_ARGS=(--roofline --quick --device cpu)
  QD_CFG='{"device": "cpu", "threads": 1, "seed": 0, "qd_q": 1000, "qd_g": 800, "dim": 32, "qd_classes": 30, "qd_chunk": 250}'
else
  T_TEACHER=${T_TEACHER:-170}; T_OTHERS=${T_OTHERS:-130}; T_ZSE=${T_ZSE:-70}; T_METRICS=${T_METRICS:-90}
  TRAIN_COMMON=(--device cuda --batches 64 --steps 10 --no-loader)
  ZSE_ARGS=(--roofline --device cuda --precision bf16 --queries 8 --gallery 2048 --pair-block 64
            --naive-pairs 64 --gemm-n 8192 --rerank-ks 50,200,800)
  QD_CFG="{\"device\": \"cuda\", \"threads\": $(nproc), \"seed\": 0, \"qd_q\": 92291, \"qd_g\": 54151, \"dim\": 768, \"qd_classes\": 30, \"qd_chunk\": 4096}"
fi

declare -a NAMES RCS WALLS
stage() {  # stage NAME LIMIT_S command...
  local name="$1" limit="$2"; shift 2
  local t0 t1 rc
  t0=$(date +%s.%N)
  echo "=== $name (limit ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  tail -n 25 "$OUT/$name.log"
  NAMES+=("$name"); RCS+=("$rc"); WALLS+=("$(awk "BEGIN{print $t1-$t0}")")
}

cd "$ROOT"
stage train_teacher "$T_TEACHER" "$PY" benchmarks/bench_train.py "${TRAIN_COMMON[@]}" --methods xmodalvit_teacher \
  --out "$OUT/bench_train_teacher.json"
stage train_others "$T_OTHERS" "$PY" benchmarks/bench_train.py "${TRAIN_COMMON[@]}" \
  --methods xmodalvit_students_ti,xmodalvit_students_s,zse,crossatnet --regimes fp32_eager_explicit,bf16_sdpa \
  --out "$OUT/bench_train_others.json"
stage zse_roofline "$T_ZSE" "$PY" benchmarks/bench_zse_eval.py "${ZSE_ARGS[@]}" --out "$OUT/bench_zse_eval_roofline.json"
# only bench_metrics' QuickDraw stage (its NumPy reference of 2,000 x 20,000 is a CPU matter and takes minutes)
stage metrics_quickdraw "$T_METRICS" "$PY" benchmarks/bench_metrics.py --stage quickdraw --stage-config "$QD_CFG"
tail -n 1 "$OUT/metrics_quickdraw.log" > "$OUT/bench_metrics_quickdraw.json"

{
  echo "{"
  echo "  \"dry_run\": $([ "$DRY" = 1 ] && echo true || echo false),"
  echo "  \"date_utc\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "  \"device\": \"$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")' 2>/dev/null)\","
  echo "  \"torch\": \"$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)\","
  echo "  \"stages\": ["
  for i in "${!NAMES[@]}"; do
    sep=","; [ "$i" = $((${#NAMES[@]} - 1)) ] && sep=""
    echo "    {\"name\": \"${NAMES[$i]}\", \"rc\": ${RCS[$i]}, \"wall_s\": ${WALLS[$i]}}$sep"
  done
  echo "  ]"
  echo "}"
} > "$OUT/summary.json"
cat "$OUT/summary.json"
fail=0
for rc in "${RCS[@]}"; do [ "$rc" = 0 ] || fail=1; done
exit $fail
