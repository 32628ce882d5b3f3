// The emulator's fiber switch (emulator.h), x86-64 System V: push the callee-saved registers and the
// MXCSR/x87 control words on the current stack, save its pointer, load the other fiber's, pop the same.
// A fresh fiber's stack (fresh_stack) "returns" into fq_emulator_fiber_start, which calls the C++ entry with
// the stack aligned as at a call.
#include "backends/cuda/emulator.h"

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

asm(R"(
  .text
  .globl fq_emulator_switch
  .type fq_emulator_switch, @function
fq_emulator_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fq_emulator_switch, .-fq_emulator_switch

  .globl fq_emulator_fiber_start
  .type fq_emulator_fiber_start, @function
fq_emulator_fiber_start:
  andq $-16, %rsp
  call fq_emulator_fiber_main
  ud2
  .size fq_emulator_fiber_start, .-fq_emulator_fiber_start
)");

namespace fq::cuda_emu::emulator {

extern "C" [[noreturn]] void fq_emulator_fiber_main() {
  scheduler.invoke(scheduler.body);
  Block& block = *current.block;
  ++scheduler.arrivals;
  leave(block.barrier);
  leave(block.warp_barriers[warp()]);
  Fiber& fiber = scheduler.fibers[scheduler.running];
  fiber.done = true;
  fq_emulator_switch(&fiber.stack_pointer, scheduler.main_stack_pointer);
  __builtin_unreachable();
}

}  // namespace fq::cuda_emu::emulator
