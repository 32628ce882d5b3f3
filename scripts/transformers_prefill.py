#!/usr/bin/env python3
"""Prefill time of Hugging Face transformers in FP16 (SDPA attention) on the GPU, the baseline for
`fq bench --device cuda --random-weights`: random weights from a config built here (no downloads) with the
shapes of OPT-6.7B, OPT-13B or LLaMA-2-7B, a sweep of batch x sequence length, the median of N timed
prefills (torch.cuda.synchronize around each), and the peak GPU memory. Writes JSON.

    python3 scripts/transformers_prefill.py --arch opt-13b --batch 1,16 --seq 128,512 --json prefill.json

Needs torch and transformers (the GPU machine has them). Not imported by anything.
"""
import argparse
import gc
import inspect
import json
import statistics
import sys
import time

# The published configurations' shapes (config.json of facebook/opt-6.7b, facebook/opt-13b, meta-llama/Llama-2-7b-hf).
ARCHS = {
    "opt-6.7b": ("opt", dict(hidden_size=4096, ffn_dim=16384, num_hidden_layers=32, num_attention_heads=32)),
    "opt-13b": ("opt", dict(hidden_size=5120, ffn_dim=20480, num_hidden_layers=40, num_attention_heads=40)),
    "llama-2-7b": ("llama", dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                 num_attention_heads=32, num_key_value_heads=32)),
}


def build_config(arch):
    import transformers

    family, shape = ARCHS[arch]
    if family == "opt":
        return transformers.OPTConfig(vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=shape["hidden_size"],
                                      do_layer_norm_before=True, activation_function="relu", **shape)
    return transformers.LlamaConfig(vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                                    rope_theta=10000.0, hidden_act="silu", **shape)


def build_model(arch):
    import torch
    import transformers

    config = build_config(arch)
    # Built on the GPU in FP16 directly: a 13B model would need 52 GB of host memory in FP32 first.
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float16,
                                                              attn_implementation="sdpa")
    return model.eval()


def sizes(text):
    return [int(v) for v in text.split(",") if v]


def measure(model, batch, seq, runs, warmup, vocab):
    import torch

    tokens = torch.randint(0, vocab, (batch, seq), device="cuda")
    # Logits of the last position only, where the model supports it (as a generating prefill needs).
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(tokens, use_cache=True, **extra)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(runs):
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(tokens, use_cache=True, **extra)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"prefill_ms": 1e3 * median, "prefill_ms_runs": [1e3 * t for t in times],
            "tokens_per_s": batch * seq / median, "peak_device_bytes": torch.cuda.max_memory_allocated(),
            "last_logits_only": bool(extra)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="opt-13b,opt-6.7b,llama-2-7b",
                        help=f"comma-separated, of {', '.join(ARCHS)}")
    parser.add_argument("--batch", default="1,16", help="batch sizes, comma-separated")
    parser.add_argument("--seq", default="128,512", help="prompt lengths, comma-separated")
    parser.add_argument("--runs", type=int, default=5, help="timed prefills per point (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="output file (default: stdout)")
    args = parser.parse_args()
    archs = [a for a in args.arch.split(",") if a]
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        parser.error(f"unknown --arch {', '.join(unknown)} (expected: {', '.join(ARCHS)})")

    import torch
    import transformers

    if not torch.cuda.is_available():
        sys.exit("transformers_prefill.py: no CUDA device")
    results = []
    for arch in archs:
        model = build_model(arch)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        for batch in sizes(args.batch):
            for seq in sizes(args.seq):
                point = {"arch": arch, "batch": batch, "seq": seq, "weight_bytes": weight_bytes}
                try:
                    point.update(measure(model, batch, seq, args.runs, args.warmup, model.config.vocab_size))
                except torch.cuda.OutOfMemoryError:
                    point["error"] = "out of GPU memory"
                    torch.cuda.empty_cache()
                print(f"{arch} batch {batch} seq {seq}: " +
                      (f"{point['prefill_ms']:.1f} ms, peak {point['peak_device_bytes'] / 2**30:.1f} GiB"
                       if "error" not in point else point["error"]), file=sys.stderr)
                results.append(point)
        del model
        gc.collect()
        torch.cuda.empty_cache()

    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "transformers": transformers.__version__, "dtype": "float16", "attention": "sdpa",
              "runs_per_point": args.runs, "results": results}
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
