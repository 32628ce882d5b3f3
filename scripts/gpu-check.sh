#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in one call: build (Release, FQ_CUDA=ON), the Gpu* test suites (which
# must run, not skip), the GEMM benchmark (cuBLASLt f16/s8/e4m3 against int_gemm_rescale), and fq bench on a
# random-weight OPT-13B (batch 16 x prompt 512) in the fp16, w8a8, mixed and fp8 formats with a section
# profile; then a summary.
#
#   scripts/gpu-check.sh [build] [tests] [gemm] [fq]     (default: all four, in this order)
#
# Results go to $OUT when it is set (the device machine's output folder), else to $FQ_GPU_BUILD/results.
# Settings: FQ_GPU_BUILD (build folder, default build-gpu), FQ_GEMM_MIN_TIME (seconds per GEMM benchmark,
# default 0.05), FQ_BENCH_ARCH (default opt-13b), FQ_BENCH_FORMATS (default "fp16 w8a8 mixed fp8").
set -euo pipefail
cd "$(dirname "$0")/.."

build=${FQ_GPU_BUILD:-build-gpu}
out=${OUT:-$build/results}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(build tests gemm fq)
mkdir -p "$out"
summary=()

wants() {
  local step
  for step in "${steps[@]}"; do [ "$step" = "$1" ] && return 0; done
  return 1
}

echo "== GPU"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

if wants build; then
  echo "== build ($build)"
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  [ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFQ_CUDA=ON
  start=$SECONDS
  if ! cmake --build "$build" -j16 >"$out/build.log" 2>&1; then
    tail -n 60 "$out/build.log"
    echo "gpu-check: the build failed (the whole log: $out/build.log)"
    exit 1
  fi
  warnings=$(grep -c "warning" "$out/build.log" || true)
  summary+=("build: $((SECONDS - start)) s, $warnings warning lines")
fi

if wants tests; then
  echo "== Gpu* tests"
  status=0
  "$build/tests/fq_tests" --gtest_filter='Gpu*' --gtest_output="json:$out/gpu_tests.json" 2>&1 |
    tee "$out/gpu_tests.log" || status=$?
  # A suite that found no GPU skips every test with "no CUDA device": here that is a failure.
  if grep -q "no CUDA device" "$out/gpu_tests.log"; then
    echo "gpu-check: the Gpu* tests skipped for want of a GPU"
    exit 1
  fi
  passed=$(grep -oE '\[  PASSED  \] [0-9]+' "$out/gpu_tests.log" | grep -oE '[0-9]+$' || echo 0)
  skipped=$(grep -oE '\[  SKIPPED \] [0-9]+' "$out/gpu_tests.log" | grep -oE '[0-9]+$' || echo 0)
  [ "$passed" -gt 0 ] || status=1
  summary+=("Gpu* tests: $passed passed, $skipped skipped, exit status $status")
  [ "$status" -eq 0 ] || { printf '%s\n' "${summary[@]}"; echo "gpu-check: Gpu* tests failed"; exit 1; }
fi

if wants gemm; then
  echo "== cuda_gemm_bench"
  "$build/bench/cuda_gemm_bench" --benchmark_format=json --benchmark_min_time="${FQ_GEMM_MIN_TIME:-0.05}" \
    >"$out/cuda_gemm_bench.json"
  summary+=("GEMM benchmark: $out/cuda_gemm_bench.json")
fi

if wants fq; then
  # --profile adds one prefill with every section drained: the flatten+quantize share comes from it.
  for format in ${FQ_BENCH_FORMATS:-fp16 w8a8 mixed fp8}; do
    echo "== fq bench $format"
    "$build/bin/fq" bench --device cuda --random-weights --arch "${FQ_BENCH_ARCH:-opt-13b}" --formats "$format" \
      --batch 16 --prompt 512 --decode 16 --profile --json "$out/fq_bench_$format.json"
  done
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
python3 - "$out" <<'EOF'
# TOPS per GEMM shape (kernels side by side) and the fq bench runs, from the JSON files of this run.
import json, pathlib, sys
from collections import defaultdict

out = pathlib.Path(sys.argv[1])
gemm = out / "cuda_gemm_bench.json"
if gemm.exists():
    table = defaultdict(dict)
    kernels = []
    for b in json.loads(gemm.read_text())["benchmarks"]:
        kernel, shape = b["name"].split("/", 1)
        if kernel not in kernels:
            kernels.append(kernel)
        table[shape][kernel] = f'{b["TOPS"]:.0f}' if "TOPS" in b else "skip"
    print(f'{"TOPS":34}' + "".join(f"{k:>18}" for k in kernels))
    for shape, row in table.items():
        print(f"{shape:34}" + "".join(f'{row.get(k, "-"):>18}' for k in kernels))
for path in sorted(out.glob("fq_bench_*.json")):
    report = json.loads(path.read_text())
    for run in report["runs"]:
        quantize = sum(s["ms"] for s in run.get("sections", []) if s["name"] == "flatten+quantize")
        share = f', flatten+quantize {100 * quantize / run["profiled_prefill_ms"]:.1f}% of the profiled prefill' \
            if run.get("profiled_prefill_ms") else ""
        print(f'fq bench {run["model"]} {run["format"]:6} batch {run["batch"]} prompt {run["prompt"]}: '
              f'prefill {run["prefill_ms"]:.1f} ms, decode {run["decode_ms_per_token"]:.2f} ms/token, '
              f'weights {run["weight_bytes"] / 2**30:.2f} GiB, peak {run["peak_device_bytes"] / 2**30:.1f} GiB'
              f'{share} on {report["device"]}')
EOF
