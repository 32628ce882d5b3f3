#include "backends/cpu/dnnl_context.h"

#include <cstdint>
#include <vector>

namespace fq::cpu {

dnnl::engine& engine() {
  static dnnl::engine instance(dnnl::engine::kind::cpu, 0);
  return instance;
}

dnnl::stream& stream() {
  static dnnl::stream instance(engine());
  return instance;
}

dnnl::primitive_attr user_scratchpad(dnnl::primitive_attr attr) {
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::memory scratchpad(const dnnl::memory::desc& desc) {
  static std::vector<uint8_t> buffer;
  constexpr size_t alignment = 64;
  const size_t bytes = desc.get_size() + alignment;
  if (buffer.size() < bytes) buffer.resize(bytes);
  auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return dnnl::memory(desc, engine(), reinterpret_cast<void*>((address + alignment - 1) / alignment * alignment));
}

void execute(const dnnl::primitive& primitive, std::unordered_map<int, dnnl::memory> args) {
  const dnnl_memory_desc_t* queried =
      dnnl_primitive_desc_query_md(primitive.get_primitive_desc(), dnnl_query_scratchpad_md, 0);
  if (queried != nullptr) {
    const dnnl::memory::desc desc(*queried);
    if (desc.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, scratchpad(desc));
  }
  primitive.execute(stream(), args);
  stream().wait();
}

const char* isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::sse41: return "sse41";
    default: return "other";
  }
}

}  // namespace fq::cpu
