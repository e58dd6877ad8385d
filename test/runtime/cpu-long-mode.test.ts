import { describe, expect, it } from "vitest";
import { IoBus, MemoryBus } from "../../src/runtime/bus.js";
import { X86Cpu } from "../../src/runtime/cpu/cpu.js";
import { skipReason } from "../helpers/tools.js";
import { assemble, bareMachine, runReal, TestInterrupts } from "./cpu-harness.js";
import { ENTER_PROTECTED_MODE } from "./cpu-programs.js";

/**
 * Long mode: a nasm program goes real -> protected -> IA-32e mode (4-level
 * paging with 4 KiB, 2 MiB and 1 GiB pages) and runs 64-bit code. Results
 * come out as dwords on port 0xEC.
 */
const noNasm = skipReason("nasm") !== "";
const HALTED = { kind: "shutdown", why: "HLT with interrupts disabled" };

const PROGRAM = `
%define ABS(label) (label - $$ + 0x7c00)
%macro report 0
  out 0xec, eax
%endmacro
; report the high dword of a 64-bit register
%macro report_high 1
  mov [rel scratch], %1
  mov eax, [rel scratch + 4]
  out 0xec, eax
%endmacro
${ENTER_PROTECTED_MODE}  mov esp, 0x90000
  ; page tables: PML4 0x10000, PDPT 0x11000, PD 0x12000, PT 0x13000
  mov edi, 0x10000
  mov ecx, 0x1000
  xor eax, eax
  rep stosd
  mov dword [0x10000], 0x11003             ; PML4[0] -> PDPT
  mov dword [0x10000 + 511*8], 0x11003     ; PML4[511] -> the same PDPT (0xffffff80_00000000)
  mov dword [0x11000], 0x12003             ; PDPT[0] -> PD
  mov dword [0x11000 + 8], 0x83            ; PDPT[1]: 1 GiB page at physical 0
  mov dword [0x12000], 0x13003             ; PD[0] -> PT (4 KiB pages)
  mov dword [0x12000 + 8], 0x200083        ; PD[1]: 2 MiB page at physical 2 MiB
  mov edi, 0x13000
  mov eax, 3
.pt:
  mov [edi], eax
  add eax, 0x1000
  add edi, 8
  cmp edi, 0x14000
  jb .pt
  mov dword [0x13000 + 0x50*8], 0          ; 0x50000 not present
  mov dword [0x13000 + 0x51*8], 0x51001    ; 0x51000 read-only
  mov eax, cr4
  or eax, 0x20                             ; PAE
  mov cr4, eax
  mov eax, 0x10000
  mov cr3, eax
  mov ecx, 0xc0000080
  rdmsr
  or eax, 0x100                            ; EFER.LME
  wrmsr
  mov eax, cr0
  or eax, 0x80010000                       ; PG | WP
  mov cr0, eax
  jmp 0x18:long64

bits 64
long64:
  lidt [rel idtr]
  mov ecx, 0xc0000080
  rdmsr
  report                                   ; 0x500: LME | LMA
  mov r8, 0x123456789abcdef0
  mov r9, 0x0fedcba987654321
  add r8, r9                               ; 0x22222222_22222211
  mov rax, r8
  report
  report_high r8
  mov r10, 0x100000000
  sub r10, 1                               ; borrow across the halves
  mov eax, r10d
  report
  report_high r10
  mov r11, -1
  mov r11d, 5                              ; 32-bit writes zero-extend
  report_high r11
  mov ecx, -2
  movsxd r12, ecx
  report_high r12
  mov rax, [rel qword_value]               ; RIP-relative
  report
  report_high rax
  mov rbx, rsp
  call func
  sub rbx, rsp
  mov eax, ebx
  report                                   ; 0: RET popped 8 bytes
  mov r15, 0xdeadbeefcafebabe
  push r15
  pop r14
  report_high r14
  cmp r8, r10                              ; 0x22.. > 0xffffffff: no borrow, not equal
  setb al
  setnz ah
  movzx eax, ax
  report                                   ; 0x0100
  ; the 1 GiB page at 0x40000000 and its alias in the top PML4 slot
  lea rsi, [rel scratch]
  mov rax, 0x40000000
  add rsi, rax
  mov dword [rel scratch], 0x5a5a5a5a
  mov eax, [rsi]
  report                                   ; 0x5a5a5a5a
  lea rdi, [rel scratch]
  mov rax, 0xffffff8040000000
  add rdi, rax
  mov dword [rdi], 0x77
  mov eax, [rsi]
  report                                   ; 0x77: same physical byte
  mov eax, [0x200000 + 0x1234]             ; the 2 MiB page (identity)
  mov dword [0x200000 + 0x1234], 0x99
  mov eax, [0x200000 + 0x1234]
  report                                   ; 0x99
  int 0x40
  mov eax, 0x600d
  report
  lea rax, [rel after_pf1]
  mov [rel resume], rax
  mov eax, [0x50123]                       ; not present: #PF(0), CR2 0x50123
after_pf1:
  lea rax, [rel after_pf2]
  mov [rel resume], rax
  mov dword [0x51008], 1                   ; read-only with CR0.WP: #PF(3)
after_pf2:
  lea rax, [rel after_pf3]
  mov [rel resume], rax
  mov rax, 0xffff800000001000
  mov eax, [rax]                           ; PML4[256] not present: CR2 has the high half
after_pf3:
  lea rsi, [rel src_q]
  lea rdi, [rel dst_q]
  mov ecx, 3
  cld
  rep movsq
  mov rax, [rel dst_q + 16]
  report_high rax                          ; 0x33333333
  mov eax, ecx
  report                                   ; 0: RCX counted down
  lea rdi, [rel dst_q]
  mov al, 0xab
  mov rcx, 5
  rep stosb
  mov eax, [rel dst_q + 4]
  report                                   ; 0x111111ab
  mov r8, 0x100000000
  mov r9, 5
  xadd r8, r9
  report_high r9                           ; 1
  mov eax, r8d
  report                                   ; 5
  mov rax, 0x100000005
  mov r10, 0x700000000
  cmpxchg r8, r10                          ; equal: r8 = r10
  report_high r8                           ; 7
  mov rax, 0x100000000
  mov rbx, 0x300000000
  mul rbx                                  ; RDX:RAX = 3 << 64
  mov eax, edx
  report                                   ; 3
  mov rdx, 3
  xor eax, eax
  div rbx                                  ; (3 << 64) / (3 << 32) = 1 << 32
  report_high rax                          ; 1
  bswap r8
  mov eax, r8d
  report                                   ; 0x07000000
  shl r8, 8
  report_high r8                           ; 7
  xor eax, eax
  mov ss, ax                               ; a null SS is allowed at CPL 0 in 64-bit mode
  push 0x18
  lea rax, [rel after_retf]
  push rax
  retfq                                    ; reload CS (as Linux's startup_64 does)
after_retf:
  mov eax, ss
  report                                   ; 0
  mov ecx, 0xc0000100                      ; FS_BASE
  lea rax, [rel dst_q]
  xor edx, edx
  wrmsr
  mov eax, [fs:0]
  report                                   ; 0xabababab (dst_q after REP STOSB)
  mov ecx, 0xc0000102                      ; KERNEL_GS_BASE
  lea rax, [rel qword_value]
  xor edx, edx
  wrmsr
  swapgs
  mov eax, [gs:4]
  report                                   ; 0x11223344
  mov ecx, 0xc0000080
  rdmsr
  or eax, 1                                ; EFER.SCE
  wrmsr
  mov ecx, 0xc0000081                      ; STAR: kernel CS 0x18, SS 0x20
  xor eax, eax
  mov edx, 0x18
  wrmsr
  mov ecx, 0xc0000082                      ; LSTAR
  lea rax, [rel syscall_entry]
  xor edx, edx
  wrmsr
  mov ecx, 0xc0000084                      ; FMASK: clear DF
  mov eax, 0x400
  xor edx, edx
  wrmsr
  std
  syscall
after_syscall:
  pushfq
  pop rax
  and eax, 0x400
  report                                   ; DF restored from R11 by hand below: 0x400
  cli
  hlt

syscall_entry:
  lea rax, [rel after_syscall]
  sub rax, rcx
  report                                   ; 0: RCX = return RIP
  mov eax, ss
  report                                   ; 0x20
  pushfq
  pop rax
  and eax, 0x400
  report                                   ; 0: FMASK cleared DF
  push r11
  popfq                                    ; the caller's RFLAGS (DF set)
  jmp rcx

func:
  mov rcx, rbx
  sub rcx, rsp
  mov eax, ecx
  report                                   ; 8
  ret

int40:
  mov eax, 0x40404040
  report
  mov rax, [rsp + 8]                       ; pushed CS
  report                                   ; 0x18
  iretq

pf_handler:
  pop rax                                  ; error code
  report
  mov rax, cr2
  report
  mov rdx, cr2
  report_high rdx
  mov rax, [rel resume]
  mov [rsp], rax                           ; continue after the faulting instruction
  iretq

align 8
gdt:
  dq 0
  dq 0x00cf9a000000ffff                    ; 0x08 32-bit code
  dq 0x00cf92000000ffff                    ; 0x10 data
  dq 0x00af9a000000ffff                    ; 0x18 64-bit code (L=1, D=0)
gdt_end:
gdtr: dw gdt_end - gdt - 1
  dd gdt
qword_value: dq 0x1122334455667788
src_q: dq 0x1111111111111111, 0x2222222222222222, 0x3333333333333333
dst_q: dq 0, 0, 0
scratch: dq 0
resume: dq 0
align 16
idt:
  times 14 dq 0, 0
  dw ABS(pf_handler) & 0xffff, 0x18, 0x8e00, ABS(pf_handler) >> 16
  dd 0, 0
  times 0x40 - 15 dq 0, 0
  dw ABS(int40) & 0xffff, 0x18, 0x8e00, ABS(int40) >> 16
  dd 0, 0
idt_end:
idtr: dw idt_end - idt - 1
  dq idt
`;

describe.skipIf(noNasm)("long mode", () => {
  it("enters IA-32e mode and runs 64-bit code: R8-R15, RIP-relative, call/ret, 4-level paging, a 64-bit IDT gate, IRETQ, #PF, strings, XADD/CMPXCHG, MUL/DIV, FS/GS bases, SWAPGS, SYSCALL", () => {
    const m = bareMachine();
    const stop = runReal(m, assemble(PROGRAM));
    expect(stop, m.cpu.describeState()).toEqual(HALTED);
    expect(m.debugWords.map((w) => w.toString(16))).toEqual(
      [
        0x500, // EFER
        0x22222211,
        0x22222222,
        0xffffffff,
        0, // r10 high
        0, // r11 high
        0xffffffff, // movsxd
        0x55667788,
        0x11223344,
        8, // inside the call
        0, // after ret
        0xdeadbeef,
        0x0100,
        0x5a5a5a5a,
        0x77,
        0x99,
        0x40404040,
        0x18,
        0x600d,
        0,
        0x50123,
        0,
        3,
        0x51008,
        0,
        0,
        0x1000,
        0xffff8000,
        0x33333333, // REP MOVSQ
        0,
        0x111111ab, // REP STOSB
        1, // XADD
        5,
        7, // CMPXCHG
        3, // MUL
        1, // DIV
        0x07000000, // BSWAP
        7, // SHL
        0, // SS after MOV SS, 0 and RETFQ
        0xabababab, // FS base
        0x11223344, // SWAPGS
        0, // SYSCALL: RCX
        0x20, // SS from STAR
        0, // FMASK
        0x400, // R11 kept the flags
      ].map((w) => w.toString(16)),
    );
    expect(m.cpu.mode).toBe("long64");
  });
});

describe.skipIf(noNasm)("CPUID for long mode", () => {
  function cpuidEdx(reportLongMode: boolean): number[] {
    const memory = new MemoryBus(1 << 20);
    const out: number[] = [];
    const io = new IoBus();
    io.register(0xec, 1, { read: () => 0, write: (_port, _size, value) => out.push(value >>> 0) });
    const cpu = new X86Cpu({
      memory,
      io,
      interrupts: new TestInterrupts(),
      hypercall: () => {},
      reportLongMode,
    });
    memory.ram.set(
      assemble(`bits 16
org 0x7c00
  mov eax, 1
  cpuid
  mov eax, edx
  out 0xec, eax
  mov eax, 0x80000001
  cpuid
  mov eax, edx
  out 0xec, eax
  cli
  hlt
`),
      0x7c00,
    );
    cpu.jumpReal(0, 0x7c00);
    cpu.run(1000);
    return out;
  }

  it("reports LM, SYSCALL, FXSR, SSE and SSE2 only when the host opts in", () => {
    const [plain1, plainExt] = cpuidEdx(false);
    expect(plain1! & 0x7000000).toBe(0);
    expect(plainExt).toBe(1 << 20); // NX only
    const [long1, longExt] = cpuidEdx(true);
    expect(long1! & 0x7000000).toBe(0x7000000);
    expect(longExt).toBe(((1 << 20) | (1 << 29) | (1 << 11)) >>> 0);
  });
});
