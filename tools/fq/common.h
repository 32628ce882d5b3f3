// What the fq subcommands share: the model flags and loading a model with its tokenizer.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "fq/checkpoint.h"
#include "fq/eval.h"
#include "fq/model.h"
#include "fq/tokenizer.h"

namespace fq::cli {

struct ModelOptions {
  std::string path;
  std::string tokenizer;
  std::string dtype = "f32";
  int threads = 0;

  // Adds -m/--model (required unless `model_required` is false), --tokenizer, --dtype and --threads to `command`.
  void add_to(CLI::App& command, bool model_required = true);
};

struct LoadedModel {
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;  // null when the checkpoint has none
  std::string format;
};

// Loads the checkpoint and builds the model; `need_tokenizer` makes a missing tokenizer an error.
LoadedModel load_model(const ModelOptions& options, bool need_tokenizer);

// Adds --device cpu|cuda|cuda-emulated (default cpu) to `command`.
void add_device_option(CLI::App& command, std::string& device);

// A model on `device` as what the evaluations read: the CPU Model itself, or its copy on the GPU (kept
// alive by the returned source; the device's name goes to stderr).
LogitsSource on_device(const Model& model, const std::string& device);

// Registration of each subcommand on the root app.
void add_info_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_ppl_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_eval_command(CLI::App& app);

}  // namespace fq::cli
