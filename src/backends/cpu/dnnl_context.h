// The process-wide oneDNN CPU engine and stream.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <unordered_map>

namespace fq::cpu {

dnnl::engine& engine();
dnnl::stream& stream();
// oneDNN keeps a scratchpad per primitive unless told otherwise: with a primitive per layer and per
// row count that reached GBs at prefill sizes. Ours ask for a user scratchpad (user_scratchpad()) and
// all execute on one shared, growing buffer (scratchpad()), valid until the next call; calls run one at
// a time on the stream.
dnnl::primitive_attr user_scratchpad(dnnl::primitive_attr attr = {});
dnnl::memory scratchpad(const dnnl::memory::desc& desc);
// Executes `primitive` (made with user_scratchpad()) on the stream with the shared scratchpad, and waits.
void execute(const dnnl::primitive& primitive, std::unordered_map<int, dnnl::memory> args);

// The instruction set oneDNN dispatches to here, e.g. "avx512_core_amx" (for log lines).
const char* isa_name();

}  // namespace fq::cpu
