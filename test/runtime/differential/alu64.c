/*
 * Host side of the 64-bit ALU differential test: runs one instruction per
 * case natively in 64-bit mode with R8 and R9 as operands and reports R8,
 * R9 and RFLAGS after it. The instruction must touch only R8, R9 and flags.
 *
 * Input records (stdin):  u8 len, u8 code[15], u64 r8, u64 r9, u64 rflags (40 bytes)
 * Output records (stdout): u64 r8, u64 r9, u64 rflags (24 bytes)
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

/* mov r8,[rdi]; mov r9,[rdi+8]; push qword [rdi+16]; popfq */
static const uint8_t PROLOGUE[] = {0x4c, 0x8b, 0x07, 0x4c, 0x8b, 0x4f, 0x08, 0xff, 0x77, 0x10, 0x9d};
/* pushfq; pop qword [rdi+16]; mov [rdi],r8; mov [rdi+8],r9; ret */
static const uint8_t EPILOGUE[] = {0x9c, 0x8f, 0x47, 0x10, 0x4c, 0x89, 0x07, 0x4c, 0x89, 0x4f, 0x08, 0xc3};

int main(void) {
  uint8_t *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code == MAP_FAILED) return 1;
  uint8_t record[40];
  while (fread(record, 1, sizeof record, stdin) == sizeof record) {
    uint8_t len = record[0];
    if (len > 15) return 2;
    memcpy(code, PROLOGUE, sizeof PROLOGUE);
    memcpy(code + sizeof PROLOGUE, record + 1, len);
    memcpy(code + sizeof PROLOGUE + len, EPILOGUE, sizeof EPILOGUE);
    __builtin___clear_cache((char *)code, (char *)code + 64);
    uint64_t state[3];
    memcpy(state, record + 16, sizeof state);
    /* r8, r9 and flags are saved and restored by the generated code; rdi holds &state. */
    __asm__ volatile("call *%1" : : "D"(state), "r"(code) : "r8", "r9", "rax", "memory", "cc");
    fwrite(state, 1, sizeof state, stdout);
  }
  return 0;
}
