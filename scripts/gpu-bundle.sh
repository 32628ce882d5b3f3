#!/usr/bin/env bash
# Builds the CUDA binaries here and packs them for the GPU machine, which has nvcc but not this project's
# Debian libraries (oneDNN, fmt, utf8proc, ...): fq, fq_tests and cuda_gemm_bench, the shared libraries they
# need beyond glibc, libstdc++ and CUDA's own cuBLAS, stories260K with WikiText-2 and .fq recipes of it made
# here on the CPU. The result, .gpu-bundle/fq-gpu.tar.xz (git-ignored), travels with the device tool's
# `carry`; scripts/gpu-check.sh unpacks it there instead of building.
#
#   scripts/gpu-bundle.sh          (FQ_GPU_BUILD: build folder, default build-gpu)
#
# Binaries built here (glibc 2.36, nvcc 13.0) run on the GPU machine's newer glibc and 580 driver.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${FQ_GPU_BUILD:-build-gpu}
shared=${FQ_SHARED:-../shared}
bundle=.gpu-bundle
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DFQ_CUDA=ON
{ grep -q '^CMAKE_CUDA_COMPILER:[A-Z]*=/' "$build/CMakeCache.txt" && ! grep -q '^FQ_CUDA:STRING=OFF' "$build/CMakeCache.txt"; } ||
  { echo "gpu-bundle: $build was configured without CUDA (needs nvcc and -DFQ_CUDA=ON)"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target fq_cli fq_tests cuda_gemm_bench

mkdir -p "$stage/bin" "$stage/lib" "$stage/data"
cp "$build/bin/fq" "$build/tests/fq_tests" "$build/bench/cuda_gemm_bench" "$stage/bin/"
strip --strip-unneeded "$stage"/bin/*

# Every library the binaries load except the C runtime, the C++ runtime (older here than anywhere the GPU
# machine could be) and the driver and cuBLAS, which come with the GPU machine's CUDA.
system='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|libcuda|libcublas|libcublasLt)\.so'
ldd "$stage"/bin/* | awk '/=> \// {print $1, $3}' | sort -u | while read -r name path; do
  [[ $name =~ $system ]] || cp -L "$path" "$stage/lib/$name"
done

# The real model for `fq ppl --device cuda` against the CPU, and recipes of it quantized here.
model="$shared/models/stories260K"
cp "$model/stories260K.bin" "$model/tok512.bin" "$shared/data/wikitext2-test.raw" "$stage/data/"
for recipe in flatten-w8a8-stagger flatten-w4a8 flatten-mixed pertoken-w8a8; do
  "$build/bin/fq" quantize -m "$model/stories260K.bin" --tokenizer "$model/tok512.bin" \
    --calib "$shared/data/lambada_openai.jsonl" --recipe "$recipe" -o "$stage/data/stories260K.$recipe.fq" \
    >/dev/null 2>&1 || { echo "gpu-bundle: fq quantize --recipe $recipe failed"; exit 1; }
done

git rev-parse HEAD >"$stage/commit.txt"
mkdir -p "$bundle"
tar -C "$stage" -cJf "$bundle/fq-gpu.tar.xz" .
echo "gpu-bundle: $bundle/fq-gpu.tar.xz, $(du -h "$bundle/fq-gpu.tar.xz" | cut -f1), commit $(cat "$stage/commit.txt")"
echo "run it there with: scripts/gpu-check.sh (carry: [\"$bundle\"])"
