// The stacks of emulated GPU threads and the switch between them: on x86-64 a few instructions that
// save the callee-saved registers and the floating-point control words (ucontext would make two
// system calls per switch; a kernel launch switches twice per thread at least). x86-64 only.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "internal.h"

#if defined(__x86_64__)
extern "C" void cudaemu_switch(void** from, void* to);
extern "C" void cudaemu_fiber_start();
// cudaemu_switch(from, to): pushes rbp, rbx, r12-r15 and the mxcsr/x87 control words, saves rsp in
// *from, loads `to` and pops the same. A new stack's frame "returns" into cudaemu_fiber_start,
// which calls r13(r12) on an aligned stack.
__asm__(R"(
  .text
  .globl cudaemu_switch
  .type cudaemu_switch, @function
cudaemu_switch:
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
  .size cudaemu_switch, .-cudaemu_switch

  .globl cudaemu_fiber_start
  .type cudaemu_fiber_start, @function
cudaemu_fiber_start:
  movq %r12, %rdi
  andq $-16, %rsp
  callq *%r13
  ud2
  .size cudaemu_fiber_start, .-cudaemu_fiber_start
)");
#else
#error "cudaemu switches stacks with x86-64 assembly (tests/cudaemu/src/fiber.cpp)"
#endif

namespace cudaemu {

namespace {

size_t configured_stack_bytes() {
  size_t kb = 256;
  if (const char* v = std::getenv("CUDAEMU_STACK_KB")) kb = std::strtoul(v, nullptr, 10);
  if (kb < 64) kb = 64;
  return kb * 1024;
}

struct StackPool {
  std::vector<char*> stacks;
  ~StackPool() {
    for (char* s : stacks) munmap(s - getpagesize(), stack_bytes() + getpagesize());
  }
};
thread_local StackPool pool;

}  // namespace

size_t stack_bytes() {
  static const size_t bytes = configured_stack_bytes();
  return bytes;
}

// A guard page below each stack turns an overflow into a fault.
void* stack_at(size_t index) {
  while (pool.stacks.size() <= index) {
    const size_t page = getpagesize();
    void* m = mmap(nullptr, stack_bytes() + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) fatal("cannot map a thread stack");
    mprotect(m, page, PROT_NONE);
    pool.stacks.push_back(static_cast<char*>(m) + page);
  }
  return pool.stacks[index];
}

void* prepare_stack(void* stack, size_t bytes, void (*entry)(void*), void* arg) {
  auto top = reinterpret_cast<uintptr_t>(stack) + bytes;
  top &= ~uintptr_t(15);
  auto* frame = reinterpret_cast<uint64_t*>(top) - 8;
  uint32_t mxcsr;
  uint16_t fpcw;
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(fpcw));
  frame[0] = uint64_t(mxcsr) | (uint64_t(fpcw) << 32);
  frame[1] = 0;                                  // r15
  frame[2] = 0;                                  // r14
  frame[3] = reinterpret_cast<uint64_t>(entry);  // r13
  frame[4] = reinterpret_cast<uint64_t>(arg);    // r12
  frame[5] = 0;                                  // rbx
  frame[6] = 0;                                  // rbp
  frame[7] = reinterpret_cast<uint64_t>(&cudaemu_fiber_start);
  return frame;
}
void switch_stack(void** from, void* to) { cudaemu_switch(from, to); }

}  // namespace cudaemu
