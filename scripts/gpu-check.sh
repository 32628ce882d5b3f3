#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in one call: the binaries (built there, or unpacked from the bundle that
# scripts/gpu-bundle.sh makes here), the Gpu* test suites (which must run, not skip), the GEMM benchmark
# (cuBLASLt f16/s8/e4m3 against int_gemm_rescale), fq bench on a random-weight OPT-13B (batch 16 x prompt
# 512) in the fp16, w8a8, mixed and fp8 formats with a section profile, fq ppl of stories260K on the GPU
# against the CPU, and transformers' FP16 prefill on the same shapes; then a summary.
#
#   scripts/gpu-check.sh [build] [tests] [gemm] [fq] [ppl] [transformers]   (default: all, in this order)
#
# With .gpu-bundle/fq-gpu.tar.xz present (carry it with the device tool), "build" unpacks it instead of
# compiling: the GPU machine has nvcc but not this project's Debian libraries.
# Results go to $OUT when it is set (the device machine's output folder), else to $FQ_GPU_BUILD/results.
# Settings: FQ_GPU_BUILD (build folder, default build-gpu), FQ_GEMM_MIN_TIME (seconds per GEMM benchmark,
# default 0.05), FQ_BENCH_ARCH (default opt-13b), FQ_BENCH_FORMATS (default "fp16 w8a8 mixed fp8"),
# FQ_PPL_DEVICE (the ppl step's device, default cuda; cuda-emulated tries the step on a machine without GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${FQ_GPU_BUILD:-build-gpu}
bundle=.gpu-bundle/fq-gpu.tar.xz
out=${OUT:-$build/results}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(build tests gemm fq ppl transformers)
mkdir -p "$out"
summary=()

wants() {
  local step
  for step in "${steps[@]}"; do [ "$step" = "$1" ] && return 0; done
  return 1
}

echo "== GPU"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt" ||
  echo "(nvidia-smi failed)"

# Where cuBLAS lives on this machine: the CUDA toolkit or the pip wheels next to PyTorch.
cuda_library_dirs() {
  local found
  found=$( { ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib 2>/dev/null
             python3 -c 'import nvidia, os; [print(os.path.join(p, d, "lib")) for p in nvidia.__path__ for d in os.listdir(p)]' 2>/dev/null
           } | while read -r dir; do [ -e "$dir/libcublasLt.so.13" ] && echo "$dir"; done | paste -sd:)
  echo "$found"
}

if [ -f "$bundle" ]; then
  fq_bin=$build/bundle/bin/fq tests_bin=$build/bundle/bin/fq_tests gemm_bin=$build/bundle/bin/cuda_gemm_bench
  data=$build/bundle/data
else
  fq_bin=$build/bin/fq tests_bin=$build/tests/fq_tests gemm_bin=$build/bench/cuda_gemm_bench
  data=../shared
fi

if wants build; then
  start=$SECONDS
  if [ -f "$bundle" ]; then
    echo "== unpack $bundle"
    rm -rf "$build/bundle" && mkdir -p "$build/bundle"
    tar -C "$build/bundle" -xJf "$bundle"
    summary+=("binaries: unpacked from $bundle (built at commit $(cat "$build/bundle/commit.txt"))")
  else
    echo "== build ($build)"
    generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    [ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFQ_CUDA=ON
    if ! cmake --build "$build" -j16 >"$out/build.log" 2>&1; then
      tail -n 60 "$out/build.log"
      echo "gpu-check: the build failed (the whole log: $out/build.log)"
      exit 1
    fi
    summary+=("build: $((SECONDS - start)) s, $(grep -c "warning" "$out/build.log" || true) warning lines")
  fi
fi
if [ -f "$bundle" ]; then
  export LD_LIBRARY_PATH=$PWD/$build/bundle/lib:$(cuda_library_dirs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  if ldd "$fq_bin" | grep "not found"; then
    echo "gpu-check: libraries missing for $fq_bin (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
    exit 1
  fi
fi

if wants tests; then
  echo "== Gpu* tests"
  status=0
  # The model fixtures from this checkout, wherever the binaries were built.
  export FQ_FIXTURES_DIR=$PWD/tests/fixtures
  # GpuCli* are the CLI's emulated-device tests, which need ../shared; the CUDA suites are Gpu<Suite>.
  "$tests_bin" --gtest_filter='Gpu*:-GpuCli*' --gtest_output="json:$out/gpu_tests.json" 2>&1 |
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
  "$gemm_bin" --benchmark_format=json --benchmark_min_time="${FQ_GEMM_MIN_TIME:-0.05}" \
    >"$out/cuda_gemm_bench.json"
  summary+=("GEMM benchmark: $out/cuda_gemm_bench.json")
fi

if wants fq; then
  # --profile adds one prefill with every section drained: the flatten+quantize share comes from it.
  for format in ${FQ_BENCH_FORMATS:-fp16 w8a8 mixed fp8}; do
    echo "== fq bench $format"
    FQ_CUDA_TUNE=verbose "$fq_bin" bench --device cuda --random-weights --arch "${FQ_BENCH_ARCH:-opt-13b}" --formats "$format" \
      --batch 16 --prompt 512 --decode 16 --profile --json "$out/fq_bench_$format.json"
  done
fi

if wants ppl; then
  # The real model on the GPU against the CPU: float and each recipe, 40 windows of 128 tokens.
  if [ -f "$bundle" ]; then model=$data/stories260K.bin tokenizer=$data/tok512.bin text=$data/wikitext2-test.raw
  else model=$data/models/stories260K/stories260K.bin tokenizer=$data/models/stories260K/tok512.bin
       text=$data/data/wikitext2-test.raw; fi
  for path in "$model" "$data"/stories260K.*.fq; do
    [ -f "$path" ] || continue
    for device in cpu "${FQ_PPL_DEVICE:-cuda}"; do
      echo "== fq ppl $(basename "$path") --device $device"
      "$fq_bin" ppl -m "$path" --tokenizer "$tokenizer" -f "$text" --ctx 128 --chunks 40 --device "$device" |
        tee "$out/ppl_$(basename "$path")_$device.txt"
    done
    cpu=$(grep -oE '^perplexity [0-9.]+' "$out/ppl_$(basename "$path")_cpu.txt" | cut -d' ' -f2)
    gpu=$(grep -oE '^perplexity [0-9.]+' "$out/ppl_$(basename "$path")_${FQ_PPL_DEVICE:-cuda}.txt" | cut -d' ' -f2)
    summary+=("fq ppl $(basename "$path"): cpu $cpu, ${FQ_PPL_DEVICE:-cuda} $gpu ($(python3 -c "print(f'{100 * ($gpu / $cpu - 1):+.2f}%')"))")
  done
fi

if wants transformers; then
  echo "== transformers FP16 prefill"
  python3 scripts/transformers_prefill.py --arch "${FQ_BENCH_ARCH:-opt-13b}" --batch 16 --seq 512 \
    --json "$out/transformers_prefill.json"
  summary+=("transformers: $out/transformers_prefill.json")
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
        quantize = sum(s["ms"] for s in run.get("sections", []) if s["name"].endswith("flatten+quantize"))
        share = f', flatten+quantize (with the norms and gated activations fused into it) {100 * quantize / run["profiled_prefill_ms"]:.1f}% of the profiled prefill' \
            if run.get("profiled_prefill_ms") else ""
        print(f'fq bench {run["model"]} {run["format"]:6} batch {run["batch"]} prompt {run["prompt"]}: '
              f'prefill {run["prefill_ms"]:.1f} ms, decode {run["decode_ms_per_token"]:.2f} ms/token, '
              f'weights {run["weight_bytes"] / 2**30:.2f} GiB, peak {run["peak_device_bytes"] / 2**30:.1f} GiB'
              f'{share} on {report["device"]}')
baseline = out / "transformers_prefill.json"
if baseline.exists():
    report = json.loads(baseline.read_text())
    for point in report["results"]:
        print(f'transformers FP16 {point["arch"]} batch {point["batch"]} prompt {point["seq"]}: ' +
              (f'prefill {point["prefill_ms"]:.1f} ms, peak {point["peak_device_bytes"] / 2**30:.1f} GiB'
               if "error" not in point else point["error"]) + f' on {report["device"]}')
EOF
