; 32-bit epilogue: EFLAGS and registers to the state block, back to 64-bit code.
bits 32
  pushfd
  pop dword [0x301048]
  mov [0x301028], eax
  mov [0x30102c], ecx
  mov [0x301030], edx
  mov [0x301034], ebx
  mov [0x30103c], ebp
  mov [0x301040], esi
  mov [0x301044], edi
  push dword 0x33
  push dword 0x305040 ; tramp64.asm: back
  retf
