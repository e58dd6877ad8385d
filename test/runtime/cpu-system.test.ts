import { describe, expect, it } from "vitest";
import { skipReason } from "../helpers/tools.js";
import { assemble, type BareMachine, bareMachine, runReal } from "./cpu-harness.js";
import { exceptionReport, protectedModeProgram } from "./cpu-programs.js";

/**
 * System-level CPU tests: small nasm programs run on a bare machine (RAM,
 * I/O bus, hand-driven interrupt controller). Results come out on port
 * 0xE9 (bytes) and 0xEC (dwords); programs end with cli; hlt (shutdown).
 */
const noNasm = skipReason("nasm") !== "";
const HALTED = { kind: "shutdown", why: "HLT with interrupts disabled" };

function runProtected(body: string, machine = bareMachine()): BareMachine {
  const stop = runReal(machine, assemble(protectedModeProgram(body)));
  expect(stop).toEqual(HALTED);
  return machine;
}

describe.skipIf(noNasm)("real mode", () => {
  it("runs arithmetic, addressing modes, string ops, far calls and software interrupts", () => {
    const m = bareMachine();
    const stop = runReal(
      m,
      assemble(`bits 16
org 0x7c00
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  mov word [0x40*4], int40
  mov word [0x40*4+2], 0
  mov ax, 5
  int 0x40               ; doubles AX
  out 0xe9, al           ; 10
  mov ax, 0x1000
  mov es, ax
  mov byte [es:0x10], 0x77
  mov bx, 0x1001
  mov ds, bx
  mov al, [0]            ; same physical byte 0x10010
  out 0xe9, al           ; 0x77
  xor ax, ax
  mov ds, ax
  mov bp, 0x100
  mov si, 0x20
  mov byte [ss:bp+si+3], 0x42   ; [bp+si] defaults to SS
  mov al, [0x123]
  out 0xe9, al           ; 0x42
  mov si, src
  mov di, 0x600
  push ds
  pop es
  mov cx, 5
  cld
  rep movsb
  mov al, [0x604]
  out 0xe9, al           ; 'o'
  call 0x0000:farproc
  out 0xe9, al           ; 0x99
  mov ax, 0xfff0
  add ax, 0x20
  setc al
  out 0xe9, al           ; 1
  mov ax, 1234
  mov cl, 10
  div cl
  out 0xe9, al           ; 123
  mov al, ah
  out 0xe9, al           ; 4
  cli
  hlt
int40:
  add ax, ax
  iret
farproc:
  mov al, 0x99
  retf
src: db "hello"
`),
    );
    expect(stop).toEqual(HALTED);
    expect(m.debugBytes).toEqual([10, 0x77, 0x42, "o".charCodeAt(0), 0x99, 1, 123, 4]);
  });

  it("wraps at 1 MiB when A20 is disabled and not when it is enabled", () => {
    const m = bareMachine();
    const program = assemble(`bits 16
org 0x7c00
  mov ax, 0xffff
  mov es, ax
  xor ax, ax
  mov ds, ax
  mov byte [0x500], 0x11
  mov byte [es:0x510], 0x22   ; physical 0x100500, or 0x500 with A20 off
  mov al, [0x500]
  out 0xe9, al
  cli
  hlt
`);
    m.cpu.a20 = false;
    expect(runReal(m, program)).toEqual(HALTED);
    m.cpu.a20 = true;
    expect(runReal(m, program)).toEqual(HALTED);
    expect(m.debugBytes).toEqual([0x22, 0x11]);
  });

  it("delivers an external interrupt through the IVT after STI and returns halt on HLT with IF=1", () => {
    const m = bareMachine();
    const stop = runReal(
      m,
      assemble(`bits 16
org 0x7c00
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  mov word [0x08*4], irq0
  mov word [0x08*4+2], 0
  sti
idle: hlt
  cmp byte [0x500], 1
  jne idle
  mov al, 0xaa
  out 0xe9, al
  cli
  hlt
irq0:
  mov byte [0x500], 1
  iret
`),
    );
    expect(stop).toEqual({ kind: "halt" });
    expect(m.cpu.run(1000)).toEqual({ kind: "halt" }); // still nothing pending
    m.interrupts.pending.push(0x08);
    expect(m.cpu.run(1000)).toEqual(HALTED);
    expect(m.debugBytes).toEqual([0xaa]);
  });

  it("calls the BIOS hypercall 0F 3F ib with EIP past the instruction", () => {
    const m = bareMachine();
    const stop = runReal(m, new Uint8Array([0x0f, 0x3f, 0x13, 0xfa, 0xf4]));
    expect(stop).toEqual(HALTED);
    expect(m.hypercalls).toEqual([0x13]);
  });

  it("stops with the bytes, address and mode of an unimplemented instruction", () => {
    const m = bareMachine();
    // addps xmm0, xmm1 (SSE: not implemented, not reported in CPUID)
    const stop = runReal(m, new Uint8Array([0x90, 0x0f, 0x58, 0xc1]));
    expect(stop.kind).toBe("unimplemented");
    if (stop.kind === "unimplemented") {
      expect(stop.address).toBe(0x7c01);
      expect(stop.bytes.slice(0, 3)).toEqual([0x0f, 0x58, 0xc1]);
      expect(stop.mode).toBe("real");
    }
  });

  it("shuts down on a triple fault", () => {
    const m = bareMachine();
    // IDT limit 0: every exception faults again -> #DF -> shutdown.
    const stop = runReal(
      m,
      assemble(`bits 16
org 0x7c00
  lidt [idtr]
  int3
idtr: dw 0
  dd 0
`),
    );
    expect(stop.kind).toBe("shutdown");
    if (stop.kind === "shutdown") expect(stop.why).toMatch(/triple fault/);
  });
});

describe.skipIf(noNasm)("mode switches", () => {
  it("goes real -> protected (32-bit) -> 16-bit protected -> real and keeps running", () => {
    const m = bareMachine();
    const stop = runReal(
      m,
      assemble(
        protectedModeProgram(`
  report 0x32
  jmp 0x30:pm16           ; 16-bit code segment
bits 16
pm16:
  mov ax, 0x38
  mov ds, ax
  mov ss, ax
  mov eax, cr0
  and al, 0xfe
  mov cr0, eax
  jmp 0x0000:real_again
real_again:
  xor ax, ax
  mov ds, ax
  mov ss, ax
  mov sp, 0x7000
  mov al, 0x16
  out 0xe9, al
  push word 0x1234
  pop bx
  mov al, bh
  out 0xe9, al
  cli
  hlt
`),
      ),
    );
    expect(stop).toEqual(HALTED);
    expect(m.debugWords).toEqual([0x32]);
    expect(m.debugBytes).toEqual([0x16, 0x12]);
    expect(m.cpu.mode).toBe("real");
  });
});

describe.skipIf(noNasm)("paging", () => {
  it("maps 4 KiB pages (2-level), sets accessed and dirty bits, and flushes on INVLPG", () => {
    const m = runProtected(`
  ; directory 0x100000; table 0x101000 identity-maps 0-4 MiB, then
  ; linear 0x400000 -> physical 0x200000 through a second table at 0x102000
  mov edi, 0x101000
  mov eax, 0x3
  mov ecx, 1024
.fill: stosd
  add eax, 0x1000
  loop .fill
  mov dword [0x100000], 0x101003
  mov dword [0x100004], 0x102003
  mov dword [0x102000], 0x200003
  mov dword [0x200000], 0xcafe
  mov eax, 0x100000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  mov eax, [0x400000]
  out 0xec, eax                      ; 0xcafe through the mapping
  mov dword [0x400004], 0xbeef
  mov eax, [0x102000]
  out 0xec, eax                      ; PTE: present, rw, accessed, dirty = 0x200063
  mov dword [0x102000], 0x201003     ; remap to 0x201000 ...
  mov dword [0x201000], 0x5555
  mov eax, [0x400000]
  out 0xec, eax                      ; ... still the old page until INVLPG
  invlpg [0x400000]
  mov eax, [0x400000]
  out 0xec, eax                      ; 0x5555
  mov eax, cr0
  and eax, 0x7fffffff
  mov cr0, eax
  mov eax, [0x200004]
  out 0xec, eax                      ; 0xbeef landed at physical 0x200004
  cli
  hlt
`);
    expect(m.debugWords).toEqual([0xcafe, 0x200063, 0xcafe, 0x5555, 0xbeef]);
  });

  it("maps 4 MiB pages with CR4.PSE", () => {
    const m = runProtected(`
  mov eax, cr4
  or eax, 0x10
  mov cr4, eax
  mov dword [0x100000], 0x000083     ; 0-4 MiB identity, PS
  mov dword [0x100004], 0x000083     ; 4-8 MiB -> 0-4 MiB, PS
  mov dword [0x300010], 0x4d42
  mov eax, 0x100000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  mov eax, [0x700010]
  out 0xec, eax
  cli
  hlt
`);
    expect(m.debugWords).toEqual([0x4d42]);
  });

  it("maps through PAE tables (PDPT, 2 MiB and 4 KiB pages) and faults on NX fetches when EFER.NXE", () => {
    const m = runProtected(
      `
  ; PDPT at 0x100000 (32-byte aligned); directory at 0x101000; table at 0x102000
  mov dword [0x100000], 0x101001
  mov dword [0x101000], 0x000083     ; 0-2 MiB identity, 2 MiB page
  mov dword [0x101008], 0x102003     ; 2-4 MiB via a 4 KiB table
  mov dword [0x102000], 0x300003     ; 0x200000 -> 0x300000
  mov dword [0x102008], 0x301003     ; 0x201000 -> 0x301000, NX
  mov dword [0x10200c], 0x80000000
  mov dword [0x300000], 0x9a9a
  mov byte [0x301000], 0xc3          ; ret
  mov ecx, 0xc0000080                ; EFER.NXE
  rdmsr
  or eax, 0x800
  wrmsr
  mov eax, cr4
  or eax, 0x20
  mov cr4, eax
  mov eax, 0x100000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  mov eax, [0x200000]
  out 0xec, eax
  call 0x201000                      ; #PF: instruction fetch from an NX page
`,
    );
    expect(m.debugWords).toEqual([0x9a9a, ...exceptionReport(14, 0x11, 0x201000, 0x201000)]);
  });

  it("reports page-fault error codes and CR2 for not-present, write-protect and user accesses", () => {
    const setup = `
  mov edi, 0x101000
  mov eax, 0x7                       ; present, writable, user
  mov ecx, 1024
.fill: stosd
  add eax, 0x1000
  loop .fill
  mov dword [0x100000], 0x101007
  mov dword [0x101000 + 0x200*4], 0  ; 0x200000 not present
  mov dword [0x101000 + 0x201*4], 0x201001 ; 0x201000 read-only, supervisor
  mov eax, 0x100000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80010000                 ; PG + WP
  mov cr0, eax
`;
    const notPresentRead = runProtected(`${setup}
  report fault1
fault1:
  mov eax, [0x200010]
`);
    const w = notPresentRead.debugWords;
    expect(w.slice(1)).toEqual(exceptionReport(14, 0, 0x200010, w[0]!));

    const notPresentWrite = runProtected(`${setup}
  report fault2
fault2:
  mov dword [0x200ffc], 1
`);
    const w2 = notPresentWrite.debugWords;
    expect(w2.slice(1)).toEqual(exceptionReport(14, 2, 0x200ffc, w2[0]!));

    const writeProtected = runProtected(`${setup}
  report fault3
fault3:
  mov byte [0x201005], 1
`);
    const w3 = writeProtected.debugWords;
    expect(w3.slice(1)).toEqual(exceptionReport(14, 3, 0x201005, w3[0]!));
  });
});

describe.skipIf(noNasm)("exceptions and error codes", () => {
  it("raises #GP(selector) for a bad segment load, #NP(selector) for a not-present one", () => {
    const gp = runProtected(`
  mov bx, 0x2b                       ; TSS selector (RPL 3) into DS: #GP(0x28)
  report f
f:
  mov ds, bx
`);
    expect(gp.debugWords.slice(1)).toEqual(exceptionReport(13, 0x28, 0, gp.debugWords[0]!));

    // A readable ring-3 code segment is a valid DS at CPL 0 (DPL >= max(CPL, RPL)).
    const readableCode = runProtected(`
  mov ax, 0x1b
  mov ds, ax
  mov eax, [0x7c00]
  out 0xec, eax
  cli
  hlt
`);
    expect(readableCode.debugWords.length).toBe(1);

    const np = runProtected(`
  report f
f:
  mov ax, 0x40
  mov es, ax
`);
    expect(np.debugWords.slice(1, 3)).toEqual([(0xee000000 | 11) >>> 0, 0x40]);

    const outsideGdt = runProtected(`
  mov ax, 0x1f8
  mov fs, ax
`);
    expect(outsideGdt.debugWords.slice(0, 2)).toEqual([(0xee000000 | 13) >>> 0, 0x1f8]);
  });

  it("raises #UD for UD2, #DE for a divide by zero, #BR for BOUND and #GP(0) for a bad CR4 bit", () => {
    const ud = runProtected("  ud2\n");
    expect(ud.debugWords[0]).toBe((0xee000000 | 6) >>> 0);
    const de = runProtected("  xor ecx, ecx\n  div ecx\n");
    expect(de.debugWords[0]).toBe((0xee000000 | 0) >>> 0);
    const br = runProtected("  mov eax, 20\n  bound eax, [bounds]\nbounds: dd 0, 10\n");
    expect(br.debugWords[0]).toBe((0xee000000 | 5) >>> 0);
    const cr4 = runProtected("  mov eax, 0x00400000\n  mov cr4, eax\n");
    expect(cr4.debugWords.slice(0, 2)).toEqual([(0xee000000 | 13) >>> 0, 0]);
  });

  it("leaves ESP unchanged when PUSHA faults part-way", () => {
    const m = runProtected(`
  set_gate 14, pf_handler, 0x8e00
  mov edi, 0x101000
  mov eax, 0x3
  mov ecx, 1024
.fill: stosd
  add eax, 0x1000
  loop .fill
  mov dword [0x100000], 0x101003
  mov dword [0x101000 + 0x200*4], 0    ; 0x200000 not present, 0x201000 present
  mov eax, 0x100000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  mov esp, 0x201018
  pushad                               ; the 7th store hits 0x200ffc
pf_handler:
  mov eax, esp
  out 0xec, eax                        ; 0x201018 - 16 (EFLAGS, CS, EIP, error code)
  mov eax, [esp]
  out 0xec, eax                        ; error code 2 (write, not present)
  cli
  hlt
`);
    expect(m.debugWords).toEqual([0x201018 - 16, 2]);
  });

  it("escalates a fault during page-fault delivery to #DF with error code 0", () => {
    const m = runProtected(`
  and dword [${0x1000 + 14 * 8 + 4}], ~0x8000 ; #PF gate not present -> #NP while delivering #PF -> #DF
  mov edi, 0x101000
  mov eax, 0x3
  mov ecx, 1024
.fill: stosd
  add eax, 0x1000
  loop .fill
  mov dword [0x100000], 0x101003
  mov dword [0x101000 + 0x200*4], 0
  mov eax, 0x100000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
  mov eax, [0x200000]
`);
    expect(m.debugWords.slice(0, 2)).toEqual([(0xee000000 | 8) >>> 0, 0]);
  });
});

describe.skipIf(noNasm)("privilege levels and the TSS", () => {
  it("switches to the TSS ring-0 stack on an interrupt from ring 3, and IRETs back to ring 3", () => {
    const m = runProtected(`
  mov dword [0x3000 + 4], 0x80000      ; TSS.ESP0
  mov dword [0x3000 + 8], 0x10         ; TSS.SS0
  mov ax, 0x28
  ltr ax
  set_gate 0x80, syscall, 0xee00       ; DPL 3 interrupt gate
  push dword 0x23                      ; SS
  push dword 0x70000                   ; ESP
  push dword 0x202                     ; EFLAGS (IF=1)
  push dword 0x1b                      ; CS
  push dword ring3
  iret
ring3:
  xor ebx, ebx
  xor ecx, ecx
  xor edx, edx
  mov eax, 0x1234
  int 0x80
  mov ebx, esp
  mov ecx, cs
  mov edx, ss
  int 0x80                             ; report after the return
  hlt                                  ; privileged at CPL 3: #GP(0)
syscall:
  mov esi, esp
  out 0xec, eax                        ; EAX from ring 3
  mov eax, esi
  out 0xec, eax                        ; ESP = ESP0 - 20
  mov eax, [esp + 4]
  out 0xec, eax                        ; pushed CS = 0x1b
  mov eax, [esp + 12]
  out 0xec, eax                        ; pushed ESP = 0x70000
  mov eax, [esp + 16]
  out 0xec, eax                        ; pushed SS = 0x23
  mov eax, cs
  out 0xec, eax                        ; handler CS = 0x08
  mov eax, ebx
  out 0xec, eax
  mov eax, ecx
  out 0xec, eax
  mov eax, edx
  out 0xec, eax
  xor ebx, ebx
  xor ecx, ecx
  xor edx, edx
  mov eax, 0x1234
  iret
`);
    const w = m.debugWords;
    expect(w.slice(0, 9)).toEqual([0x1234, 0x80000 - 20, 0x1b, 0x70000, 0x23, 0x08, 0, 0, 0]);
    expect(w.slice(9, 18)).toEqual([0x1234, 0x80000 - 20, 0x1b, 0x70000, 0x23, 0x08, 0x70000, 0x1b, 0x23]);
    expect(w.slice(18, 20)).toEqual([(0xee000000 | 13) >>> 0, 0]);
  });

  it("RETF to ring 3 pops SS:ESP and nulls data segments ring 3 may not use", () => {
    const m = runProtected(`
  mov dword [0x3000 + 4], 0x80000
  mov dword [0x3000 + 8], 0x10
  mov ax, 0x28
  ltr ax
  set_gate 0x80, back, 0xee00
  pushfd
  or dword [esp], 0x3000               ; IOPL 3 so ring 3 may report with OUT
  popfd
  mov ax, 0x10
  mov fs, ax                           ; ring-0 data: must be nulled on the way out
  push dword 0x23                      ; SS
  push dword 0x60000                   ; ESP
  push dword 0x1b                      ; CS
  push dword ring3
  retf
ring3:
  mov eax, esp
  out 0xec, eax                        ; 0x60000
  mov eax, ss
  out 0xec, eax                        ; 0x23
  mov eax, fs
  out 0xec, eax                        ; 0 (nulled)
  mov eax, ds
  out 0xec, eax                        ; 0: DS (DPL 0 data) is nulled too
  int 0x80
back:
  cli
  hlt
`);
    expect(m.debugWords).toEqual([0x60000, 0x23, 0, 0]);
  });

  it("raises #SS(selector) when SS is loaded with a not-present segment", () => {
    const m = runProtected(`
  mov ax, 0x40
  mov ss, ax
`);
    expect(m.debugWords.slice(0, 2)).toEqual([(0xee000000 | 12) >>> 0, 0x40]);
  });

  it("SYSENTER enters ring 0 from the MSRs and SYSEXIT returns to ring 3", () => {
    const m = runProtected(`
  mov ecx, 0x174
  mov eax, 0x08
  xor edx, edx
  wrmsr
  mov ecx, 0x175
  mov eax, 0x80000
  wrmsr
  mov ecx, 0x176
  mov eax, kernel
  wrmsr
  pushfd
  or dword [esp], 0x3000               ; IOPL 3: ring 3 may use OUT
  popfd
  mov ecx, 0x70000                     ; user ESP for SYSEXIT
  mov edx, user                        ; user EIP
  sysexit
user:
  mov eax, cs
  out 0xec, eax                        ; 0x1b
  sysenter
kernel:
  mov eax, cs
  out 0xec, eax                        ; 0x08
  mov eax, esp
  out 0xec, eax
  cli
  hlt
`);
    expect(m.debugWords).toEqual([0x1b, 0x08, 0x80000]);
  });
});

describe.skipIf(noNasm)("self-modifying code", () => {
  it("sees stores into already-decoded instructions in the same page and in a loop", () => {
    const m = runProtected(`
  mov ecx, 3
again:
  mov eax, 0x11111111                  ; its immediate is rewritten below
patch_imm equ again + 1
  out 0xec, eax
  add dword [patch_imm], 0x11111111
  loop again
  mov byte [later], 0x40               ; turn "nop" into "inc eax"
  mov eax, 7
later:
  nop
  out 0xec, eax
  cli
  hlt
`);
    expect(m.debugWords).toEqual([0x11111111, 0x22222222, 0x33333333, 8]);
  });

  it("invalidates an instruction that straddles a 256-byte block when only its tail is written", () => {
    const m = runProtected(`
  call straddle
  out 0xec, eax
  mov byte [straddle + 4], 0x22        ; last immediate byte, in the next block
  mov dword [straddle + 300], 0        ; data in the same page but another block
  call straddle
  out 0xec, eax
  cli
  hlt
align 256
  times 253 nop
straddle:
  mov eax, 0x11111111
  ret
  times 400 db 0
`);
    expect(m.debugWords).toEqual([0x11111111, 0x22111111]);
  });

  it("drops decoded instructions when code is copied over with REP MOVS", () => {
    const m = runProtected(`
  mov esi, v1
  mov edi, 0x200000
  mov ecx, v1_end - v1
  rep movsb
  call 0x200000
  out 0xec, eax
  mov esi, v2
  mov edi, 0x200000
  mov ecx, v2_end - v2
  rep movsb
  call 0x200000
  out 0xec, eax
  cli
  hlt
v1: mov eax, 1
  ret
v1_end:
v2: mov eax, 2
  ret
v2_end:
`);
    expect(m.debugWords).toEqual([1, 2]);
  });
});

describe.skipIf(noNasm)("string instructions", () => {
  it("runs REP STOS/MOVS across pages, with overlap, and counts each iteration as an instruction", () => {
    const m = runProtected(`
  cld
  mov edi, 0x200002
  mov eax, 0xaabbccdd
  mov ecx, 0x1001
  rep stosd
  mov eax, edi
  out 0xec, eax                        ; 0x200002 + 0x4004
  mov eax, ecx
  out 0xec, eax                        ; 0
  mov eax, [0x200002 + 0x4000]
  out 0xec, eax                        ; last dword stored
  mov eax, [0x200000]
  out 0xec, eax                        ; 0xccdd0000
  mov byte [0x300000], 1
  mov byte [0x300001], 2
  mov esi, 0x300000
  mov edi, 0x300002
  mov ecx, 6
  rep movsb                            ; overlapping: replicates the 2-byte pattern
  mov eax, [0x300004]
  out 0xec, eax                        ; 0x02010201
  mov esi, 0x200002
  mov edi, 0x250001
  mov ecx, 0x1001
  rdtsc
  mov ebx, eax
  rep movsd
  rdtsc
  sub eax, ebx
  out 0xec, eax                        ; 0x1001 iterations + mov + rdtsc
  mov eax, [0x250001 + 0x3ffc]
  out 0xec, eax
  std
  mov edi, 0x3f0003
  mov ecx, 4
  mov al, 0x5a
  rep stosb                            ; backwards
  cld
  mov eax, [0x3f0000]
  out 0xec, eax
  cli
  hlt
`);
    expect(m.debugWords).toEqual([
      0x200002 + 0x4004,
      0,
      0xaabbccdd,
      0xccdd0000,
      0x02010201,
      0x1003,
      0xaabbccdd,
      0x5a5a5a5a,
    ]);
  });
});

describe.skipIf(noNasm)("CPUID, RDTSC and MSRs", () => {
  it("reports only implemented features and counts TSC in instructions", () => {
    const m = runProtected(`
  xor eax, eax
  cpuid
  out 0xec, eax
  mov eax, 1
  cpuid
  mov eax, edx
  out 0xec, eax
  rdtsc
  mov ebx, eax
  nop
  nop
  rdtsc
  sub eax, ebx
  out 0xec, eax                        ; 4 instructions later
  mov ecx, 0x277                       ; PAT round-trips
  mov eax, 0x01020304
  mov edx, 0x05060700
  wrmsr
  xor eax, eax
  rdmsr
  out 0xec, eax
  mov ecx, 0x12345                     ; unknown MSR: #GP(0)
  rdmsr
`);
    const w = m.debugWords;
    expect(w[0]).toBe(2);
    // FPU PSE TSC MSR PAE CX8 SEP PGE CMOV PAT, and nothing else (no SSE, MMX, FXSR, APIC here).
    expect(w[1]).toBe(0x1a979);
    expect(w[2]).toBe(4);
    expect(w[3]).toBe(0x01020304);
    expect(w.slice(4, 6)).toEqual([(0xee000000 | 13) >>> 0, 0]);
  });
});

describe.skipIf(noNasm)("x87 FPU", () => {
  it("loads, computes, compares and stores (FNINIT, FLD/FILD, FADD/FMUL/FDIV, FCOMI, FISTP, FNSTSW)", () => {
    const m = runProtected(`
  fninit
  fnstsw ax
  out 0xec, eax                        ; status 0
  fnstcw [cw]
  mov eax, [cw]
  out 0xec, eax                        ; 0x037f
  fild dword [three]
  fld qword [half]
  faddp st1, st0                       ; 3.5
  fmul dword [two]                     ; 7
  fld1
  fdivp st1, st0                       ; 7
  fistp dword [result]
  mov eax, [result]
  out 0xec, eax                        ; 7
  fld qword [half]
  fld1
  fcomip st0, st1                      ; 1 > 0.5: CF=0 ZF=0
  pushfd
  pop eax
  and eax, 0x45
  out 0xec, eax
  fstp st0
  fldpi
  fstp tword [ext]
  mov eax, [ext + 4]
  out 0xec, eax                        ; significand high word of pi: 0xc90fdaa2
  movzx eax, word [ext + 8]
  out 0xec, eax                        ; exponent 0x4000
  fld dword [two]
  fsqrt
  fmul st0, st0
  fistp word [result]
  movzx eax, word [result]
  out 0xec, eax                        ; 2
  fnstsw ax
  and eax, 0x3800
  out 0xec, eax                        ; TOP back to 0
  cli
  hlt
align 8
half: dq 0.5
three: dd 3
two: dd 2.0
cw: dd 0
result: dd 0
ext: dt 0.0
`);
    expect(m.debugWords).toEqual([0, 0x37f, 7, 0, 0xc90fdaa2, 0x4000, 2, 0]);
  });

  it("raises #NM when CR0.TS is set", () => {
    const m = runProtected(`
  mov eax, cr0
  or eax, 8
  mov cr0, eax
  fninit
`);
    expect(m.debugWords[0]).toBe((0xee000000 | 7) >>> 0);
  });
});
