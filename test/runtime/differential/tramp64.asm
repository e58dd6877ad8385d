; 64-bit trampoline of the differential harness (see harness.c for the layout).
; Switches to a stack below 4 GiB and far-returns into 32-bit compatibility
; mode (Linux user CS 0x23); epilogue32 comes back through CS 0x33.
bits 64
default rel
org 0x305000
entry:
  push rbx
  push rbp
  push r12
  push r13
  push r14
  push r15
  mov [saved_rsp], rsp
  mov esp, 0x304000
  push qword 0x23
  push qword 0x300000
  retfq
; epilogue32 returns to entry + 0x40
times 0x40 - ($ - $$) int3
back:
  mov rsp, [saved_rsp]
  pop r15
  pop r14
  pop r13
  pop r12
  pop rbp
  pop rbx
  ret
align 8
saved_rsp: dq 0
