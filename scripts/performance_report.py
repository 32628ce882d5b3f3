#!/usr/bin/env python3
"""Writes docs/performance.md, FlattenQuant's CPU speed and memory report.

It builds nothing and never imports the product (Python 3 standard library only); it runs the built programs:
  fq quantize          the W8A8 (flatten-w8a8-stagger) and mixed W4/W8 (flatten-mixed) .fq files of --model,
                       calibrated on a few LAMBADA windows (speed does not depend on calibration quality)
  GEMM_DIR/gemm_bench  the Linear GEMMs of SmolLM2-135M and OPT-6.7B in f32, bf16 and s8 (Google Benchmark JSON)
  GEMM_DIR/small_batch_gemm_bench   the int4/int8 decode GEMV kernels against oneDNN, when it is built
  fq bench --json      prefill (batch x prompt sweep) and decode tokens/s, resident memory after loading and the
                       process peak, one process per model (ru_maxrss is per process): FP32, BF16, W8A8, mixed
  fq bench --profile   where the time of a W8A8 prefill goes
and writes the tables, ratios against BF16 and FP32, and the targets of the CPU-runtime issue, each met or
missed with the measured number. The section between the notes markers of an existing report is kept.

  python3 scripts/performance_report.py --fq build/bin/fq --bench-dir build/bench \\
      --model models/SmolLM2-135M-Instruct.Q4_1.gguf --workdir build/performance --reuse
"""
import argparse
import datetime
import json
import math
import os
import re
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_report import (NOTES_BEGIN, NOTES_END, REPO, ReportError, Runner, command_output,  # noqa: E402
                             format_duration, previous_notes)

CALIBRATION_FILE = "../shared/data/lambada_openai.jsonl"


@dataclass(frozen=True)
class Variant:
    key: str
    title: str
    recipe: str  # the fq quantize recipe; empty: the source checkpoint
    dtype: str  # compute type of the Linear layers that stay float
    flags: tuple = ()  # more fq quantize flags


VARIANTS = [
    Variant("fp32", "FP32", "", "f32"),
    Variant("bf16", "BF16", "", "bf16"),
    Variant("w8a8", "W8A8 FlattenQuant", "flatten-w8a8-stagger", "bf16"),
    Variant("w4a8", "W4A8 FlattenQuant (W8A8 head)", "flatten-w4a8", "bf16", ("--quantize-head",)),
    Variant("mixed", "W4/W8 mixed FlattenQuant", "flatten-mixed", "bf16"),
]
PROFILED = "w8a8"
# The sections QuantizedLinear times (fq bench --profile): flatten+quantize and the integer stages ("int gemm",
# "int rescale", "int gemm (rescale fused)"); together they are a quantized Linear's time.
FLATTEN_SECTION = "flatten+quantize"
INTEGER_SECTION_PREFIX = "int "

# The targets of the CPU-runtime issue, as ratios measured in one run.
TARGET_SHAPE = (1, 512)  # batch x prompt of the prefill targets
PREFILL_OVER_BF16_TARGET = 2.0  # W8A8 FlattenQuant prefill tok/s over BF16's
PREFILL_OVER_FP32_TARGET = 10.0  # ... and over FP32's
INT4_DECODE_TARGET = 1.6  # decode tok/s of the INT4-weight model (W4A8) over BF16's
MEMORY_REDUCTION_TARGET = 2.3  # BF16 peak memory / the W4/W8 model's
FLATTEN_SHARE_TARGET = 0.05  # flatten+quantize share of a quantized Linear's time in a W8A8 prefill
INT4_GEMV_REFERENCE = 1.6  # the decode GEMV kernel alone over oneDNN bf16 (information, geometric mean)


# ---------------------------------------------------------------------------------------------- measuring

def require(condition: bool, message: str) -> None:
    if not condition:
        raise ReportError(message)


def model_flags(path, variant: Variant, options) -> list:
    flags = ["-m", path, "--dtype", variant.dtype]
    if options.threads:
        flags += ["-t", options.threads]
    return flags


def quantize(runner: Runner, variant: Variant, options, work: Path):
    """The variant's .fq file and whether it was (re)built by this run."""
    fq_file = work / f"{variant.key}.fq"
    step = runner.run(f"quantize {variant.recipe}", ["quantize", "-m", options.model, "--calib", CALIBRATION_FILE,
                                                     "--samples", options.calib_samples, "--seq", options.calib_seq,
                                                     "--recipe", variant.recipe, "-o", fq_file, *variant.flags]
                      + options.extra, work / f"{variant.key}.quantize.log", (fq_file,))
    return fq_file, not step.reused


BENCH_RUN_KEYS = ("compute", "linear_kinds", "batch", "prompt", "prefill_tokens_per_second", "decode_tokens_per_second",
                  "rss_after_load_bytes", "peak_rss_bytes")


def read_bench_json(path: Path) -> dict:
    """fq bench --json, checked for the fields the report uses."""
    try:
        document = json.loads(path.read_text())
        runs = document["runs"]
        missing = [key for key in ("isa", "threads") if key not in document]
        missing += [key for run in runs for key in BENCH_RUN_KEYS if key not in run]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReportError(f"{path}: not the JSON of fq bench --json ({error!r})")
    require(not missing, f"{path}: fq bench --json lacks {', '.join(sorted(set(missing)))}")
    require(bool(runs), f"{path}: fq bench measured nothing")
    return document


def run_bench(runner: Runner, variant: Variant, model, options, work: Path, reuse: bool, profile: bool) -> dict:
    name = f"{variant.key}.profile" if profile else variant.key
    out = work / f"bench-{name}.json"
    sweep = ["--batch", "1", "--prompt", str(max(options.prompts)), "--decode", "0", "--profile"] if profile else \
        ["--batch", ",".join(map(str, options.batches)), "--prompt", ",".join(map(str, options.prompts)),
         "--decode", options.decode]
    runner.run(f"bench {variant.title}{' --profile' if profile else ''}",
               ["bench"] + model_flags(model, variant, options) + sweep + ["--repeats", options.repeats, "--json", out],
               work / f"bench-{name}.log", (out,), reuse=reuse)
    document = read_bench_json(out)
    document["stderr"] = (work / f"bench-{name}.log.stderr").read_text(errors="replace")
    return document


@dataclass
class GemmTiming:
    seconds: float  # median over the repetitions
    gops: float
    label: str


def run_google_benchmark(runner: Runner, label: str, options, work: Path, name: str, extra: list) -> dict:
    """{run name: GemmTiming} (medians of the repetitions) from a Google Benchmark program's JSON output."""
    out = work / f"{name}.json"
    runner.run(label, [f"--benchmark_repetitions={options.gemm_repetitions}", f"--benchmark_out={out}",
                       "--benchmark_out_format=json", f"--benchmark_min_time={options.gemm_min_time}"] + extra,
               work / f"{name}.log", (out,))
    try:
        entries = json.loads(out.read_text())["benchmarks"]
        runs = {}
        for entry in entries:
            if entry.get("run_type", "iteration") != "iteration":
                continue
            time_unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[entry["time_unit"]]
            runs.setdefault(entry["run_name"], []).append(
                (entry["real_time"] * time_unit, entry.get("GOPS", math.nan), entry.get("label", "")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReportError(f"{out}: not Google Benchmark JSON output ({error!r})")
    require(bool(runs), f"{out}: no benchmark ran (see {work / (name + '.log')})")
    return {run: GemmTiming(statistics.median(t for t, _, _ in samples), statistics.median(g for _, g, _ in samples),
                            samples[0][2]) for run, samples in runs.items()}


# ---------------------------------------------------------------------------------------------- the report

def mib(count: int) -> str:
    return f"{count / 2**20:,.0f}"


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}×" if reference and value == value else "—"


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def runs_by_shape(document: dict) -> dict:
    return {(run["batch"], run["prompt"]): run for run in document["runs"]}


def lscpu() -> dict:
    fields = {}
    for line in command_output(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def machine(benches: dict, options) -> list:
    cpu = lscpu()
    flags = set(cpu.get("Flags", "").split())
    features = [f for f in ("avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
                if f in flags]
    any_bench = next(iter(benches.values()))
    int8 = re.search(r"int8 GEMMs run on oneDNN (\S+)", benches[PROFILED]["stderr"]) if PROFILED in benches else None
    return [f"- **CPU**: {cpu.get('Model name', 'unknown')}, {os.cpu_count()} logical CPUs "
            f"({', '.join(features) or 'no AVX-512'}); fq ran {any_bench['threads']} threads with "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}.",
            f"- **oneDNN ISA**: {any_bench['isa']} (float GEMMs)"
            + (f"; int8 GEMMs: {int8.group(1)}" if int8 else "") + "."]


def method(options) -> list:
    recipes = ", ".join(f"`{' '.join((v.recipe,) + v.flags)}` ({v.title})" for v in VARIANTS if v.recipe)
    quantize_flags = shlex.join(["fq", "quantize", "--calib", CALIBRATION_FILE, "--samples", str(options.calib_samples),
                                 "--seq", str(options.calib_seq), "--recipe", "R"] + options.extra)
    return [
        "## Method", "",
        f"- **Model**: `{options.model}`; FP32 and BF16 load it directly (`--dtype f32` / `bf16`). {recipes} are "
        f"made by `{quantize_flags}` (a small calibration: it sets scales, not speed) and run with `--dtype bf16` "
        "for the Linears they keep float.",
        f"- **End to end**: `fq bench --batch {','.join(map(str, options.batches))} --prompt "
        f"{','.join(map(str, options.prompts))} --decode {options.decode} --repeats {options.repeats}` on random "
        "tokens, one process per model. Prefill: tokens/s of the whole prompt batch (best of the runs); decode: "
        f"{options.decode} single-token steps after it, batch × steps / time. Memory: the resident set after loading "
        "(/proc/self/statm) and the process peak (getrusage ru_maxrss) at the end of the process.",
        f"- **Profile**: `fq bench --profile` on {next(v.title for v in VARIANTS if v.key == PROFILED)} at batch 1 × "
        f"prompt {max(options.prompts)}: wall time of each timed section, mean per prefill.",
        f"- **GEMMs**: `gemm_bench --benchmark_repetitions={options.gemm_repetitions} "
        f"--benchmark_min_time={options.gemm_min_time}`, median of the repetitions; GOPS = 2·M·N·K / time. f32 and "
        "bf16 run cpu::LinearMatmul (bf16 includes converting x), s8 runs cpu::Int8Matmul on int8 codes with the "
        "static rescale fused (f32 out), as a W8A8 Linear does after flatten+quantize.",
        "- Timings on a shared 2-core machine are noisy; compare ratios within one report.", ""]


def end_to_end_table(benches: dict, options) -> list:
    base = {key: runs_by_shape(benches[key]) for key in ("fp32", "bf16") if key in benches}
    lines = ["## End to end", "",
             "| model | Linear kinds | batch × prompt | prefill tok/s | vs BF16 | vs FP32 | decode tok/s | vs BF16 | "
             "vs FP32 |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for variant in VARIANTS:
        if variant.key not in benches:
            continue
        for (batch, prompt), run in runs_by_shape(benches[variant.key]).items():
            cells = [variant.title, run["linear_kinds"], f"{batch} × {prompt}"]
            for metric in ("prefill_tokens_per_second", "decode_tokens_per_second"):
                value = run[metric]
                cells.append(f"{value:,.1f}" if value is not None else "—")
                for key in ("bf16", "fp32"):
                    reference = base.get(key, {}).get((batch, prompt), {}).get(metric)
                    cells.append(ratio(value, reference) if value is not None and reference else "—")
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def memory_table(benches: dict) -> list:
    lines = ["## Memory", "",
             "| model | RSS after load (MiB) | ÷ BF16's | ÷ FP32's | peak RSS (MiB) |", "|---|---:|---:|---:|---:|"]
    resident = {key: document["runs"][0]["rss_after_load_bytes"] for key, document in benches.items()}
    for variant in VARIANTS:
        if variant.key not in benches:
            continue
        peak = max(run["peak_rss_bytes"] for run in benches[variant.key]["runs"])
        lines.append(f"| {variant.title} | {mib(resident[variant.key])} | "
                     f"{ratio(resident[variant.key], resident.get('bf16'))} | "
                     f"{ratio(resident[variant.key], resident.get('fp32'))} | {mib(peak)} |")
    return lines + ["", "The peak is the largest of the process: loading plus the KV cache and activations of the "
                        "largest batch × prompt.", ""]


def profile_table(document: dict) -> list:
    run = document["runs"][0]
    profile = run.get("profile")
    require(profile is not None, "fq bench --profile wrote no profile to its JSON")
    total = profile["prefill_seconds"]
    lines = [f"## Where a {next(v.title for v in VARIANTS if v.key == PROFILED)} prefill goes", "",
             f"Batch {run['batch']} × prompt {run['prompt']}: {1e3 * total:.1f} ms per prefill.", "",
             "| section | ms per prefill | share | calls |", "|---|---:|---:|---:|"]
    timed = 0.0
    for section in profile["sections"]:
        timed += section["seconds"]
        lines.append(f"| {section['name']} | {1e3 * section['seconds']:.2f} | {100 * section['share']:.1f}% | "
                     f"{section['calls']} |")
    lines.append(f"| (outside the sections) | {1e3 * (total - timed):.2f} | {100 * (total - timed) / total:.1f}% | |")
    return lines + [""]


GEMM_NAME = re.compile(r"^(f32|bf16|s8)/([^/]+)/([^/]+)/M:(\d+)/real_time$")


def gemm_table(timings: dict) -> list:
    rows = {}
    for name, timing in timings.items():
        found = GEMM_NAME.match(name)
        if found:
            dtype, model, layers, m = found.groups()
            rows.setdefault((model, layers, timing.label, int(m)), {})[dtype] = timing
    require(bool(rows), "gemm_bench: no result named TYPE/MODEL/LAYERS/M:ROWS (did its names change?)")
    lines = ["## GEMMs", "",
             "GOPS (median); the ratios compare the same shape.", "",
             "| model | layers | shape | M | f32 | bf16 | s8 | s8 / bf16 | s8 / f32 | bf16 / f32 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (model, layers, label, m), by_type in rows.items():
        gops = {t: by_type[t].gops if t in by_type else math.nan for t in ("f32", "bf16", "s8")}
        cells = [model, layers, label.replace("N=", "N ").replace(" K=", ", K "), str(m)]
        cells += [f"{gops[t]:.1f}" if gops[t] == gops[t] else "—" for t in ("f32", "bf16", "s8")]
        cells += [ratio(gops["s8"], gops["bf16"]), ratio(gops["s8"], gops["f32"]), ratio(gops["bf16"], gops["f32"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


SMALL_BATCH_NAME = re.compile(r"^(SmallBatchInt4|OnednnBf16)/rows:(\d+)/N:(\d+)/K:(\d+)/real_time$")


def int4_gemv_speedups(timings: dict) -> dict:
    """{(rows, N, K): oneDNN bf16 time / int4 kernel time}."""
    times = {}
    for name, timing in timings.items():
        found = SMALL_BATCH_NAME.match(name)
        if found:
            kernel, rows, n, k = found.groups()
            times.setdefault((int(rows), int(n), int(k)), {})[kernel] = timing.seconds
    return {shape: t["OnednnBf16"] / t["SmallBatchInt4"] for shape, t in times.items()
            if "OnednnBf16" in t and "SmallBatchInt4" in t}


def geometric_mean(values: list) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def run_at(benches: dict, key: str, shape: tuple):
    return runs_by_shape(benches[key]).get(shape) if key in benches else None


def targets(benches: dict, small_batch: dict) -> list:
    lines = ["## Targets", "",
             "Computed by the script from the measurements above; the targets are those of the CPU-runtime issue, "
             "each a ratio within this one run.", ""]
    shape = f"{TARGET_SHAPE[0]} × {TARGET_SHAPE[1]}"

    w8a8, bf16, fp32 = (run_at(benches, key, TARGET_SHAPE) for key in ("w8a8", "bf16", "fp32"))
    if w8a8 and bf16 and fp32:
        over_bf16 = w8a8["prefill_tokens_per_second"] / bf16["prefill_tokens_per_second"]
        over_fp32 = w8a8["prefill_tokens_per_second"] / fp32["prefill_tokens_per_second"]
        lines.append(f"- W8A8 FlattenQuant prefill ({shape}) at least {PREFILL_OVER_BF16_TARGET:g}× BF16: "
                     f"{verdict(over_bf16 >= PREFILL_OVER_BF16_TARGET)}: {over_bf16:.2f}×.")
        lines.append(f"- W8A8 FlattenQuant prefill ({shape}) at least {PREFILL_OVER_FP32_TARGET:g}× FP32: "
                     f"{verdict(over_fp32 >= PREFILL_OVER_FP32_TARGET)}: {over_fp32:.2f}×.")
    else:
        lines.append(f"- Prefill targets: not checked (needs the FP32, BF16 and W8A8 runs at {shape}).")

    w4a8 = run_at(benches, "w4a8", TARGET_SHAPE)
    if w4a8 and bf16 and bf16["decode_tokens_per_second"] > 0:
        ratio = w4a8["decode_tokens_per_second"] / bf16["decode_tokens_per_second"]
        lines.append(f"- Decode with INT4 weights (W4A8) at least {INT4_DECODE_TARGET:g}× BF16 decode: "
                     f"{verdict(ratio >= INT4_DECODE_TARGET)}: {ratio:.2f}× ({w4a8['decode_tokens_per_second']:.1f} "
                     f"vs {bf16['decode_tokens_per_second']:.1f} tok/s).")
    else:
        lines.append("- INT4 decode target: not checked (needs the BF16 and W4A8 runs with decode steps).")

    profile = benches.get(f"{PROFILED}.profile", {}).get("runs", [{}])[0].get("profile")
    sections = {s["name"]: s["seconds"] for s in profile["sections"]} if profile else {}
    integer = [name for name in sections if name.startswith(INTEGER_SECTION_PREFIX)]
    target = f"flatten+quantize at most {100 * FLATTEN_SHARE_TARGET:g}% of a quantized Linear's time (W8A8 prefill)"
    if FLATTEN_SECTION not in sections or not integer:
        lines.append(f"- {target}: not checked (the profile lacks the section {FLATTEN_SECTION} or "
                     f"'{INTEGER_SECTION_PREFIX}...').")
    else:
        linear = sections[FLATTEN_SECTION] + sum(sections[name] for name in integer)
        share = sections[FLATTEN_SECTION] / linear
        lines.append(f"- {target}: {verdict(share <= FLATTEN_SHARE_TARGET)}: {100 * share:.1f}% "
                     f"({1e3 * sections[FLATTEN_SECTION]:.2f} of {1e3 * linear:.2f} ms per prefill in "
                     f"{', '.join([FLATTEN_SECTION] + integer)}).")

    for key in ("mixed", "w4a8"):
        if "bf16" in benches and key in benches:
            title = next(v.title for v in VARIANTS if v.key == key)
            peak = {k: max(run["peak_rss_bytes"] for run in benches[k]["runs"]) for k in ("bf16", key)}
            loaded = {k: benches[k]["runs"][0]["rss_after_load_bytes"] for k in ("bf16", key)}
            ratio = peak["bf16"] / peak[key]
            lines.append(f"- Peak memory of the {title} model at most 1/{MEMORY_REDUCTION_TARGET:g} of BF16's: "
                         f"{verdict(ratio >= MEMORY_REDUCTION_TARGET)}: {ratio:.2f}× less ({mib(peak[key])} vs "
                         f"{mib(peak['bf16'])} MiB peak; after loading {mib(loaded[key])} vs {mib(loaded['bf16'])} "
                         f"MiB, {loaded['bf16'] / loaded[key]:.2f}× less).")

    if small_batch:
        mean = geometric_mean(list(small_batch.values()))
        low, high = min(small_batch, key=small_batch.get), max(small_batch, key=small_batch.get)
        lines.append(f"- For information, the int4 decode GEMV kernel alone against oneDNN bf16 (reference "
                     f"{INT4_GEMV_REFERENCE:g}×): {mean:.2f}× geometric mean over {len(small_batch)} shapes, from "
                     f"{small_batch[low]:.2f}× (rows {low[0]}, {low[1]}×{low[2]}) to {small_batch[high]:.2f}× "
                     f"(rows {high[0]}, {high[1]}×{high[2]}).")
    return lines + [""]


def provenance(fq: Path) -> list:
    commit = command_output(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    if command_output(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += " with uncommitted changes"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    invocation = shlex.join(["python3", os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])
    return [f"Generated {now} by `scripts/performance_report.py` from commit `{commit}` with "
            f"{command_output([str(fq), '--version']) or 'fq'}.", "", f"Command: `{invocation}`", ""]


def write_report(out: Path, fq: Path, options, benches: dict, gemms: dict, small_batch: dict) -> None:
    lines = ["# FlattenQuant CPU performance", "",
             "<!-- Generated by scripts/performance_report.py: everything outside the notes markers is overwritten. -->",
             "", *provenance(fq), *machine(benches, options), "", *method(options),
             *targets(benches, small_batch), *end_to_end_table(benches, options), *memory_table(benches)]
    if f"{PROFILED}.profile" in benches:
        lines += profile_table(benches[f"{PROFILED}.profile"])
    lines += gemm_table(gemms)
    lines += ["## Notes", "", NOTES_BEGIN, previous_notes(out), NOTES_END, ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text("\n".join(lines))
    temporary.replace(out)


# ---------------------------------------------------------------------------------------------- main

def positive_list(text: str) -> list:
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of positive integers")
    return values


def parse_options(argv: list):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fq", type=Path, default=Path("build/bin/fq"), help="the fq binary (default %(default)s)")
    parser.add_argument("--bench-dir", type=Path, default=Path("build/bench"),
                        help="where gemm_bench (and small_batch_gemm_bench) are (default %(default)s)")
    parser.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf",
                        help="the float model to measure and quantize (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("build/performance"),
                        help=".fq files, JSON results and raw logs (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"), help="report (default %(default)s)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse steps an earlier run finished in --workdir with the same command (resume)")
    parser.add_argument("--batches", type=positive_list, default=[1, 4], help="prefill batch sweep (default 1,4)")
    parser.add_argument("--prompts", type=positive_list, default=[128, 512], help="prompt sweep (default 128,512)")
    parser.add_argument("--decode", type=int, default=32, help="decode steps (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed fq bench runs, best kept (default %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="fq worker threads (default: all cores)")
    parser.add_argument("--calib-samples", type=int, default=8, help="calibration windows (default %(default)s)")
    parser.add_argument("--calib-seq", type=int, default=128, help="tokens per calibration window (default %(default)s)")
    parser.add_argument("--extra", type=shlex.split, default=["--weight-scale", "channel"],
                        help='arguments added to every fq quantize (default "--weight-scale channel", as in '
                             "docs/accuracy.md)")
    parser.add_argument("--gemm-repetitions", type=int, default=3, help="GEMM bench repetitions (default %(default)s)")
    parser.add_argument("--gemm-min-time", type=float, default=0.1,
                        help="GEMM bench seconds per repetition at least (default %(default)s)")
    parser.add_argument("--gemm-filter", default="", help="regex of the GEMM benchmarks to run (default: all)")
    options = parser.parse_args(argv)
    for name in ("decode", "repeats", "calib_samples", "calib_seq", "gemm_repetitions"):
        if getattr(options, name) < (0 if name == "decode" else 1):
            parser.error(f"--{name.replace('_', '-')} is too small")
    return options


def main(argv: list) -> int:
    options = parse_options(argv)
    os.chdir(REPO)  # every path in the commands and the report is relative to the repository root
    # OMP_WAIT_POLICY is left as the caller has it (unset: OpenMP's default, what users get). Decode makes ~200
    # small GEMM calls per token, so how fast idle workers wake changes its speed severalfold; the report says
    # which policy ran.
    fq, bench_dir = options.fq.resolve(), options.bench_dir.resolve()
    out, workdir = options.out.resolve(), options.workdir.resolve()
    gemm_bench, small_batch_bench = bench_dir / "gemm_bench", bench_dir / "small_batch_gemm_bench"
    missing = [str(p) for p in (fq, gemm_bench, Path(options.model), Path(CALIBRATION_FILE)) if not p.exists()]
    if missing:
        print(f"error: missing {', '.join(missing)} (build fq and the benchmarks, and run scripts/get-model.sh)",
              file=sys.stderr)
        return 2
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runner = Runner(fq, options.reuse)
    try:
        benches = {}
        for index, variant in enumerate(VARIANTS, 1):
            print(f"[{index}/{len(VARIANTS)}] {variant.title}", flush=True)
            model, rebuilt = (quantize(runner, variant, options, workdir) if variant.recipe
                              else (options.model, False))
            benches[variant.key] = run_bench(runner, variant, model, options, workdir, not rebuilt, profile=False)
            if variant.key == PROFILED:
                benches[f"{variant.key}.profile"] = run_bench(runner, variant, model, options, workdir, not rebuilt,
                                                              profile=True)
        print("[GEMMs]", flush=True)
        filter_flag = [f"--benchmark_filter={options.gemm_filter}"] if options.gemm_filter else []
        gemms = run_google_benchmark(Runner(gemm_bench, options.reuse), "gemm_bench", options, workdir, "gemm",
                                     filter_flag)
        small_batch = {}
        if small_batch_bench.exists():
            small_batch = int4_gemv_speedups(run_google_benchmark(
                Runner(small_batch_bench, options.reuse), "small_batch_gemm_bench", options, workdir, "small_batch",
                ["--benchmark_filter=SmallBatchInt4|OnednnBf16"]))
        write_report(out, fq, options, benches, gemms, small_batch)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out} in {format_duration(time.monotonic() - started)} (raw logs and results in {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
