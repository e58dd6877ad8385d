/**
 * nasm building blocks for the CPU system tests: a boot sector prologue
 * that enters 32-bit protected mode with a GDT (ring 0 and ring 3 flat
 * segments, a TSS slot, 16-bit segments, a not-present segment) and an IDT
 * whose 32 exception vectors report `0xEE000000|vector`, the error code,
 * CR2 and the faulting EIP on port 0xEC and then stop (cli; hlt).
 */

export const SEL_CODE0 = 0x08;
export const SEL_DATA0 = 0x10;
export const SEL_CODE3 = 0x1b;
export const SEL_DATA3 = 0x23;
export const SEL_TSS = 0x28;
export const SEL_NOT_PRESENT = 0x40;
export const IDT_BASE = 0x1000;
export const TSS_BASE = 0x3000;

const MACROS = `
%macro report 1
  mov eax, %1
  out 0xec, eax
%endmacro
; set_gate vector, handler, attributes (0x8e00 = present DPL0 32-bit interrupt gate)
%macro set_gate 3
  mov eax, %2
  mov [${IDT_BASE} + %1*8], ax
  mov word [${IDT_BASE} + %1*8 + 2], 0x08
  mov word [${IDT_BASE} + %1*8 + 4], %3
  shr eax, 16
  mov [${IDT_BASE} + %1*8 + 6], ax
%endmacro
`;

/**
 * The boot-sector start every test program shares: real mode at 0x7C00,
 * load the program's `gdtr`, enable protection, far-jump to 32-bit `pm32`
 * and load DS, ES and SS with the flat data selector (AX = 0x10 after it).
 */
export const ENTER_PROTECTED_MODE = `bits 16
org 0x7c00
  cli
  xor ax, ax
  mov ds, ax
  lgdt [gdtr]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp 0x08:pm32
bits 32
pm32:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
`;

/** A protected-mode program: `body` runs at label test_body in 32-bit ring 0 with ESP=0x90000. */
export function protectedModeProgram(body: string): string {
  return `${MACROS}
${ENTER_PROTECTED_MODE}  mov fs, ax
  mov gs, ax
  mov esp, 0x90000
  mov edi, ${IDT_BASE}
  xor ecx, ecx
.idt:
  mov eax, [stub_table + ecx*4]
  mov [edi], ax
  mov word [edi+2], 0x08
  mov word [edi+4], 0x8e00
  shr eax, 16
  mov [edi+6], ax
  add edi, 8
  inc ecx
  cmp ecx, 32
  jb .idt
  lidt [idtr]
  jmp test_body

%assign i 0
%rep 32
exc_ %+ i:
%if i == 8 || (i >= 10 && i <= 14) || i == 17
%else
  push dword 0
%endif
  push dword i
  jmp exc_common
%assign i i+1
%endrep
exc_common:
  pop eax
  or eax, 0xEE000000
  out 0xec, eax
  pop eax
  out 0xec, eax
  mov eax, cr2
  out 0xec, eax
  pop eax
  out 0xec, eax
  cli
  hlt
stub_table:
%assign i 0
%rep 32
  dd exc_ %+ i
%assign i i+1
%endrep

align 8
gdt:
  dq 0                      ; 0x00
  dq 0x00cf9a000000ffff     ; 0x08 ring-0 code
  dq 0x00cf92000000ffff     ; 0x10 ring-0 data
  dq 0x00cffa000000ffff     ; 0x18 ring-3 code (selector 0x1b)
  dq 0x00cff2000000ffff     ; 0x20 ring-3 data (selector 0x23)
  dq 0x0000890000000067 | (${TSS_BASE} << 16) ; 0x28 32-bit TSS
  dq 0x00009a000000ffff     ; 0x30 16-bit code
  dq 0x000092000000ffff     ; 0x38 16-bit data
  dq 0x00cf12000000ffff     ; 0x40 data, not present
gdt_end:
gdtr: dw gdt_end - gdt - 1
  dd gdt
idtr: dw 256*8 - 1
  dd ${IDT_BASE}

test_body:
${body}
`;
}

/** The four words an exception stub reports. */
export function exceptionReport(vector: number, errorCode: number, cr2: number, eip: number): number[] {
  return [(0xee000000 | vector) >>> 0, errorCode >>> 0, cr2 >>> 0, eip >>> 0];
}
