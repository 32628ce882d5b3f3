#!/usr/bin/env bash
# Fresh machine to a running model: dependencies, the default model, the build, then the main job
# (generation and a short WikiText-2 perplexity on SmolLM2-135M-Instruct).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/get-model.sh
scripts/build.sh
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
build/bin/fq info "$model"
echo
build/bin/fq generate -m "$model" --dtype bf16 -n 64 \
  -p $'<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n'
echo
build/bin/fq ppl -m "$model" --dtype bf16 -f ../shared/data/wikitext2-test.raw --ctx 512 --chunks 16
echo
# The FlattenQuant path: calibrate on LAMBADA, flatten + quantize to W8A8 (staggered), then perplexity with the
# KL-divergence from the float model, and speed against BF16.
quantized=models/SmolLM2-135M-Instruct.w8a8.fq
build/bin/fq quantize -m "$model" --calib ../shared/data/lambada_openai.jsonl --samples 16 --seq 512 \
  --recipe flatten-w8a8-stagger --weight-scale channel -o "$quantized"
build/bin/fq ppl -m "$quantized" --dtype bf16 -f ../shared/data/wikitext2-test.raw --ctx 512 --chunks 16 \
  --kl-base "$model" --kl-base-dtype bf16
build/bin/fq bench -m "$model" --dtype bf16 --prompt 512 --decode 32
build/bin/fq bench -m "$quantized" --dtype bf16 --prompt 512 --decode 32
