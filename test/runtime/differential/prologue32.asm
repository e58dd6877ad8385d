; 32-bit prologue: data segments, registers and EFLAGS from the state block.
bits 32
  mov ax, 0x2b
  mov ds, ax
  mov es, ax
  mov eax, [0x301000]
  mov ecx, [0x301004]
  mov edx, [0x301008]
  mov ebx, [0x30100c]
  mov ebp, [0x301014]
  mov esi, [0x301018]
  mov edi, [0x30101c]
  push dword [0x301020]
  popfd
