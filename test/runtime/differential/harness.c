/*
 * Host side of the CPU differential test: runs one x86 instruction per case
 * natively, in 32-bit compatibility mode, and reports the registers, flags,
 * memory and fault after it.
 *
 * Layout (one fixed mapping at 0x300000, below 4 GiB so 32-bit code can use it):
 *   0x300000  32-bit code: prologue32 + instruction + epilogue32
 *   0x301000  state: in regs[8] @0, in eflags @32, out regs[8] @40, out eflags @72
 *   0x302000  64-byte data buffer (memory operands use [ebx+disp])
 *   0x304000  top of the 32-bit stack
 *   0x305000  64-bit trampoline (far-returns to CS 0x23, comes back through CS 0x33)
 * Input records (stdin):  u8 len, u8 code[15], u32 regs[8], u32 eflags, u8 mem[64]  (116 bytes)
 * Output records (stdout): u32 regs[8], u32 eflags, u8 mem[64], i32 fault (-1 = none) (104 bytes)
 * Usage: harness tramp64.bin prologue32.bin epilogue32.bin < cases > results
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BASE 0x300000UL
#define CODE ((uint8_t *)BASE)
#define STATE ((uint8_t *)(BASE + 0x1000))
#define DATA ((uint8_t *)(BASE + 0x2000))
#define TRAMP ((uint8_t *)(BASE + 0x5000))

static sigjmp_buf recover;
static volatile int fault_vector;

static void on_signal(int sig) {
  fault_vector = sig == SIGFPE ? 0 : sig == SIGILL ? 6 : 13;
  siglongjmp(recover, 1);
}

static size_t load(const char *path, uint8_t *into, size_t max) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(2); }
  size_t n = fread(into, 1, max, f);
  fclose(f);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: harness tramp64 prologue32 epilogue32\n"); return 2; }
  void *low = mmap((void *)BASE, 0x10000, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (low != (void *)BASE) { perror("mmap 0x300000"); return 2; }
  static uint8_t prologue[256], epilogue[256];
  load(argv[1], TRAMP, 0x1000);
  size_t prologue_len = load(argv[2], prologue, sizeof prologue);
  size_t epilogue_len = load(argv[3], epilogue, sizeof epilogue);

  static uint8_t altstack[65536];
  stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_ONSTACK | SA_NODEFER;
  sigaction(SIGFPE, &sa, NULL);
  sigaction(SIGILL, &sa, NULL);
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);

  uint8_t in[116], out[104];
  while (fread(in, 1, sizeof in, stdin) == sizeof in) {
    uint8_t len = in[0];
    memcpy(CODE, prologue, prologue_len);
    memcpy(CODE + prologue_len, in + 1, len);
    memcpy(CODE + prologue_len + len, epilogue, epilogue_len);
    memcpy(STATE, in + 16, 36);
    memset(STATE + 40, 0, 36);
    memcpy(DATA, in + 52, 64);
    __builtin___clear_cache((char *)CODE, (char *)CODE + 512);
    fault_vector = -1;
    if (sigsetjmp(recover, 1) == 0) {
      ((void (*)(void))TRAMP)();
    }
    memcpy(out, STATE + 40, 36);
    memcpy(out + 36, DATA, 64);
    int32_t v = fault_vector;
    memcpy(out + 100, &v, 4);
    fwrite(out, 1, sizeof out, stdout);
  }
  return 0;
}
