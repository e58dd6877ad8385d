/**
 * The x86 CPU: an interpreter over decoded-instruction records cached per
 * physical page (decode once, run many), with lazy flags, a software TLB
 * and direct typed-array access to plain RAM.
 *
 * Implemented: real mode, 16/32-bit protected mode, paging (2-level, PSE
 * 4 MiB pages, PAE 3-level with NX), segmentation with descriptor caches,
 * privilege levels with TSS stack switching on interrupts, IRET/RETF across
 * privilege levels, the Pentium Pro integer instruction set plus CMOV,
 * CMPXCHG8B, SYSENTER/SYSEXIT, CPUID, RDTSC (virtual), RDMSR/WRMSR and an
 * x87 subset (fpu.ts). See docs/runtime-cpu.md for what is not implemented.
 * Reference: Intel SDM vols. 2 and 3.
 */
import type { MemoryBus } from "../bus.js";
import type { Cpu, CpuHost, CpuMode, StopReason } from "./api.js";
import {
  BASE_RIP,
  type CodeSource,
  DecodeError,
  decode,
  Insn,
  NO_REG,
  REP_E,
  REP_NE,
  SIZE16,
  SIZE32,
  SIZE64,
} from "./decoder.js";
import {
  CpuFault,
  EXC_BP,
  EXC_BR,
  EXC_DE,
  EXC_DF,
  EXC_GP,
  EXC_NM,
  EXC_NP,
  EXC_OF,
  EXC_PF,
  EXC_SS,
  EXC_TS,
  EXC_UD,
  faultClass,
  hasErrorCode,
  Unimplemented,
} from "./faults.js";
import { Fpu } from "./fpu.js";
import { Sse } from "./sse.js";

// EFLAGS bits (SDM vol. 1 §3.4.3).
const CF = 0x1;
const PF = 0x4;
const AF = 0x10;
const ZF = 0x40;
const SF = 0x80;
const TF = 0x100;
const IF = 0x200;
const DF = 0x400;
const OF = 0x800;
const IOPL = 0x3000;
const NT = 0x4000;
const RF = 0x10000;
const VM = 0x20000;
const AC = 0x40000;
const ID = 0x200000;
const ARITH_FLAGS = CF | PF | AF | ZF | SF | OF;
/** Flags POPF/IRET may change at CPL 0 (VM, RF, VIF, VIP excluded). */
const POPF_MASK = ARITH_FLAGS | TF | IF | DF | IOPL | NT | AC | ID;

// CR0 / CR4 / EFER bits.
const CR0_PE = 0x1;
const CR0_MP = 0x2;
const CR0_EM = 0x4;
const CR0_TS = 0x8;
const CR0_ET = 0x10;
const CR0_WP = 0x10000;
const CR0_PG = 0x80000000;
const CR4_PSE = 0x10;
const CR4_PAE = 0x20;
const CR4_PGE = 0x80;
const CR4_OSFXSR = 0x200;
/** CR4 bits this CPU accepts (TSD, DE, PSE, PAE, MCE, PGE, PCE, OSFXSR, OSXMMEXCPT); others #GP. */
const CR4_SUPPORTED = 0x04 | 0x08 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400;
const EFER_SCE = 0x1;
const EFER_LME = 0x100;
const EFER_LMA = 0x400;
const EFER_NXE = 0x800;

// Lazy-flag operations: flags are computed from (op, a, b, result) on demand.
const OP_ADD = 0;
const OP_ADC = 1; // add with carry-in 1
const OP_SUB = 2;
const OP_SBB = 3; // subtract with borrow-in 1
const OP_LOGIC = 4;
/** lazy: which arithmetic flags come from the lazy record. */
const LAZY_NONE = 0;
const LAZY_ALL = 1;
const LAZY_NOT_CF = 2; // INC/DEC keep CF in flagsBase

// TLB entry bits (entry = physical page address | bits).
const TLB_VALID = 1;
const TLB_WRITE = 2; // writable and dirty already set
const TLB_USER = 4;
const TLB_GLOBAL = 8;
const TLB_NX = 16;
const TLB_TRACK_MAX = 8192;

/** The legacy VGA/ROM hole goes through the bus (it may be MMIO). */
const HOLE_START = 0xa0000;
const HOLE_SIZE = 0x60000;
/** Physical addresses at or above this go through the bus (APIC, IOAPIC windows). */
const MMIO_HIGH = 0xfec00000;

// Segment attribute bits (access byte in bits 0-7, flags nibble in 8-11).
const ATTR_DB = 0x400;
/** CS.L: a 64-bit code segment when IA-32e mode is active. */
const ATTR_L = 0x200;

const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let bits = 0;
  for (let v = i; v; v >>= 1) bits += v & 1;
  PARITY[i] = bits & 1 ? 0 : PF;
}

/** Model-specific registers (SDM vol. 4). */
const MSR_TSC = 0x10;
const MSR_PLATFORM_ID = 0x17;
const MSR_APIC_BASE = 0x1b;
const MSR_UCODE_REV = 0x8b;
const MSR_SYSENTER_CS = 0x174;
const MSR_SYSENTER_ESP = 0x175;
const MSR_SYSENTER_EIP = 0x176;
const MSR_MISC_ENABLE = 0x1a0;
const MSR_PAT = 0x277;
const MSR_EFER = 0xc0000080;
const MSR_STAR = 0xc0000081;
const MSR_LSTAR = 0xc0000082;
const MSR_CSTAR = 0xc0000083;
const MSR_FMASK = 0xc0000084;
const MSR_FS_BASE = 0xc0000100;
const MSR_GS_BASE = 0xc0000101;
const MSR_KERNEL_GS_BASE = 0xc0000102;

/** 64-bit TSS (SDM vol. 3 §7.7): RSP0-2 at 4, IST1-7 at 0x24. */
const TSS64_RSP0 = 4;
const TSS64_IST1 = 0x24;

/** Per-step cap on REP string iterations so interrupts and budgets are seen. */
const REP_CHUNK = 4096;

export class X86Cpu implements Cpu, CodeSource {
  // ---- architectural state ----
  /** General registers, low 32 bits (index = encoding; 8-15 for long mode). */
  readonly regs = new Int32Array(16);
  /** High 32 bits of the 64-bit registers (long mode; zero at this stage). */
  readonly regsHigh = new Int32Array(16);
  eip = 0;
  readonly segSel = new Int32Array(6);
  readonly segBase = new Int32Array(6);
  readonly segLimit = new Uint32Array(6);
  readonly segAttr = new Int32Array(6);
  cpl = 0;
  cr0 = CR0_ET;
  cr2 = 0;
  cr3 = 0;
  cr4 = 0;
  efer = 0;
  readonly dr = new Int32Array(8);
  gdtBase = 0;
  gdtLimit = 0xffff;
  idtBase = 0;
  idtLimit = 0x3ff;
  ldtSel = 0;
  ldtBase = 0;
  ldtLimit = 0;
  trSel = 0;
  trBase = 0;
  trLimit = 0xffff;
  trType = 0xb;
  sysenterCs = 0;
  sysenterEsp = 0;
  sysenterEip = 0;
  patLow = 0x00070406;
  patHigh = 0x00070406;
  apicBase = 0xfee00900;
  microcodeRev = 0;
  tscOffset = 0;

  // ---- IA-32e (long mode) state: high halves of 64-bit values ----
  /** High 32 bits of RIP (64-bit mode). */
  ripHigh = 0;
  /** High halves of FS/GS bases (64-bit mode; the low halves are in segBase). */
  readonly segBaseHigh = new Int32Array(6);
  gdtBaseHigh = 0;
  idtBaseHigh = 0;
  trBaseHigh = 0;
  cr2High = 0;
  /** MSR pairs [low, high]: STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE. */
  readonly star = new Int32Array(2);
  readonly lstar = new Int32Array(2);
  readonly cstar = new Int32Array(2);
  fmask = 0;
  readonly kernelGsBase = new Int32Array(2);
  /**
   * High 32 bits of the linear address of the access being made. 64-bit
   * code sets it before every access (fetch: RIP, stack: RSP, data: the
   * effective address); legacy code never changes it from 0. The TLB is
   * indexed by the low 20 page bits and tagged with it.
   */
  private linHigh = 0;
  private readonly tlbHigh = new Int32Array(1 << 20);
  private startRipHigh = 0;
  /** High half of a 64-bit result or operand (avoids allocating pairs). */
  private hi = 0;
  /** With a REX prefix, byte registers 4-7 are SPL/BPL/SIL/DIL (not AH-BH) and 8-15 exist. */
  private byteRegsUniform = false;

  // ---- flags (lazy) ----
  flagsBase = 2;
  lazy = LAZY_NONE;
  lOp = 0;
  lA = 0;
  lB = 0;
  lR = 0;
  lMask = 0;
  lSign = 0;

  // ---- run state ----
  instructions = 0;
  a20Mask = -1;
  halted = false;
  /** Interrupts are inhibited for one instruction after STI / MOV SS / POP SS. */
  private inhibitInterrupts = false;
  private stopRequest: string | null = null;
  /** Set to end the inner loop (interrupt state changed, I/O done, hypercall). */
  private breakLoop = false;
  private pendingWait: Promise<void> | null = null;
  /** EIP of the instruction being executed (faults restart it). */
  private startEip = 0;
  /** Effective linear address of the current memory operand. */
  private ea = 0;

  // ---- derived mode ----
  codeSize = SIZE16;
  private stack32 = false;
  private paging = false;
  private pae = false;

  // ---- memory ----
  readonly memory: MemoryBus;
  private readonly ram: Uint8Array;
  private readonly view: DataView;
  private readonly fastEnd: number;
  private readonly tlb = new Int32Array(1 << 20);
  private readonly tlbTracked = new Int32Array(TLB_TRACK_MAX);
  private tlbTrackedCount = 0;
  private tlbOverflow = false;

  // ---- decoded-instruction cache per physical page ----
  private readonly pageCache: ((Insn | undefined)[] | undefined)[];
  private readonly cachePages: number;
  /**
   * 256-byte blocks of RAM holding cached instructions. Our own stores
   * invalidate only the block they hit, so data that shares a page with
   * code (common in decompressors and BIOS code) does not flush the page.
   */
  private readonly codeBlocks: Uint8Array;
  private fetchLin = 0;
  private fetchPhys = 0;
  private fetchCrossed = false;
  private readonly scratchInsn = new Insn();

  readonly fpu: Fpu;
  readonly sse: Sse;
  private readonly host: CpuHost;
  private a20Enabled = true;

  constructor(host: CpuHost) {
    this.host = host;
    this.memory = host.memory;
    this.ram = host.memory.ram;
    this.view = host.memory.view;
    this.fastEnd = Math.min(host.memory.ramSize, MMIO_HIGH);
    this.cachePages = host.memory.codePages.length;
    this.pageCache = new Array(this.cachePages);
    this.codeBlocks = new Uint8Array(this.cachePages << 4);
    this.memory.onCodeWrite = (page) => this.invalidateCodePage(page);
    this.fpu = new Fpu(this);
    this.sse = new Sse(this);
    this.reset();
  }

  // =====================================================================
  // Cpu interface
  // =====================================================================

  get a20(): boolean {
    return this.a20Enabled;
  }

  set a20(enabled: boolean) {
    if (enabled === this.a20Enabled) return;
    this.a20Enabled = enabled;
    this.a20Mask = enabled ? -1 : ~0x100000;
    this.flushTlb(true);
  }

  get mode(): CpuMode {
    if (!(this.cr0 & CR0_PE)) return "real";
    if (this.flagsBase & VM) return "vm86";
    if (this.codeSize === SIZE64) return "long64";
    if (this.efer & EFER_LMA) return "compat";
    return this.codeSize === SIZE32 ? "protected32" : "protected16";
  }

  reset(): void {
    this.regs.fill(0);
    this.regsHigh.fill(0);
    this.regs[2] = 0x633; // EDX = CPUID signature after reset
    this.flagsBase = 2;
    this.lazy = LAZY_NONE;
    this.cr0 = CR0_ET;
    this.cr2 = 0;
    this.cr3 = 0;
    this.cr4 = 0;
    this.efer = 0;
    this.cpl = 0;
    this.ripHigh = this.gdtBaseHigh = this.idtBaseHigh = this.trBaseHigh = this.cr2High = 0;
    this.segBaseHigh.fill(0);
    this.linHigh = 0;
    for (let s = 0; s < 6; s++) {
      this.segSel[s] = 0;
      this.segBase[s] = 0;
      this.segLimit[s] = 0xffff;
      this.segAttr[s] = 0x93; // present, writable data, accessed
    }
    // CS = F000 with base F0000 (the real CPU uses base FFFF0000 until the
    // first far jump; our BIOS lives below 1 MiB, so the classic base is used).
    this.segSel[1] = 0xf000;
    this.segBase[1] = 0xf0000;
    this.segAttr[1] = 0x9b;
    this.eip = 0xfff0;
    this.gdtBase = 0;
    this.gdtLimit = 0xffff;
    this.idtBase = 0;
    this.idtLimit = 0x3ff;
    this.ldtSel = this.ldtBase = this.ldtLimit = 0;
    this.trSel = this.trBase = 0;
    this.trLimit = 0xffff;
    this.trType = 0xb;
    this.halted = false;
    this.inhibitInterrupts = false;
    this.stopRequest = null;
    this.dr.fill(0);
    this.dr[6] = 0xffff0ff0 | 0;
    this.dr[7] = 0x400;
    this.fpu.reset();
    this.sse.reset();
    this.updateModes();
    this.flushTlb(true);
    this.invalidateAllCode();
  }

  /** Asks run() to return at the next instruction boundary (StopReason stop). */
  requestStop(why: string): void {
    this.stopRequest = why;
    this.breakLoop = true;
  }

  run(maxInstructions: number): StopReason {
    const end = this.instructions + maxInstructions;
    this.pendingWait = null;
    while (this.instructions < end) {
      if (this.stopRequest !== null) {
        const why = this.stopRequest;
        this.stopRequest = null;
        return { kind: "stop", why };
      }
      try {
        if (!this.inhibitInterrupts && this.flagsBase & IF && this.host.interrupts.hasInterrupt()) {
          this.halted = false;
          this.startEip = this.eip;
          const vector = this.host.interrupts.acknowledge();
          this.deliverWithRollback(vector, -1, false, true, this.eip);
        }
        if (this.halted) {
          if (this.flagsBase & IF) return { kind: "halt" };
          return { kind: "shutdown", why: "HLT with interrupts disabled" };
        }
        this.inhibitInterrupts = false;
        this.breakLoop = false;
        this.runBlock(Math.min(end - this.instructions, 1024));
        if (this.pendingWait) {
          const promise = this.pendingWait;
          this.pendingWait = null;
          return { kind: "wait", promise };
        }
        if (this.halted) {
          if (this.flagsBase & IF) return { kind: "halt" };
          return { kind: "shutdown", why: "HLT with interrupts disabled" };
        }
      } catch (e) {
        const stop = this.handleThrow(e);
        if (stop) return stop;
      }
    }
    return { kind: "budget" };
  }

  getReg32(reg: number): number {
    return this.regs[reg]! >>> 0;
  }
  setReg32(reg: number, value: number): void {
    this.regs[reg] = value;
  }
  getReg16(reg: number): number {
    return this.regs[reg]! & 0xffff;
  }
  setReg16(reg: number, value: number): void {
    this.regs[reg] = (this.regs[reg]! & ~0xffff) | (value & 0xffff);
  }
  getReg8(reg: number): number {
    if (this.byteRegsUniform) return this.regs[reg]! & 0xff;
    return reg < 4 ? this.regs[reg]! & 0xff : (this.regs[reg - 4]! >> 8) & 0xff;
  }
  setReg8(reg: number, value: number): void {
    if (reg < 4 || this.byteRegsUniform) this.regs[reg] = (this.regs[reg]! & ~0xff) | (value & 0xff);
    else this.regs[reg - 4] = (this.regs[reg - 4]! & ~0xff00) | ((value & 0xff) << 8);
  }
  getSegmentSelector(seg: number): number {
    return this.segSel[seg]!;
  }
  getSegmentBase(seg: number): number {
    return this.segBase[seg]! >>> 0;
  }
  loadSegmentReal(seg: number, selector: number): void {
    this.segSel[seg] = selector & 0xffff;
    this.segBase[seg] = (selector & 0xffff) << 4;
    if (seg === 1) this.updateModes();
  }
  getFlags(): number {
    return this.materializeFlags() >>> 0;
  }
  setFlags(value: number): void {
    this.flagsBase = (value & ~0x28) | 2;
    this.lazy = LAZY_NONE;
    this.breakLoop = true;
  }
  getEip(): number {
    return this.eip >>> 0;
  }
  /** Sets EIP in the current code segment (tests, diagnostics). */
  setEip(value: number): void {
    this.eip = value;
    this.halted = false;
  }
  jumpReal(cs: number, ip: number): void {
    this.loadSegmentReal(1, cs);
    this.eip = ip & 0xffff;
    this.halted = false;
  }

  describeState(): string {
    const r = (n: number) => (this.regs[n]! >>> 0).toString(16).padStart(8, "0");
    const s = (n: number) => this.segSel[n]!.toString(16).padStart(4, "0");
    return (
      `mode=${this.mode} cs:eip=${s(1)}:${(this.eip >>> 0).toString(16).padStart(8, "0")} ` +
      `eax=${r(0)} ebx=${r(3)} ecx=${r(1)} edx=${r(2)} esi=${r(6)} edi=${r(7)} ebp=${r(5)} esp=${r(4)} ` +
      `ds=${s(3)} es=${s(0)} ss=${s(2)} fs=${s(4)} gs=${s(5)} eflags=${this.getFlags().toString(16)} ` +
      `cr0=${(this.cr0 >>> 0).toString(16)} cr2=${(this.cr2 >>> 0).toString(16)} ` +
      `cr3=${(this.cr3 >>> 0).toString(16)} cr4=${this.cr4.toString(16)} cpl=${this.cpl} ` +
      `instructions=${this.instructions}`
    );
  }

  /**
   * Drops decoded instructions for physical memory that something other
   * than the CPU's own stores changed (DMA written straight into `ram`).
   */
  invalidateCode(physical: number, length: number): void {
    const last = Math.min((physical + length - 1) >>> 12, this.cachePages - 1);
    for (let page = physical >>> 12; page <= last; page++) this.invalidateCodePage(page);
  }

  // =====================================================================
  // Run loop, faults
  // =====================================================================

  /**
   * Runs up to `count` instructions. Decoded instructions link to their
   * fall-through successor and last branch target when those lie in the
   * same physical page, so straight-line code and loops skip address
   * translation and the cache lookup. Links are physical (valid under any
   * mapping of the page); a branch link also records the CS base and EIP it
   * was made for. Anything that changes modes or mappings ends the block.
   */
  private runBlock(count: number): void {
    if (this.codeSize === SIZE64) {
      this.runBlock64(count);
      return;
    }
    const regs = this.regs;
    // A fault while fetching restarts at the instruction being fetched.
    this.startEip = this.eip;
    let insn = this.fetch();
    // Anything that changes the code size ends the block.
    const wrapMask = this.codeSize === SIZE16 ? 0xffff : -1;
    for (let n = 1; ; n++) {
      const start = this.eip;
      const fall = ((start + insn.length) | 0) & wrapMask;
      this.eip = fall;
      this.instructions++;
      const op = insn.opcode;
      // Inline fast paths for the most frequent instructions in boot code
      // (measured on the Linux boot: Jcc, JMP, 32-bit MOV and LEA are ~40%).
      if (op >= 0x70 && op <= 0x7f) {
        if (this.condition(op & 15)) this.jumpRelative(insn, (insn.imm << 24) >> 24);
      } else if (op === 0xeb) {
        this.jumpRelative(insn, (insn.imm << 24) >> 24);
      } else if (op === 0x8b && insn.opSize === SIZE32) {
        regs[insn.reg] = insn.rmIsReg ? regs[insn.rm]! : this.read32(this.effectiveAddress(insn));
      } else if (op === 0x89 && insn.opSize === SIZE32) {
        if (insn.rmIsReg) regs[insn.rm] = regs[insn.reg]!;
        else this.write32(this.effectiveAddress(insn), regs[insn.reg]!);
      } else if (op === 0x8d && insn.opSize === SIZE32 && insn.adSize === SIZE32 && !insn.rmIsReg) {
        let off = insn.disp;
        if (insn.eaBase !== NO_REG) off += regs[insn.eaBase]!;
        if (insn.eaIndex !== NO_REG) off += regs[insn.eaIndex]! << insn.eaScale;
        regs[insn.reg] = off;
      } else if (op < 0x40 && (op & 5) === 1 && insn.opSize === SIZE32) {
        // ALU Ev,Gv (x1) and Gv,Ev (x3), 32-bit
        this.alu32RegisterForms(insn, op >> 3, (op & 2) !== 0);
      } else if (op === 0x83 && insn.opSize === SIZE32) {
        const aluOp = insn.reg & 7;
        const imm = (insn.imm << 24) >> 24;
        if (insn.rmIsReg) {
          const r = this.alu(aluOp, 32, regs[insn.rm]!, imm);
          if (aluOp !== 7) regs[insn.rm] = r;
        } else {
          const ea = this.effectiveAddress(insn);
          const r = this.alu(aluOp, 32, this.read32(ea), imm);
          if (aluOp !== 7) this.write32(ea, r);
        }
      } else if (op < 0x100) this.executeOneByte(insn, op);
      else this.executeTwoByte(insn, op & 0xff);
      if (this.breakLoop || n >= count) return;
      const eip = this.eip;
      this.startEip = eip;
      let next: Insn | null;
      if (!insn.valid) {
        next = this.fetch();
      } else if (eip === fall) {
        next = insn.next;
        if (next === null || !next.valid || next.codeSize !== this.codeSize) {
          next = this.fetch();
          if (insn.endOffset < 4096 && insn.valid) insn.next = next;
        }
      } else {
        next = insn.branch;
        const csBase = this.segBase[1]!;
        if (
          next === null ||
          insn.branchEip !== eip ||
          insn.branchCsBase !== csBase ||
          !next.valid ||
          next.codeSize !== this.codeSize
        ) {
          next = this.fetch();
          // Link only targets in the same linear (hence physical) page.
          if (insn.valid && ((csBase + start) ^ (csBase + eip)) >>> 12 === 0) {
            insn.branch = next;
            insn.branchEip = eip;
            insn.branchCsBase = csBase;
          }
        }
      }
      insn = next;
    }
  }

  /** 32-bit ALU with a register and a register/memory operand (opcodes x1 and x3 of rows 00-3F). */
  private alu32RegisterForms(insn: Insn, aluOp: number, toRegister: boolean): void {
    const regs = this.regs;
    if (toRegister) {
      const src = insn.rmIsReg ? regs[insn.rm]! : this.read32(this.effectiveAddress(insn));
      const r = this.alu(aluOp, 32, regs[insn.reg]!, src);
      if (aluOp !== 7) regs[insn.reg] = r;
    } else if (insn.rmIsReg) {
      const r = this.alu(aluOp, 32, regs[insn.rm]!, regs[insn.reg]!);
      if (aluOp !== 7) regs[insn.rm] = r;
    } else {
      const ea = this.effectiveAddress(insn);
      const r = this.alu(aluOp, 32, this.read32(ea), regs[insn.reg]!);
      if (aluOp !== 7) this.write32(ea, r);
    }
  }

  private handleThrow(e: unknown): StopReason | null {
    if (e instanceof CpuFault) {
      // ESP is only changed by instructions after their last possible
      // fault, or they restore it themselves (PUSHA, POPA, ENTER, LEAVE).
      this.eip = this.startEip;
      if (this.codeSize === SIZE64) this.ripHigh = this.startRipHigh;
      try {
        this.raiseException(e.vector, e.errorCode);
      } catch (inner) {
        if (inner instanceof CpuFault) return { kind: "shutdown", why: "fault during exception delivery" };
        return this.handleThrow(inner);
      }
      return null;
    }
    if (e instanceof TripleFault) return { kind: "shutdown", why: `triple fault (${e.why})` };
    if (e instanceof Unimplemented) return this.unimplementedStop(e.what);
    if (e instanceof DecodeError) {
      this.eip = this.startEip;
      return this.handleThrow(new CpuFault(EXC_GP, 0));
    }
    // A bug in the emulator: report it as a stop, never throw out of run().
    const message = e instanceof Error ? e.message : String(e);
    return { kind: "stop", why: `internal emulator error: ${message} at ${this.describeState()}` };
  }

  private unimplementedStop(what: string): StopReason {
    const address = (this.segBase[1]! + this.startEip) >>> 0;
    if (this.codeSize === SIZE64) this.ripHigh = this.startRipHigh;
    this.linHigh = this.codeSize === SIZE64 ? this.ripHigh : 0;
    const bytes: number[] = [];
    for (let i = 0; i < 15; i++) {
      try {
        bytes.push(this.read8((address + i) | 0));
      } catch {
        break;
      }
    }
    this.eip = this.startEip;
    this.lastUnimplemented = what;
    return { kind: "unimplemented", address, bytes, mode: this.mode };
  }

  /** What the last `unimplemented` stop was about (instruction or feature). */
  lastUnimplemented = "";

  /**
   * Delivers an exception. A fault while delivering it becomes #DF when
   * both are contributory or the first was #PF (SDM vol. 3 table 6-5), is
   * delivered instead otherwise, and a fault while delivering #DF shuts the
   * CPU down (triple fault). State changed by a failed attempt (stack, CPL)
   * is rolled back first.
   */
  private raiseException(vector: number, errorCode: number): void {
    for (let attempt = 0; ; attempt++) {
      try {
        this.deliverWithRollback(
          vector,
          hasErrorCode(vector) ? errorCode & 0xffff : -1,
          false,
          false,
          this.eip,
        );
        return;
      } catch (e) {
        if (!(e instanceof CpuFault)) throw e;
        if (vector === EXC_DF || attempt > 3) {
          throw new TripleFault(`exception ${e.vector} while delivering exception ${vector}`);
        }
        const first = faultClass(vector);
        const second = faultClass(e.vector);
        if ((first === 1 && second === 1) || (first === 2 && second !== 0)) {
          vector = EXC_DF;
          errorCode = 0;
        } else {
          vector = e.vector;
          errorCode = e.errorCode;
        }
      }
    }
  }

  // =====================================================================
  // Modes, TLB, code cache
  // =====================================================================

  private updateModes(): void {
    if (!(this.cr0 & CR0_PE)) {
      this.codeSize = SIZE16;
      this.stack32 = false; // real mode: 16-bit stack
      this.cpl = 0;
    } else if (this.flagsBase & VM) {
      this.codeSize = SIZE16;
      this.stack32 = false;
      this.cpl = 3;
    } else if (this.efer & EFER_LMA && this.segAttr[1]! & ATTR_L) {
      this.codeSize = SIZE64;
      this.stack32 = true;
    } else {
      this.codeSize = this.segAttr[1]! & ATTR_DB ? SIZE32 : SIZE16;
      this.stack32 = (this.segAttr[2]! & ATTR_DB) !== 0 || (this.efer & EFER_LMA) !== 0;
      this.ripHigh = 0;
    }
    this.paging = (this.cr0 & CR0_PG) !== 0 && (this.cr0 & CR0_PE) !== 0;
    this.pae = (this.cr4 & CR4_PAE) !== 0;
  }

  flushTlb(includeGlobal: boolean): void {
    if (this.tlbOverflow || includeGlobal) {
      if (includeGlobal) {
        this.tlb.fill(0);
        this.tlbTrackedCount = 0;
        this.tlbOverflow = false;
        return;
      }
      // Keep global entries: scan the whole table once.
      const tlb = this.tlb;
      for (let i = 0; i < tlb.length; i++) if (tlb[i]! && !(tlb[i]! & TLB_GLOBAL)) tlb[i] = 0;
      this.tlbTrackedCount = 0;
      this.tlbOverflow = true; // globals remain but are untracked
      return;
    }
    const tlb = this.tlb;
    let kept = 0;
    for (let i = 0; i < this.tlbTrackedCount; i++) {
      const page = this.tlbTracked[i]!;
      const e = tlb[page]!;
      if (e & TLB_GLOBAL && this.cr4 & CR4_PGE) this.tlbTracked[kept++] = page;
      else tlb[page] = 0;
    }
    this.tlbTrackedCount = kept;
  }

  private invalidateCodePage(page: number): void {
    const cache = this.pageCache[page];
    if (cache !== undefined) for (const insn of cache) if (insn !== undefined) insn.valid = false;
    this.pageCache[page] = undefined;
    this.memory.codePages[page] = 0;
    this.codeBlocks.fill(0, page << 4, (page + 1) << 4);
  }

  /** Drops the cached instructions that overlap 256-byte block `block` (a store hit it). */
  private invalidateCodeBlock(block: number): void {
    this.codeBlocks[block] = 0;
    const cache = this.pageCache[block >>> 4];
    if (cache === undefined) return;
    const first = (block & 15) << 8;
    // Instructions are at most 15 bytes: those starting up to 14 bytes before the block may reach into it.
    for (let off = first > 14 ? first - 14 : 0; off < first + 256; off++) {
      const insn = cache[off];
      if (insn !== undefined && off + insn.length > first) {
        insn.valid = false;
        cache[off] = undefined;
      }
    }
  }

  private invalidateAllCode(): void {
    for (let page = 0; page < this.cachePages; page++) {
      if (this.pageCache[page] !== undefined) this.invalidateCodePage(page);
    }
  }

  /** The decoded instruction at CS:EIP, from the per-page cache or freshly decoded. */
  private fetch(): Insn {
    this.linHigh = this.codeSize === SIZE64 ? this.ripHigh : 0;
    const lin = (this.segBase[1]! + this.eip) | 0;
    const phys = this.paging ? this.translate(lin, false, this.cpl === 3, true) : (lin & this.a20Mask) >>> 0;
    const page = phys >>> 12;
    if (page < this.cachePages) {
      let cache = this.pageCache[page];
      if (cache === undefined) {
        cache = new Array<Insn | undefined>(4096);
        this.pageCache[page] = cache;
        this.memory.codePages[page] = 1;
      }
      const cached = cache[phys & 0xfff];
      if (cached !== undefined && cached.codeSize === this.codeSize) return cached;
      const insn = this.decodeAt(lin, phys, new Insn());
      if (!this.fetchCrossed) {
        insn.valid = true;
        insn.endOffset = (phys & 0xfff) + insn.length;
        cache[phys & 0xfff] = insn;
        this.codeBlocks[phys >>> 8] = 1;
        this.codeBlocks[(phys + insn.length - 1) >>> 8] = 1;
      }
      return insn;
    }
    const insn = this.decodeAt(lin, phys, this.scratchInsn);
    insn.valid = false;
    return insn;
  }

  private decodeAt(lin: number, phys: number, out: Insn): Insn {
    this.fetchLin = lin;
    this.fetchPhys = phys;
    this.fetchCrossed = false;
    return decode(this, this.codeSize, out);
  }

  /** CodeSource: byte `index` of the instruction being decoded. */
  byte(index: number): number {
    const lin = (this.fetchLin + index) | 0;
    if (((lin ^ this.fetchLin) & ~0xfff) === 0) return this.physRead8(this.fetchPhys + index);
    this.fetchCrossed = true;
    const phys = this.paging ? this.translate(lin, false, this.cpl === 3, true) : (lin & this.a20Mask) >>> 0;
    return this.physRead8(phys);
  }

  // =====================================================================
  // Paging (SDM vol. 3 ch. 4)
  // =====================================================================

  /** Linear -> physical for an access; walks the page tables on a TLB miss. */
  translate(lin: number, write: boolean, user: boolean, fetch: boolean): number {
    const e = this.tlb[lin >>> 12]!;
    const need = TLB_VALID | (write ? TLB_WRITE : 0) | (user ? TLB_USER : 0);
    if ((e & need) === need && !(fetch && e & TLB_NX) && this.tlbHigh[lin >>> 12] === this.linHigh) {
      return ((e & ~0xfff) | (lin & 0xfff)) >>> 0;
    }
    return this.walk(lin, write, user, fetch);
  }

  private pageFault(lin: number, present: boolean, write: boolean, user: boolean, fetch: boolean): never {
    this.cr2 = lin;
    this.cr2High = this.linHigh;
    const code =
      (present ? 1 : 0) |
      (write ? 2 : 0) |
      (user ? 4 : 0) |
      (fetch && this.efer & EFER_NXE && this.pae ? 16 : 0);
    throw new CpuFault(EXC_PF, code);
  }

  private walk(lin: number, write: boolean, user: boolean, fetch: boolean): number {
    const wp = (this.cr0 & CR0_WP) !== 0;
    let phys: number;
    let userOk: boolean;
    let writeOk: boolean;
    let global: boolean;
    let nx = false;
    let dirty: boolean;
    if (this.efer & EFER_LMA) return this.walk4(lin, write, user, fetch);
    if (!this.pae) {
      const pdeAddr = ((this.cr3 & ~0xfff) + ((lin >>> 22) << 2)) >>> 0;
      const pde = this.physRead32(pdeAddr);
      if (!(pde & 1)) this.pageFault(lin, false, write, user, fetch);
      if (pde & 0x80 && this.cr4 & CR4_PSE) {
        userOk = (pde & 4) !== 0;
        writeOk = (pde & 2) !== 0;
        this.checkAccess(lin, userOk, writeOk, false, write, user, fetch, wp);
        const updated = pde | 0x20 | (write ? 0x40 : 0);
        if (updated !== pde) this.physWrite32(pdeAddr, updated);
        phys = ((pde & 0xffc00000) | (lin & 0x3ff000)) >>> 0;
        global = (pde & 0x100) !== 0;
        dirty = (updated & 0x40) !== 0;
      } else {
        const pteAddr = ((pde & ~0xfff) + (((lin >>> 12) & 0x3ff) << 2)) >>> 0;
        const pte = this.physRead32(pteAddr);
        if (!(pte & 1)) this.pageFault(lin, false, write, user, fetch);
        userOk = (pde & pte & 4) !== 0;
        writeOk = (pde & pte & 2) !== 0;
        this.checkAccess(lin, userOk, writeOk, false, write, user, fetch, wp);
        if (!(pde & 0x20)) this.physWrite32(pdeAddr, pde | 0x20);
        const updated = pte | 0x20 | (write ? 0x40 : 0);
        if (updated !== pte) this.physWrite32(pteAddr, updated);
        phys = (pte & ~0xfff) >>> 0;
        global = (pte & 0x100) !== 0;
        dirty = (updated & 0x40) !== 0;
      }
    } else {
      // PAE: 4 PDPTEs (CR3 bits 31:5), 512-entry directories and tables of 8-byte entries.
      const nxe = (this.efer & EFER_NXE) !== 0;
      const pdpteAddr = ((this.cr3 & ~0x1f) + ((lin >>> 30) << 3)) >>> 0;
      const pdpte = this.physRead32(pdpteAddr);
      if (!(pdpte & 1)) this.pageFault(lin, false, write, user, fetch);
      const pdeAddr = ((pdpte & ~0xfff) + (((lin >>> 21) & 0x1ff) << 3)) >>> 0;
      const pde = this.physRead32(pdeAddr);
      const pdeHigh = this.physRead32(pdeAddr + 4);
      if (!(pde & 1)) this.pageFault(lin, false, write, user, fetch);
      if (!nxe && pdeHigh & 0x80000000) this.reservedBitFault(lin, write, user, fetch);
      if (pde & 0x80) {
        userOk = (pde & 4) !== 0;
        writeOk = (pde & 2) !== 0;
        nx = nxe && (pdeHigh & 0x80000000) !== 0;
        this.checkAccess(lin, userOk, writeOk, nx, write, user, fetch, wp);
        const updated = pde | 0x20 | (write ? 0x40 : 0);
        if (updated !== pde) this.physWrite32(pdeAddr, updated);
        phys = ((pde & 0xffe00000) | (lin & 0x1ff000)) >>> 0;
        global = (pde & 0x100) !== 0;
        dirty = (updated & 0x40) !== 0;
      } else {
        const pteAddr = ((pde & ~0xfff) + (((lin >>> 12) & 0x1ff) << 3)) >>> 0;
        const pte = this.physRead32(pteAddr);
        const pteHigh = this.physRead32(pteAddr + 4);
        if (!(pte & 1)) this.pageFault(lin, false, write, user, fetch);
        if (!nxe && pteHigh & 0x80000000) this.reservedBitFault(lin, write, user, fetch);
        userOk = (pde & pte & 4) !== 0;
        writeOk = (pde & pte & 2) !== 0;
        nx = nxe && ((pdeHigh | pteHigh) & 0x80000000) !== 0;
        this.checkAccess(lin, userOk, writeOk, nx, write, user, fetch, wp);
        if (!(pde & 0x20)) this.physWrite32(pdeAddr, pde | 0x20);
        const updated = pte | 0x20 | (write ? 0x40 : 0);
        if (updated !== pte) this.physWrite32(pteAddr, updated);
        phys = (pte & ~0xfff) >>> 0;
        global = (pte & 0x100) !== 0;
        dirty = (updated & 0x40) !== 0;
      }
    }
    return this.cacheTranslation(lin, phys, writeOk && dirty, userOk, global, nx);
  }

  /**
   * IA-32e 4-level walk (SDM vol. 3 §4.5): PML4 (linear bits 47:39), PDPT
   * (38:30, PS = 1 GiB page), PD (29:21, PS = 2 MiB page), PT (20:12).
   * U/S and R/W are ANDed over the levels, XD ORed (reserved when EFER.NXE=0).
   */
  private walk4(lin: number, write: boolean, user: boolean, fetch: boolean): number {
    const high = this.linHigh;
    const nxe = (this.efer & EFER_NXE) !== 0;
    const wp = (this.cr0 & CR0_WP) !== 0;
    let table = (this.cr3 & ~0xfff) >>> 0;
    let userOk = true;
    let writeOk = true;
    let nx = false;
    for (let level = 0; level < 4; level++) {
      const index =
        level === 0
          ? (high >>> 7) & 0x1ff
          : level === 1
            ? ((high & 0x7f) << 2) | (lin >>> 30)
            : level === 2
              ? (lin >>> 21) & 0x1ff
              : (lin >>> 12) & 0x1ff;
      const addr = (table + index * 8) >>> 0;
      const entry = this.physRead32(addr);
      const entryHigh = this.physRead32(addr + 4);
      if (!(entry & 1)) this.pageFault(lin, false, write, user, fetch);
      if (entryHigh & 0x80000000) {
        if (!nxe) this.reservedBitFault(lin, write, user, fetch);
        nx = true;
      }
      userOk &&= (entry & 4) !== 0;
      writeOk &&= (entry & 2) !== 0;
      if (level === 3 || (level > 0 && entry & 0x80)) {
        this.checkAccess(lin, userOk, writeOk, nx, write, user, fetch, wp);
        const updated = entry | 0x20 | (write ? 0x40 : 0);
        if (updated !== entry) this.physWrite32(addr, updated);
        // 1 GiB, 2 MiB or 4 KiB frame (bit 12 of a large-page entry is PAT).
        const offsetMask = level === 1 ? 0x3fffffff : level === 2 ? 0x1fffff : 0xfff;
        const phys = ((entry & ~offsetMask & ~0xfff) | (lin & offsetMask & ~0xfff)) >>> 0;
        return this.cacheTranslation(
          lin,
          phys,
          writeOk && (updated & 0x40) !== 0,
          userOk,
          (entry & 0x100) !== 0,
          nx,
        );
      }
      if (!(entry & 0x20)) this.physWrite32(addr, entry | 0x20);
      table = (entry & ~0xfff) >>> 0;
    }
    throw new Error("unreachable: the walk ends at level 3");
  }

  /** Stores a translation in the TLB and returns the physical address of `lin`. */
  private cacheTranslation(
    lin: number,
    phys: number,
    writable: boolean,
    userOk: boolean,
    global: boolean,
    nx: boolean,
  ): number {
    phys = (phys & this.a20Mask) >>> 0;
    // Cache the translation. Writes are allowed from the TLB only when the
    // page is writable for everyone who may use the entry and already dirty.
    let entry = phys | TLB_VALID;
    if (writable) entry |= TLB_WRITE;
    if (userOk) entry |= TLB_USER;
    if (global) entry |= TLB_GLOBAL;
    if (nx) entry |= TLB_NX;
    const page = lin >>> 12;
    if (this.tlb[page] === 0) {
      if (this.tlbTrackedCount < TLB_TRACK_MAX) this.tlbTracked[this.tlbTrackedCount++] = page;
      else this.tlbOverflow = true;
    }
    this.tlb[page] = entry;
    this.tlbHigh[page] = this.linHigh;
    return (phys | (lin & 0xfff)) >>> 0;
  }

  private reservedBitFault(lin: number, write: boolean, user: boolean, fetch: boolean): never {
    this.cr2 = lin;
    this.cr2High = this.linHigh;
    throw new CpuFault(EXC_PF, 1 | 8 | (write ? 2 : 0) | (user ? 4 : 0) | (fetch ? 16 : 0));
  }

  private checkAccess(
    lin: number,
    userOk: boolean,
    writeOk: boolean,
    nx: boolean,
    write: boolean,
    user: boolean,
    fetch: boolean,
    wp: boolean,
  ): void {
    if (user && !userOk) this.pageFault(lin, true, write, user, fetch);
    if (write && !writeOk && (user || wp)) this.pageFault(lin, true, write, user, fetch);
    if (fetch && nx) this.pageFault(lin, true, write, user, fetch);
  }

  // =====================================================================
  // Physical and linear memory access
  // =====================================================================

  physRead8(p: number): number {
    if (p < this.fastEnd && (p - HOLE_START) >>> 0 >= HOLE_SIZE) return this.ram[p]!;
    return this.memory.read8(p);
  }
  physRead16(p: number): number {
    if (p + 1 < this.fastEnd && (p - HOLE_START) >>> 0 >= HOLE_SIZE) return this.view.getUint16(p, true);
    return this.memory.read16(p);
  }
  physRead32(p: number): number {
    if (p + 3 < this.fastEnd && (p - HOLE_START) >>> 0 >= HOLE_SIZE) return this.view.getInt32(p, true);
    return this.memory.read32(p) | 0;
  }
  physWrite8(p: number, v: number): void {
    if (p < this.fastEnd && (p - HOLE_START) >>> 0 >= HOLE_SIZE) {
      this.ram[p] = v;
      if (this.codeBlocks[p >>> 8]) this.invalidateCodeBlock(p >>> 8);
    } else this.memory.write8(p, v & 0xff);
  }
  physWrite16(p: number, v: number): void {
    if (p + 1 < this.fastEnd && (p - HOLE_START) >>> 0 >= HOLE_SIZE) {
      this.view.setUint16(p, v, true);
      if (this.codeBlocks[p >>> 8]) this.invalidateCodeBlock(p >>> 8);
      if (this.codeBlocks[(p + 1) >>> 8]) this.invalidateCodeBlock((p + 1) >>> 8);
    } else this.memory.write16(p, v & 0xffff);
  }
  physWrite32(p: number, v: number): void {
    if (p + 3 < this.fastEnd && (p - HOLE_START) >>> 0 >= HOLE_SIZE) {
      this.view.setInt32(p, v, true);
      if (this.codeBlocks[p >>> 8]) this.invalidateCodeBlock(p >>> 8);
      if (this.codeBlocks[(p + 3) >>> 8]) this.invalidateCodeBlock((p + 3) >>> 8);
    } else this.memory.write32(p, v >>> 0);
  }

  private tr(lin: number, write: boolean): number {
    if (!this.paging) return (lin & this.a20Mask) >>> 0;
    return this.translate(lin, write, this.cpl === 3, false);
  }

  /** Supervisor-mode translation for implicit system accesses (GDT, IDT, TSS). */
  private trSys(lin: number, write: boolean): number {
    if (!this.paging) return (lin & this.a20Mask) >>> 0;
    return this.translate(lin, write, false, false);
  }

  read8(lin: number): number {
    return this.physRead8(this.tr(lin, false));
  }
  read16(lin: number): number {
    if ((lin & 0xfff) === 0xfff) return this.read8(lin) | (this.read8((lin + 1) | 0) << 8);
    return this.physRead16(this.tr(lin, false));
  }
  /** 32-bit read as a signed int32. */
  read32(lin: number): number {
    if ((lin & 0xfff) > 0xffc) {
      return this.read16(lin) | (this.read16((lin + 2) | 0) << 16);
    }
    return this.physRead32(this.tr(lin, false));
  }
  write8(lin: number, v: number): void {
    this.physWrite8(this.tr(lin, true), v);
  }
  write16(lin: number, v: number): void {
    if ((lin & 0xfff) === 0xfff) {
      this.tr((lin + 1) | 0, true);
      this.write8(lin, v);
      this.write8((lin + 1) | 0, v >>> 8);
      return;
    }
    this.physWrite16(this.tr(lin, true), v);
  }
  write32(lin: number, v: number): void {
    if ((lin & 0xfff) > 0xffc) {
      this.tr(lin, true);
      this.tr((lin + 3) | 0, true);
      for (let i = 0; i < 4; i++) this.write8((lin + i) | 0, v >>> (8 * i));
      return;
    }
    this.physWrite32(this.tr(lin, true), v);
  }

  private sysRead32(lin: number): number {
    if ((lin & 0xfff) > 0xffc) {
      let v = 0;
      for (let i = 0; i < 4; i++) v |= this.physRead8(this.trSys((lin + i) | 0, false)) << (8 * i);
      return v;
    }
    return this.physRead32(this.trSys(lin, false));
  }
  private sysRead16(lin: number): number {
    return (
      (this.physRead8(this.trSys(lin, false)) | (this.physRead8(this.trSys((lin + 1) | 0, false)) << 8)) >>> 0
    );
  }
  private sysWrite32(lin: number, v: number): void {
    if ((lin & 0xfff) > 0xffc) {
      for (let i = 0; i < 4; i++) this.physWrite8(this.trSys((lin + i) | 0, true), v >>> (8 * i));
      return;
    }
    this.physWrite32(this.trSys(lin, true), v);
  }

  /** Reads `size` (8/16/32) at a linear address; values are unsigned. */
  readSized(size: number, lin: number): number {
    if (size === 32) return this.read32(lin) >>> 0;
    if (size === 16) return this.read16(lin);
    return this.read8(lin);
  }
  writeSized(size: number, lin: number, v: number): void {
    if (size === 32) this.write32(lin, v);
    else if (size === 16) this.write16(lin, v);
    else this.write8(lin, v);
  }

  /** Linear address of the ModRM memory operand. */
  effectiveAddress(insn: Insn): number {
    if (insn.codeSize === SIZE64) return this.effectiveAddress64(insn);
    let off = insn.disp;
    if (insn.eaBase !== NO_REG) off += this.regs[insn.eaBase]!;
    if (insn.eaIndex !== NO_REG) off += this.regs[insn.eaIndex]! << insn.eaScale;
    if (insn.adSize === SIZE16) off &= 0xffff;
    return (this.segBase[insn.eaSeg]! + off) | 0;
  }

  /** Offset part only (LEA). */
  private effectiveOffset(insn: Insn): number {
    let off = insn.disp;
    if (insn.eaBase !== NO_REG) off += this.regs[insn.eaBase]!;
    if (insn.eaIndex !== NO_REG) off += this.regs[insn.eaIndex]! << insn.eaScale;
    return insn.adSize === SIZE16 ? off & 0xffff : off | 0;
  }

  // =====================================================================
  // Registers by size
  // =====================================================================

  private getReg(size: number, r: number): number {
    if (size === 32) return this.regs[r]! >>> 0;
    if (size === 16) return this.regs[r]! & 0xffff;
    return r < 4 ? this.regs[r]! & 0xff : (this.regs[r - 4]! >> 8) & 0xff;
  }

  private setReg(size: number, r: number, v: number): void {
    if (size === 32) this.regs[r] = v;
    else if (size === 16) this.regs[r] = (this.regs[r]! & ~0xffff) | (v & 0xffff);
    else if (r < 4) this.regs[r] = (this.regs[r]! & ~0xff) | (v & 0xff);
    else this.regs[r - 4] = (this.regs[r - 4]! & ~0xff00) | ((v & 0xff) << 8);
  }

  /** Reads the r/m operand; for memory, remembers the address for a following writeRM. */
  private readRM(insn: Insn, size: number): number {
    if (insn.rmIsReg) return this.getReg(size, insn.rm);
    this.ea = this.effectiveAddress(insn);
    return this.readSized(size, this.ea);
  }

  /** Writes the r/m operand at the address computed by the preceding readRM. */
  private writeRMAgain(insn: Insn, size: number, v: number): void {
    if (insn.rmIsReg) this.setReg(size, insn.rm, v);
    else this.writeSized(size, this.ea, v);
  }

  private writeRM(insn: Insn, size: number, v: number): void {
    if (insn.rmIsReg) this.setReg(size, insn.rm, v);
    else this.writeSized(size, this.effectiveAddress(insn), v);
  }

  // =====================================================================
  // Flags
  // =====================================================================

  private setLazy(op: number, a: number, b: number, r: number, size: number): void {
    this.lazy = LAZY_ALL;
    this.lOp = op;
    this.lA = a;
    this.lB = b;
    this.lR = r;
    this.lSign = size === 32 ? 0x80000000 : size === 16 ? 0x8000 : 0x80;
  }

  private lazyCF(): number {
    const a = this.lA;
    const b = this.lB;
    const r = this.lR;
    switch (this.lOp) {
      case OP_ADD:
        return r < a ? 1 : 0;
      case OP_ADC:
        return r <= a ? 1 : 0;
      case OP_SUB:
        return a < b ? 1 : 0;
      case OP_SBB:
        return a <= b ? 1 : 0;
      default:
        return 0;
    }
  }

  private lazyOF(): boolean {
    const op = this.lOp;
    if (op === OP_LOGIC) return false;
    if (op <= OP_ADC) return ((this.lA ^ this.lR) & (this.lB ^ this.lR) & this.lSign) !== 0;
    return ((this.lA ^ this.lB) & (this.lA ^ this.lR) & this.lSign) !== 0;
  }

  getCF(): number {
    if (this.lazy === LAZY_ALL) return this.lazyCF();
    return this.flagsBase & CF;
  }
  private getZF(): boolean {
    return this.lazy ? this.lR === 0 : (this.flagsBase & ZF) !== 0;
  }
  private getSF(): boolean {
    return this.lazy ? (this.lR & this.lSign) !== 0 : (this.flagsBase & SF) !== 0;
  }
  private getOF(): boolean {
    return this.lazy ? this.lazyOF() : (this.flagsBase & OF) !== 0;
  }
  private getPF(): boolean {
    return this.lazy ? PARITY[this.lR & 0xff] !== 0 : (this.flagsBase & PF) !== 0;
  }
  private getAF(): number {
    if (!this.lazy) return this.flagsBase & AF;
    return this.lOp === OP_LOGIC ? 0 : (this.lA ^ this.lB ^ this.lR) & AF;
  }

  materializeFlags(): number {
    if (this.lazy !== LAZY_NONE) {
      let f = this.flagsBase & ~(ARITH_FLAGS & ~(this.lazy === LAZY_NOT_CF ? CF : 0));
      if (this.lazy === LAZY_ALL) f |= this.lazyCF();
      f |= PARITY[this.lR & 0xff]!;
      f |= this.getAF();
      if (this.lR === 0) f |= ZF;
      if (this.lR & this.lSign) f |= SF;
      if (this.lazyOF()) f |= OF;
      this.flagsBase = f;
      this.lazy = LAZY_NONE;
    }
    return this.flagsBase;
  }

  /** Sets the arithmetic flags eagerly (shifts, multiplies, BCD...). */
  private setArith(r: number, size: number, cf: number, of: boolean, af = 0): void {
    const sign = size === 32 ? 0x80000000 : size === 16 ? 0x8000 : 0x80;
    const mask = size === 32 ? 0xffffffff : size === 16 ? 0xffff : 0xff;
    let f = (this.flagsBase & ~ARITH_FLAGS) | (cf ? CF : 0) | PARITY[r & 0xff]! | (af ? AF : 0);
    if ((r & mask) === 0) f |= ZF;
    if (r & sign) f |= SF;
    if (of) f |= OF;
    this.flagsBase = f;
    this.lazy = LAZY_NONE;
  }

  private setFlagBit(bit: number, on: boolean): void {
    this.materializeFlags();
    if (on) this.flagsBase |= bit;
    else this.flagsBase &= ~bit;
  }

  /** Condition code tt (0-15) as used by Jcc/SETcc/CMOVcc. */
  private condition(cc: number): boolean {
    let r: boolean;
    switch (cc >> 1) {
      case 0:
        r = this.getOF();
        break;
      case 1:
        r = this.getCF() !== 0;
        break;
      case 2:
        r = this.getZF();
        break;
      case 3:
        r = this.getCF() !== 0 || this.getZF();
        break;
      case 4:
        r = this.getSF();
        break;
      case 5:
        r = this.getPF();
        break;
      case 6:
        r = this.getSF() !== this.getOF();
        break;
      default:
        r = this.getZF() || this.getSF() !== this.getOF();
        break;
    }
    return cc & 1 ? !r : r;
  }

  // =====================================================================
  // ALU
  // =====================================================================

  /** Group-1 ALU operation (0 ADD, 1 OR, 2 ADC, 3 SBB, 4 AND, 5 SUB, 6 XOR, 7 CMP). */
  private alu(op: number, size: number, a: number, b: number): number {
    const mask = size === 32 ? 0xffffffff : size === 16 ? 0xffff : 0xff;
    a = (a & mask) >>> 0;
    b = (b & mask) >>> 0;
    let r: number;
    switch (op) {
      case 0:
        r = ((a + b) & mask) >>> 0;
        this.setLazy(OP_ADD, a, b, r, size);
        return r;
      case 1:
        r = ((a | b) & mask) >>> 0;
        this.setLazy(OP_LOGIC, a, b, r, size);
        return r;
      case 2: {
        const c = this.getCF();
        r = ((a + b + c) & mask) >>> 0;
        this.setLazy(c ? OP_ADC : OP_ADD, a, b, r, size);
        return r;
      }
      case 3: {
        const c = this.getCF();
        r = ((a - b - c) & mask) >>> 0;
        this.setLazy(c ? OP_SBB : OP_SUB, a, b, r, size);
        return r;
      }
      case 4:
        r = (a & b & mask) >>> 0;
        this.setLazy(OP_LOGIC, a, b, r, size);
        return r;
      case 6:
        r = ((a ^ b) & mask) >>> 0;
        this.setLazy(OP_LOGIC, a, b, r, size);
        return r;
      default:
        r = ((a - b) & mask) >>> 0;
        this.setLazy(OP_SUB, a, b, r, size);
        return r;
    }
  }

  private incDec(size: number, a: number, dec: boolean): number {
    const cf = this.getCF();
    const mask = size === 32 ? 0xffffffff : size === 16 ? 0xffff : 0xff;
    a = (a & mask) >>> 0;
    const r = ((dec ? a - 1 : a + 1) & mask) >>> 0;
    this.flagsBase = (this.flagsBase & ~CF) | cf;
    this.setLazy(dec ? OP_SUB : OP_ADD, a, 1, r, size);
    this.lazy = LAZY_NOT_CF;
    return r;
  }

  /** Shift/rotate group 2 (0 ROL, 1 ROR, 2 RCL, 3 RCR, 4 SHL, 5 SHR, 6 SAL, 7 SAR). */
  private shift(op: number, size: number, a: number, count: number): number {
    count &= 0x1f;
    if (count === 0) return a;
    const mask = size === 32 ? 0xffffffff : size === 16 ? 0xffff : 0xff;
    const sign = size === 32 ? 0x80000000 : size === 16 ? 0x8000 : 0x80;
    a = (a & mask) >>> 0;
    let r: number;
    let cf: number;
    switch (op) {
      case 0: {
        // ROL: flags only CF and OF change
        const n = count % size;
        r = n === 0 ? a : (((a << n) | (a >>> (size - n))) & mask) >>> 0;
        cf = r & 1;
        this.setCfOf(cf, ((r & sign) !== 0) !== (cf !== 0));
        return r;
      }
      case 1: {
        const n = count % size;
        r = n === 0 ? a : (((a >>> n) | (a << (size - n))) & mask) >>> 0;
        cf = (r & sign) !== 0 ? 1 : 0;
        this.setCfOf(cf, ((r ^ (r << 1)) & sign) !== 0);
        return r;
      }
      case 2: {
        // RCL through CF: rotate size+1 bits
        const n = count % (size + 1);
        r = a;
        cf = this.getCF();
        for (let i = 0; i < n; i++) {
          const out = (r & sign) !== 0 ? 1 : 0;
          r = (((r << 1) | cf) & mask) >>> 0;
          cf = out;
        }
        this.setCfOf(cf, ((r & sign) !== 0) !== (cf !== 0));
        return r;
      }
      case 3: {
        const n = count % (size + 1);
        r = a;
        cf = this.getCF();
        const of = ((r & sign) !== 0) !== (cf !== 0);
        for (let i = 0; i < n; i++) {
          const out = r & 1;
          r = ((r >>> 1) | (cf ? sign : 0)) >>> 0;
          cf = out;
        }
        this.setCfOf(cf, of);
        return r;
      }
      case 4:
      case 6: {
        if (count <= size) {
          cf = count === size ? a & 1 : (a >>> (size - count)) & 1;
          r = count >= 32 ? 0 : ((a << count) & mask) >>> 0;
        } else {
          cf = 0;
          r = 0;
        }
        this.setArith(r, size, cf, ((r & sign) !== 0) !== (cf !== 0));
        return r;
      }
      case 5: {
        cf = count > size ? 0 : (a >>> (count - 1)) & 1;
        r = count >= 32 ? 0 : (a >>> count) >>> 0;
        this.setArith(r, size, cf, (a & sign) !== 0);
        return r;
      }
      default: {
        // SAR
        const signed = size === 32 ? a | 0 : size === 16 ? (a << 16) >> 16 : (a << 24) >> 24;
        const n = count >= size ? size - 1 : count;
        cf = (signed >> (count >= size ? size - 1 : count - 1)) & 1;
        r = ((signed >> n) & mask) >>> 0;
        this.setArith(r, size, cf, false);
        return r;
      }
    }
  }

  private setCfOf(cf: number, of: boolean): void {
    const f = this.materializeFlags() & ~(CF | OF);
    this.flagsBase = f | (cf ? CF : 0) | (of ? OF : 0);
  }

  /** SHLD/SHRD (count already masked to 0-31). */
  private doubleShift(size: number, dst: number, src: number, count: number, left: boolean): number {
    count &= 31;
    if (count === 0) return dst;
    const mask = size === 32 ? 0xffffffff : 0xffff;
    const sign = size === 32 ? 0x80000000 : 0x8000;
    let r: number;
    let cf: number;
    if (size === 32) {
      if (left) {
        r = ((dst << count) | (src >>> (32 - count))) >>> 0;
        cf = (dst >>> (32 - count)) & 1;
      } else {
        r = ((dst >>> count) | (src << (32 - count))) >>> 0;
        cf = (dst >>> (count - 1)) & 1;
      }
    } else {
      // 16-bit: Intel behaviour for count > 16 uses a 48-bit concatenation (dst:src:dst).
      const wide = left
        ? (BigInt(dst & 0xffff) << 32n) | (BigInt(src & 0xffff) << 16n) | BigInt(dst & 0xffff)
        : (BigInt(dst & 0xffff) << 32n) | (BigInt(src & 0xffff) << 16n) | BigInt(dst & 0xffff);
      if (left) {
        const shifted = wide << BigInt(count);
        r = Number((shifted >> 32n) & 0xffffn);
        cf = Number((shifted >> 48n) & 1n);
      } else {
        const low = (BigInt(src & 0xffff) << 16n) | BigInt(dst & 0xffff);
        const full = (BigInt(dst & 0xffff) << 32n) | low;
        r = Number((full >> BigInt(count)) & 0xffffn);
        cf = Number((full >> BigInt(count - 1)) & 1n);
      }
    }
    r = (r & mask) >>> 0;
    this.setArith(r, size, cf, ((r ^ dst) & sign) !== 0);
    return r;
  }

  // =====================================================================
  // Stack
  // =====================================================================

  private stackLin(offset: number): number {
    return (this.segBase[2]! + offset) | 0;
  }

  push(size: number, v: number): void {
    const n = size >> 3;
    if (this.stack32) {
      const sp = (this.regs[4]! - n) | 0;
      this.writeSized(size, this.stackLin(sp), v);
      this.regs[4] = sp;
    } else {
      const sp = (this.regs[4]! - n) & 0xffff;
      this.writeSized(size, this.stackLin(sp), v);
      this.regs[4] = (this.regs[4]! & ~0xffff) | sp;
    }
  }

  pop(size: number): number {
    const n = size >> 3;
    if (this.stack32) {
      const sp = this.regs[4]!;
      const v = this.readSized(size, this.stackLin(sp));
      this.regs[4] = (sp + n) | 0;
      return v;
    }
    const sp = this.regs[4]! & 0xffff;
    const v = this.readSized(size, this.stackLin(sp));
    this.regs[4] = (this.regs[4]! & ~0xffff) | ((sp + n) & 0xffff);
    return v;
  }

  /** Reads the stack `offset` bytes above SP without popping. */
  private peek(size: number, offset: number): number {
    const sp = this.stack32 ? (this.regs[4]! + offset) | 0 : (this.regs[4]! + offset) & 0xffff;
    return this.readSized(size, this.stackLin(sp));
  }

  private addSp(n: number): void {
    if (this.stack32) this.regs[4] = (this.regs[4]! + n) | 0;
    else this.regs[4] = (this.regs[4]! & ~0xffff) | ((this.regs[4]! + n) & 0xffff);
  }

  // =====================================================================
  // Segmentation (SDM vol. 3 ch. 3, 5)
  // =====================================================================

  private descLow = 0;
  private descHigh = 0;

  /** Reads the descriptor for `selector` into descLow/descHigh; #GP(selector) if outside the table. */
  private readDescriptor(selector: number, vector = EXC_GP): number {
    const index = selector & 0xfff8;
    let base: number;
    let limit: number;
    if (selector & 4) {
      base = this.ldtBase;
      limit = this.ldtLimit;
      if (this.ldtSel === 0) throw new CpuFault(vector, selector & 0xfffc);
    } else {
      base = this.gdtBase;
      limit = this.gdtLimit;
    }
    if (index + 7 > limit) throw new CpuFault(vector, selector & 0xfffc);
    const addr = (base + index) | 0;
    this.linHigh = this.efer & EFER_LMA && !(selector & 4) ? this.gdtBaseHigh : 0;
    this.descLow = this.sysRead32(addr);
    this.descHigh = this.sysRead32((addr + 4) | 0);
    return addr;
  }

  private static descBase(low: number, high: number): number {
    return (low >>> 16) | ((high & 0xff) << 16) | (high & 0xff000000) | 0;
  }

  private static descLimit(low: number, high: number): number {
    const limit = (low & 0xffff) | (high & 0xf0000);
    return high & 0x800000 ? ((limit << 12) | 0xfff) >>> 0 : limit;
  }

  /** Access byte + flags nibble: bits 0-7 access, 8-11 AVL/L/DB/G. */
  private static descAttr(high: number): number {
    return ((high >>> 8) & 0xff) | ((high >>> 12) & 0xf00);
  }

  private setAccessed(addr: number): void {
    if (!(this.descHigh & 0x100)) {
      this.descHigh |= 0x100;
      this.sysWrite32((addr + 4) | 0, this.descHigh);
    }
  }

  private loadCacheFromDescriptor(seg: number, selector: number): void {
    this.segSel[seg] = selector;
    this.segBase[seg] = X86Cpu.descBase(this.descLow, this.descHigh);
    this.segLimit[seg] = X86Cpu.descLimit(this.descLow, this.descHigh);
    this.segAttr[seg] = X86Cpu.descAttr(this.descHigh);
  }

  /** MOV/POP/LxS to a segment register (not CS). */
  loadSegment(seg: number, selector: number): void {
    selector &= 0xffff;
    if (!(this.cr0 & CR0_PE) || this.flagsBase & VM) {
      this.segSel[seg] = selector;
      this.segBase[seg] = selector << 4;
      if (this.flagsBase & VM) {
        this.segLimit[seg] = 0xffff;
        this.segAttr[seg] = seg === 1 ? 0xfb : 0xf3;
      }
      if (seg === 2) this.updateModes();
      return;
    }
    if ((selector & 0xfffc) === 0) {
      if (seg === 2) throw new CpuFault(EXC_GP, 0);
      // Null selector: loads fine, faults on use (we do not check use).
      this.segSel[seg] = selector;
      this.segBase[seg] = 0;
      this.segLimit[seg] = 0;
      this.segAttr[seg] = 0;
      return;
    }
    const addr = this.readDescriptor(selector);
    const attr = X86Cpu.descAttr(this.descHigh);
    const dpl = (attr >> 5) & 3;
    const rpl = selector & 3;
    const isCode = (attr & 0x18) === 0x18;
    const isData = (attr & 0x18) === 0x10;
    if (seg === 2) {
      if (!isData || !(attr & 2) || rpl !== this.cpl || dpl !== this.cpl) {
        throw new CpuFault(EXC_GP, selector & 0xfffc);
      }
      if (!(attr & 0x80)) throw new CpuFault(EXC_SS, selector & 0xfffc);
    } else {
      // Data, or readable code; privilege check for data and non-conforming code.
      if (!(isData || (isCode && attr & 2))) throw new CpuFault(EXC_GP, selector & 0xfffc);
      if ((isData || !(attr & 4)) && (rpl > dpl || this.cpl > dpl)) {
        throw new CpuFault(EXC_GP, selector & 0xfffc);
      }
      if (!(attr & 0x80)) throw new CpuFault(EXC_NP, selector & 0xfffc);
    }
    this.setAccessed(addr);
    this.loadCacheFromDescriptor(seg, selector);
    if (seg === 2) {
      this.updateModes();
      this.inhibitInterrupts = true;
      this.breakLoop = true;
    }
  }

  /** Loads CS for a far JMP/CALL/RET/IRET to a code segment at `newCpl`. */
  private loadCs(selector: number, newCpl: number): void {
    this.loadCacheFromDescriptor(1, (selector & 0xfffc) | newCpl);
    this.cpl = newCpl;
    this.updateModes();
    this.breakLoop = true;
  }

  /** Checks a code-segment descriptor (in descLow/High) for a far JMP/CALL. Returns the new CPL. */
  private checkFarTarget(selector: number): number {
    const attr = X86Cpu.descAttr(this.descHigh);
    if ((attr & 0x18) !== 0x18) {
      const type = attr & 0x1f;
      if (type === 0x0c || type === 0x04) throw new Unimplemented("far transfer through a call gate");
      if (type === 0x05 || type === 0x09 || type === 0x01) throw new Unimplemented("task switch");
      throw new CpuFault(EXC_GP, selector & 0xfffc);
    }
    const dpl = (attr >> 5) & 3;
    const rpl = selector & 3;
    if (attr & 4) {
      if (dpl > this.cpl) throw new CpuFault(EXC_GP, selector & 0xfffc);
    } else if (rpl > this.cpl || dpl !== this.cpl) throw new CpuFault(EXC_GP, selector & 0xfffc);
    if (!(attr & 0x80)) throw new CpuFault(EXC_NP, selector & 0xfffc);
    return this.cpl;
  }

  private farJump(selector: number, offset: number, opSize: number): void {
    selector &= 0xffff;
    if (!(this.cr0 & CR0_PE) || this.flagsBase & VM) {
      this.loadSegment(1, selector);
      this.updateModes();
      this.eip = opSize === SIZE16 ? offset & 0xffff : offset;
      this.breakLoop = true;
      return;
    }
    if ((selector & 0xfffc) === 0) throw new CpuFault(EXC_GP, 0);
    const addr = this.readDescriptor(selector);
    const cpl = this.checkFarTarget(selector);
    this.setAccessed(addr);
    this.loadCs(selector, cpl);
    this.eip = opSize === SIZE16 ? offset & 0xffff : offset;
  }

  private farCall(selector: number, offset: number, opSize: number): void {
    selector &= 0xffff;
    const returnCs = this.segSel[1]!;
    const returnEip = this.eip;
    if (!(this.cr0 & CR0_PE) || this.flagsBase & VM) {
      this.push(opSize, returnCs);
      this.push(opSize, returnEip);
      this.farJump(selector, offset, opSize);
      return;
    }
    if ((selector & 0xfffc) === 0) throw new CpuFault(EXC_GP, 0);
    const addr = this.readDescriptor(selector);
    const cpl = this.checkFarTarget(selector);
    this.push(opSize, returnCs);
    this.push(opSize, returnEip);
    this.setAccessed(addr);
    this.loadCs(selector, cpl);
    this.eip = opSize === SIZE16 ? offset & 0xffff : offset;
  }

  /** RETF (imm = bytes to release). SDM vol. 2 "RET". */
  private farReturn(opSize: number, imm: number): void {
    if (!(this.cr0 & CR0_PE) || this.flagsBase & VM) {
      const ip = this.pop(opSize);
      const cs = this.pop(opSize);
      this.addSp(imm);
      this.loadSegment(1, cs);
      this.updateModes();
      this.eip = ip;
      this.breakLoop = true;
      return;
    }
    const step = opSize >> 3;
    const ip = this.peek(opSize, 0);
    const cs = this.peek(opSize, step) & 0xffff;
    if ((cs & 0xfffc) === 0) throw new CpuFault(EXC_GP, 0);
    const rpl = cs & 3;
    if (rpl < this.cpl) throw new CpuFault(EXC_GP, cs & 0xfffc);
    this.readDescriptor(cs);
    this.checkReturnCode(cs, rpl);
    if (rpl === this.cpl) {
      this.addSp(2 * step + imm);
      this.loadCs(cs, rpl);
      this.eip = ip;
      return;
    }
    // Return to an outer privilege level: new SS:ESP follow the return address.
    const newSp = this.peek(opSize, 2 * step + imm);
    const newSs = this.peek(opSize, 3 * step + imm) & 0xffff;
    const csLow = this.descLow;
    const csHigh = this.descHigh;
    this.loadOuterStack(newSs, rpl);
    this.descLow = csLow;
    this.descHigh = csHigh;
    this.loadCs(cs, rpl);
    this.regs[4] = opSize === SIZE16 ? (this.regs[4]! & ~0xffff) | (newSp & 0xffff) : newSp;
    this.addSp(imm);
    this.eip = ip;
    this.nullInaccessibleSegments();
  }

  private checkReturnCode(cs: number, rpl: number): void {
    const attr = X86Cpu.descAttr(this.descHigh);
    if ((attr & 0x18) !== 0x18) throw new CpuFault(EXC_GP, cs & 0xfffc);
    const dpl = (attr >> 5) & 3;
    if (attr & 4 ? dpl > rpl : dpl !== rpl) throw new CpuFault(EXC_GP, cs & 0xfffc);
    if (!(attr & 0x80)) throw new CpuFault(EXC_NP, cs & 0xfffc);
  }

  /** Validates and loads SS for a return to privilege level `rpl`. */
  private loadOuterStack(ss: number, rpl: number): void {
    if ((ss & 0xfffc) === 0) throw new CpuFault(EXC_GP, 0);
    this.readDescriptor(ss);
    const attr = X86Cpu.descAttr(this.descHigh);
    const dpl = (attr >> 5) & 3;
    if ((attr & 0x1a) !== 0x12 || (ss & 3) !== rpl || dpl !== rpl) throw new CpuFault(EXC_GP, ss & 0xfffc);
    if (!(attr & 0x80)) throw new CpuFault(EXC_SS, ss & 0xfffc);
    this.loadCacheFromDescriptor(2, ss);
    this.updateModes();
  }

  /** After a return to an outer level, data segments more privileged than CPL become null. */
  private nullInaccessibleSegments(): void {
    for (const seg of [0, 3, 4, 5]) {
      const attr = this.segAttr[seg]!;
      const dpl = (attr >> 5) & 3;
      const conformingCode = (attr & 0x1c) === 0x1c;
      if ((this.segSel[seg]! & 0xfffc) !== 0 && !conformingCode && dpl < this.cpl) {
        this.segSel[seg] = 0;
        this.segAttr[seg] = 0;
        this.segBase[seg] = 0;
        this.segLimit[seg] = 0;
      }
    }
  }

  // =====================================================================
  // Interrupts (SDM vol. 3 ch. 6)
  // =====================================================================

  /**
   * Delivers interrupt/exception `vector`. `software` = INT n (gate DPL is
   * checked), `external` = from the interrupt controller (EXT bit in error
   * codes). `returnEip` is the EIP pushed.
   */
  private deliverInterrupt(
    vector: number,
    errorCode: number,
    software: boolean,
    external: boolean,
    returnEip: number,
  ): void {
    this.breakLoop = true;
    this.halted = false;
    const flags = this.materializeFlags();
    if (!(this.cr0 & CR0_PE)) {
      const entry = vector * 4;
      if (entry + 3 > this.idtLimit) throw new CpuFault(EXC_GP, vector * 8 + 2);
      const ip = this.physRead16(this.trSys((this.idtBase + entry) | 0, false));
      const cs = this.physRead16(this.trSys((this.idtBase + entry + 2) | 0, false));
      this.push(16, flags);
      this.push(16, this.segSel[1]!);
      this.push(16, returnEip);
      this.flagsBase &= ~(IF | TF | AC | RF);
      this.loadSegmentReal(1, cs);
      this.eip = ip;
      return;
    }
    if (flags & VM) throw new Unimplemented("interrupt in virtual-8086 mode");
    const ext = external ? 1 : 0;
    if (this.efer & EFER_LMA) {
      this.deliverInterrupt64(vector, errorCode, software, ext, returnEip);
      return;
    }
    const gateSelectorCode = vector * 8 + 2 + ext;
    if (vector * 8 + 7 > this.idtLimit) throw new CpuFault(EXC_GP, gateSelectorCode);
    const gateAddr = (this.idtBase + vector * 8) | 0;
    const low = this.sysRead32(gateAddr);
    const high = this.sysRead32((gateAddr + 4) | 0);
    const type = (high >> 8) & 0x1f;
    const gateDpl = (high >> 13) & 3;
    if (type === 0x05) throw new Unimplemented("task gate in the IDT");
    if (type !== 0x0e && type !== 0x0f && type !== 0x06 && type !== 0x07) {
      throw new CpuFault(EXC_GP, gateSelectorCode);
    }
    if (software && gateDpl < this.cpl) throw new CpuFault(EXC_GP, gateSelectorCode);
    if (!(high & 0x8000)) throw new CpuFault(EXC_NP, gateSelectorCode);
    const gate32 = (type & 8) !== 0;
    const selector = low >>> 16;
    const offset = gate32 ? (low & 0xffff) | (high & 0xffff0000) : low & 0xffff;
    if ((selector & 0xfffc) === 0) throw new CpuFault(EXC_GP, ext);
    this.readDescriptor(selector);
    const attr = X86Cpu.descAttr(this.descHigh);
    const dpl = (attr >> 5) & 3;
    if ((attr & 0x18) !== 0x18 || dpl > this.cpl) throw new CpuFault(EXC_GP, (selector & 0xfffc) + ext);
    if (!(attr & 0x80)) throw new CpuFault(EXC_NP, (selector & 0xfffc) + ext);
    const csLow = this.descLow;
    const csHigh = this.descHigh;
    const size = gate32 ? 32 : 16;
    const oldCs = this.segSel[1]!;
    if (!(attr & 4) && dpl < this.cpl) {
      // Inter-privilege: the new stack comes from the TSS (SDM vol. 3 §6.12.1).
      const oldSs = this.segSel[2]!;
      const oldEsp = this.regs[4]!;
      const { ss, esp } = this.tssStack(dpl, ext);
      this.readDescriptor(ss, EXC_TS);
      const ssAttr = X86Cpu.descAttr(this.descHigh);
      if ((ss & 3) !== dpl || ((ssAttr >> 5) & 3) !== dpl || (ssAttr & 0x1a) !== 0x12) {
        throw new CpuFault(EXC_TS, (ss & 0xfffc) + ext);
      }
      if (!(ssAttr & 0x80)) throw new CpuFault(EXC_SS, (ss & 0xfffc) + ext);
      this.cpl = dpl;
      this.loadCacheFromDescriptor(2, ss);
      this.updateModes();
      this.regs[4] = esp;
      this.push(size, oldSs);
      this.push(size, oldEsp);
    }
    this.push(size, flags);
    this.push(size, oldCs);
    this.push(size, returnEip);
    if (errorCode >= 0) this.push(size, errorCode);
    this.descLow = csLow;
    this.descHigh = csHigh;
    this.loadCs(selector, attr & 4 ? this.cpl : dpl);
    this.eip = offset;
    this.flagsBase &= ~(TF | NT | RF | VM);
    if (!(type & 1)) this.flagsBase &= ~IF;
  }

  /** deliverInterrupt, undoing stack and privilege changes if it faults part-way. */
  private deliverWithRollback(
    vector: number,
    errorCode: number,
    software: boolean,
    external: boolean,
    returnEip: number,
  ): void {
    const esp = this.regs[4]!;
    const espHigh = this.regsHigh[4]!;
    const cpl = this.cpl;
    const ssSel = this.segSel[2]!;
    const ssBase = this.segBase[2]!;
    const ssLimit = this.segLimit[2]!;
    const ssAttr = this.segAttr[2]!;
    try {
      this.deliverInterrupt(vector, errorCode, software, external, returnEip);
    } catch (e) {
      this.regs[4] = esp;
      this.regsHigh[4] = espHigh;
      this.cpl = cpl;
      this.segSel[2] = ssSel;
      this.segBase[2] = ssBase;
      this.segLimit[2] = ssLimit;
      this.segAttr[2] = ssAttr;
      this.updateModes();
      throw e;
    }
  }

  private tssStack(dpl: number, ext: number): { ss: number; esp: number } {
    if (this.trType === 0x9 || this.trType === 0xb) {
      const at = 4 + dpl * 8;
      if (at + 5 > this.trLimit) throw new CpuFault(EXC_TS, (this.trSel & 0xfffc) + ext);
      const esp = this.sysRead32((this.trBase + at) | 0);
      const ss = this.sysRead16((this.trBase + at + 4) | 0);
      return { ss, esp };
    }
    const at = 2 + dpl * 4;
    if (at + 3 > this.trLimit) throw new CpuFault(EXC_TS, (this.trSel & 0xfffc) + ext);
    const sp = this.sysRead16((this.trBase + at) | 0);
    const ss = this.sysRead16((this.trBase + at + 2) | 0);
    return { ss, esp: sp };
  }

  private iret(opSize: number): void {
    if (!(this.cr0 & CR0_PE)) {
      const ip = this.pop(opSize);
      const cs = this.pop(opSize);
      const flags = this.pop(opSize);
      this.loadSegmentReal(1, cs);
      this.eip = ip;
      const mask = opSize === SIZE16 ? 0xffff : POPF_MASK;
      this.setFlagsMasked(flags, mask & ~(opSize === SIZE16 ? 0 : 0));
      this.breakLoop = true;
      return;
    }
    if (this.flagsBase & VM) throw new Unimplemented("IRET in virtual-8086 mode");
    if (this.flagsBase & NT) throw new Unimplemented("IRET task return (NT=1)");
    const step = opSize >> 3;
    const ip = this.peek(opSize, 0);
    const cs = this.peek(opSize, step) & 0xffff;
    const flags = this.peek(opSize, 2 * step);
    if (opSize === SIZE32 && flags & VM && this.cpl === 0)
      throw new Unimplemented("IRET to virtual-8086 mode");
    if ((cs & 0xfffc) === 0) throw new CpuFault(EXC_GP, 0);
    const rpl = cs & 3;
    if (rpl < this.cpl) throw new CpuFault(EXC_GP, cs & 0xfffc);
    this.readDescriptor(cs);
    this.checkReturnCode(cs, rpl);
    const oldCpl = this.cpl;
    let mask = POPF_MASK;
    if (oldCpl > 0) mask &= ~IOPL;
    if (oldCpl > (this.flagsBase & IOPL) >> 12) mask &= ~IF;
    if (opSize === SIZE16) mask &= 0xffff;
    if (rpl === oldCpl) {
      this.addSp(3 * step);
      this.loadCs(cs, rpl);
    } else {
      const newSp = this.peek(opSize, 3 * step);
      const newSs = this.peek(opSize, 4 * step) & 0xffff;
      const csLow = this.descLow;
      const csHigh = this.descHigh;
      this.loadOuterStack(newSs, rpl);
      this.descLow = csLow;
      this.descHigh = csHigh;
      this.loadCs(cs, rpl);
      this.regs[4] = opSize === SIZE16 ? (this.regs[4]! & ~0xffff) | (newSp & 0xffff) : newSp;
      this.nullInaccessibleSegments();
    }
    this.eip = opSize === SIZE16 ? ip & 0xffff : ip;
    this.setFlagsMasked(flags, mask);
  }

  private setFlagsMasked(value: number, mask: number): void {
    const f = this.materializeFlags();
    this.flagsBase = ((f & ~mask) | (value & mask) | 2) & ~0x28;
    this.lazy = LAZY_NONE;
    this.breakLoop = true;
  }

  // =====================================================================
  // Misc helpers
  // =====================================================================

  private requireCpl0(): void {
    if (this.cpl !== 0) throw new CpuFault(EXC_GP, 0);
  }

  private checkIoPermission(): void {
    if (this.cr0 & CR0_PE && (this.cpl > (this.flagsBase & IOPL) >> 12 || this.flagsBase & VM)) {
      // No TSS I/O permission bitmap: ports are denied outside IOPL.
      throw new CpuFault(EXC_GP, 0);
    }
  }

  private portIn(size: number, port: number): number {
    // Reads do not end the block: polling loops (PIT channel 2, UART status)
    // run at full speed; writes (EOI, unmask, ...) do, so IRQs are seen at once.
    this.checkIoPermission();
    return this.host.io.read(port & 0xffff, (size >> 3) as 1 | 2 | 4) >>> 0;
  }

  private portOut(size: number, port: number, v: number): void {
    this.checkIoPermission();
    this.breakLoop = true;
    const mask = size === 32 ? 0xffffffff : size === 16 ? 0xffff : 0xff;
    this.host.io.write(port & 0xffff, (size >> 3) as 1 | 2 | 4, (v & mask) >>> 0);
  }

  private writeCr0(v: number): void {
    v |= CR0_ET;
    if (v & CR0_PG && !(v & CR0_PE)) throw new CpuFault(EXC_GP, 0);
    const changed = this.cr0 ^ v;
    // IA-32e activation (SDM vol. 3 §9.8.5): PG with EFER.LME needs PAE; LMA follows PG.
    if (changed & CR0_PG) {
      if (v & CR0_PG && this.efer & EFER_LME) {
        if (!(this.cr4 & CR4_PAE)) throw new CpuFault(EXC_GP, 0);
        this.efer |= EFER_LMA;
      } else if (!(v & CR0_PG)) {
        if (this.codeSize === SIZE64) throw new CpuFault(EXC_GP, 0);
        this.efer &= ~EFER_LMA;
      }
    }
    this.cr0 = v;
    if (changed & (CR0_PG | CR0_WP | CR0_PE)) this.flushTlb(true);
    if (changed & CR0_PE && !(v & CR0_PE)) this.cpl = 0;
    this.updateModes();
    this.breakLoop = true;
  }

  private writeCr4(v: number): void {
    if (v & ~CR4_SUPPORTED) throw new CpuFault(EXC_GP, 0);
    const changed = this.cr4 ^ v;
    this.cr4 = v;
    if (changed & (CR4_PSE | CR4_PAE | CR4_PGE)) this.flushTlb(true);
    this.updateModes();
    this.breakLoop = true;
  }

  private cpuid(): void {
    const leaf = this.regs[0]! >>> 0;
    let a = 0;
    let b = 0;
    let c = 0;
    let d = 0;
    switch (leaf) {
      case 0:
        a = 2;
        b = 0x756e6547; // "Genu"
        d = 0x49656e69; // "ineI"
        c = 0x6c65746e; // "ntel"
        break;
      case 1:
        a = 0x633; // family 6, model 3, stepping 3 (Pentium II class)
        b = 0x00010000; // 1 logical processor, APIC id 0
        c = 0;
        d =
          CPUID1_EDX |
          (this.host.hasLocalApic ? 1 << 9 : 0) |
          (this.host.reportLongMode ? CPUID1_EDX_SSE2_BASELINE : 0);
        break;
      case 2:
        a = 0x00000001; // one iteration, no cache descriptors
        break;
      case 0x80000000:
        a = 0x80000004;
        break;
      case 0x80000001:
        d = 1 << 20; // NX (PAE page tables honour it)
        if (this.host.reportLongMode) d |= (1 << 29) | (1 << 11); // LM, SYSCALL
        break;
      case 0x80000002:
      case 0x80000003:
      case 0x80000004: {
        const chunk = BRAND.subarray((leaf - 0x80000002) * 16, (leaf - 0x80000002) * 16 + 16);
        const dv = new DataView(chunk.buffer, chunk.byteOffset, 16);
        a = dv.getInt32(0, true);
        b = dv.getInt32(4, true);
        c = dv.getInt32(8, true);
        d = dv.getInt32(12, true);
        break;
      }
      default:
        // Intel: leaves above the maximum return the highest basic leaf's data.
        if (leaf < 0x80000000) a = 0x00000001;
        break;
    }
    this.regs[0] = a;
    this.regs[3] = b;
    this.regs[1] = c;
    this.regs[2] = d;
  }

  private rdmsr(): void {
    const msr = this.regs[1]! >>> 0;
    let low = 0;
    let high = 0;
    switch (msr) {
      case MSR_TSC: {
        const t = this.instructions + this.tscOffset;
        low = t | 0;
        high = Math.floor(t / 0x100000000) | 0;
        break;
      }
      case MSR_PLATFORM_ID:
        break;
      case MSR_APIC_BASE:
        low = this.apicBase;
        break;
      case MSR_UCODE_REV:
        high = this.microcodeRev;
        break;
      case MSR_SYSENTER_CS:
        low = this.sysenterCs;
        break;
      case MSR_SYSENTER_ESP:
        low = this.sysenterEsp;
        break;
      case MSR_SYSENTER_EIP:
        low = this.sysenterEip;
        break;
      case MSR_MISC_ENABLE:
        low = 1; // fast strings
        break;
      case MSR_PAT:
        low = this.patLow;
        high = this.patHigh;
        break;
      case MSR_STAR:
      case MSR_LSTAR:
      case MSR_CSTAR:
      case MSR_KERNEL_GS_BASE: {
        const pair =
          msr === MSR_STAR
            ? this.star
            : msr === MSR_LSTAR
              ? this.lstar
              : msr === MSR_CSTAR
                ? this.cstar
                : this.kernelGsBase;
        low = pair[0]!;
        high = pair[1]!;
        break;
      }
      case MSR_FMASK:
        low = this.fmask;
        break;
      case MSR_FS_BASE:
      case MSR_GS_BASE:
        low = this.segBase[msr === MSR_FS_BASE ? 4 : 5]!;
        high = this.segBaseHigh[msr === MSR_FS_BASE ? 4 : 5]!;
        break;
      case MSR_EFER:
        low = this.efer;
        break;
      default:
        throw new CpuFault(EXC_GP, 0);
    }
    this.regs[0] = low;
    this.regs[2] = high;
  }

  private wrmsr(): void {
    const msr = this.regs[1]! >>> 0;
    const low = this.regs[0]!;
    const high = this.regs[2]!;
    switch (msr) {
      case MSR_TSC:
        this.tscOffset = (high >>> 0) * 0x100000000 + (low >>> 0) - this.instructions;
        break;
      case MSR_PLATFORM_ID:
        break;
      case MSR_APIC_BASE:
        this.apicBase = (low & ~0x6ff) | 0x100;
        break;
      case MSR_UCODE_REV:
        this.microcodeRev = 0;
        break;
      case MSR_SYSENTER_CS:
        this.sysenterCs = low & 0xffff;
        break;
      case MSR_SYSENTER_ESP:
        this.sysenterEsp = low;
        break;
      case MSR_SYSENTER_EIP:
        this.sysenterEip = low;
        break;
      case MSR_MISC_ENABLE:
        break;
      case MSR_PAT:
        this.patLow = low;
        this.patHigh = high;
        break;
      case MSR_STAR:
        this.star[0] = low;
        this.star[1] = high;
        break;
      case MSR_LSTAR:
        this.lstar[0] = low;
        this.lstar[1] = high;
        break;
      case MSR_CSTAR:
        this.cstar[0] = low;
        this.cstar[1] = high;
        break;
      case MSR_FMASK:
        this.fmask = low;
        break;
      case MSR_FS_BASE:
      case MSR_GS_BASE:
        this.segBase[msr === MSR_FS_BASE ? 4 : 5] = low;
        this.segBaseHigh[msr === MSR_FS_BASE ? 4 : 5] = high;
        break;
      case MSR_KERNEL_GS_BASE:
        this.kernelGsBase[0] = low;
        this.kernelGsBase[1] = high;
        break;
      case MSR_EFER:
        if (low & ~(EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE)) throw new CpuFault(EXC_GP, 0);
        // LME may not change while paging is on; LMA is read-only.
        if (this.cr0 & CR0_PG && (low ^ this.efer) & EFER_LME) throw new CpuFault(EXC_GP, 0);
        this.efer = (low & (EFER_LME | EFER_NXE | EFER_SCE)) | (this.efer & EFER_LMA);
        this.flushTlb(true);
        break;
      default:
        throw new CpuFault(EXC_GP, 0);
    }
  }

  private sysenter(): void {
    if (!(this.cr0 & CR0_PE) || (this.sysenterCs & 0xfffc) === 0) throw new CpuFault(EXC_GP, 0);
    this.materializeFlags();
    this.flagsBase &= ~(VM | IF | RF);
    this.loadFlat(1, this.sysenterCs & 0xfffc, 0x9b, 0);
    this.loadFlat(2, (this.sysenterCs + 8) & 0xfffc, 0x93, 0);
    this.cpl = 0;
    this.updateModes();
    this.regs[4] = this.sysenterEsp;
    this.eip = this.sysenterEip;
    this.breakLoop = true;
  }

  private sysexit(): void {
    if (!(this.cr0 & CR0_PE) || this.cpl !== 0 || (this.sysenterCs & 0xfffc) === 0)
      throw new CpuFault(EXC_GP, 0);
    this.loadFlat(1, ((this.sysenterCs + 16) & 0xfffc) | 3, 0xfb, 3);
    this.loadFlat(2, ((this.sysenterCs + 24) & 0xfffc) | 3, 0xf3, 3);
    this.cpl = 3;
    this.updateModes();
    this.regs[4] = this.regs[1]!;
    this.eip = this.regs[2]!;
    this.breakLoop = true;
  }

  /** SYSENTER/SYSEXIT load fixed flat 4 GiB descriptors (SDM vol. 2 "SYSENTER"). */
  private loadFlat(seg: number, selector: number, access: number, _dpl: number): void {
    this.segSel[seg] = selector;
    this.segBase[seg] = 0;
    this.segLimit[seg] = 0xffffffff;
    this.segAttr[seg] = access | 0xc00;
  }

  /** Loads 8-byte GDT/IDT pseudo-descriptor from memory. */
  private readPseudoDescriptor(insn: Insn): { base: number; limit: number } {
    const addr = this.effectiveAddress(insn);
    const limit = this.read16(addr);
    let base = this.read32((addr + 2) | 0);
    if (insn.opSize === SIZE16) base &= 0xffffff;
    return { base, limit };
  }

  private loadLdt(selector: number): void {
    if ((selector & 0xfffc) === 0) {
      this.ldtSel = 0;
      this.ldtBase = 0;
      this.ldtLimit = 0;
      return;
    }
    if (selector & 4) throw new CpuFault(EXC_GP, selector & 0xfffc);
    this.readDescriptor(selector);
    if (((this.descHigh >> 8) & 0x1f) !== 0x02) throw new CpuFault(EXC_GP, selector & 0xfffc);
    if (!(this.descHigh & 0x8000)) throw new CpuFault(EXC_NP, selector & 0xfffc);
    this.ldtSel = selector;
    this.ldtBase = X86Cpu.descBase(this.descLow, this.descHigh);
    this.ldtLimit = X86Cpu.descLimit(this.descLow, this.descHigh);
  }

  private loadTr(selector: number): void {
    if ((selector & 0xfffc) === 0 || selector & 4) throw new CpuFault(EXC_GP, selector & 0xfffc);
    const addr = this.readDescriptor(selector);
    const type = (this.descHigh >> 8) & 0x1f;
    if (type !== 0x09 && type !== 0x01) throw new CpuFault(EXC_GP, selector & 0xfffc);
    if (!(this.descHigh & 0x8000)) throw new CpuFault(EXC_NP, selector & 0xfffc);
    this.descHigh |= 0x200; // busy
    this.sysWrite32((addr + 4) | 0, this.descHigh);
    this.trSel = selector;
    this.trBase = X86Cpu.descBase(this.descLow, this.descHigh);
    // A 64-bit TSS descriptor is 16 bytes: base bits 63:32 follow (SDM vol. 3 §7.2.3).
    this.trBaseHigh = this.efer & EFER_LMA ? this.sysRead32((addr + 8) | 0) : 0;
    this.trLimit = X86Cpu.descLimit(this.descLow, this.descHigh);
    this.trType = type | 2;
  }

  /** LAR/LSL/VERR/VERW: returns true (ZF=1) when the selector is visible at CPL/RPL. */
  private probeDescriptor(selector: number, forLimit: boolean): boolean {
    if ((selector & 0xfffc) === 0) return false;
    const table = selector & 4 ? this.ldtLimit : this.gdtLimit;
    if ((selector & 0xfff8) + 7 > table) return false;
    this.readDescriptor(selector);
    const attr = X86Cpu.descAttr(this.descHigh);
    const type = attr & 0x1f;
    const dpl = (attr >> 5) & 3;
    if (!(attr & 0x10)) {
      const validSystem = forLimit ? [1, 2, 3, 9, 11] : [1, 2, 3, 4, 5, 9, 11, 12];
      if (!validSystem.includes(type)) return false;
    }
    const conformingCode = (attr & 0x1c) === 0x1c;
    if (!conformingCode && (dpl < this.cpl || dpl < (selector & 3))) return false;
    return true;
  }

  private divide(size: number, signed: boolean, divisor: number): void {
    if (divisor === 0) throw new CpuFault(EXC_DE);
    if (size === 8) {
      const dividend = this.regs[0]! & 0xffff;
      let q: number;
      let r: number;
      if (signed) {
        const n = (dividend << 16) >> 16;
        const d = (divisor << 24) >> 24;
        q = Math.trunc(n / d);
        r = n % d;
        if (q > 127 || q < -128) throw new CpuFault(EXC_DE);
      } else {
        q = Math.floor(dividend / divisor);
        r = dividend % divisor;
        if (q > 0xff) throw new CpuFault(EXC_DE);
      }
      this.regs[0] = (this.regs[0]! & ~0xffff) | (q & 0xff) | ((r & 0xff) << 8);
      return;
    }
    if (size === 16) {
      const dividend = ((this.regs[2]! & 0xffff) << 16) | (this.regs[0]! & 0xffff);
      let q: number;
      let r: number;
      if (signed) {
        const d = (divisor << 16) >> 16;
        q = Math.trunc(dividend / d);
        r = dividend % d;
        if (q > 0x7fff || q < -0x8000) throw new CpuFault(EXC_DE);
      } else {
        const n = dividend >>> 0;
        q = Math.floor(n / divisor);
        r = n % divisor;
        if (q > 0xffff) throw new CpuFault(EXC_DE);
      }
      this.setReg(16, 0, q);
      this.setReg(16, 2, r);
      return;
    }
    // 64/32 division: exact with BigInt (rare enough not to matter for speed).
    const high = this.regs[2]!;
    const low = this.regs[0]! >>> 0;
    if (signed) {
      const n = (BigInt(high) << 32n) | BigInt(low);
      const d = BigInt(divisor | 0);
      const q = n / d;
      const r = n % d;
      if (q > 0x7fffffffn || q < -0x80000000n) throw new CpuFault(EXC_DE);
      this.regs[0] = Number(BigInt.asIntN(32, q));
      this.regs[2] = Number(BigInt.asIntN(32, r));
    } else {
      const d = divisor >>> 0;
      const highU = high >>> 0;
      if (highU >= d) throw new CpuFault(EXC_DE);
      if (highU === 0) {
        this.regs[0] = Math.floor(low / d);
        this.regs[2] = low % d;
        return;
      }
      const n = (BigInt(highU) << 32n) | BigInt(low);
      const bd = BigInt(d);
      this.regs[0] = Number(BigInt.asIntN(32, n / bd));
      this.regs[2] = Number(BigInt.asIntN(32, n % bd));
    }
  }

  /** MUL/IMUL one-operand forms (F6/F7 /4 /5). */
  private multiplyWide(size: number, signed: boolean, src: number): void {
    if (size === 8) {
      const a = this.regs[0]! & 0xff;
      const r = signed ? ((a << 24) >> 24) * ((src << 24) >> 24) : a * src;
      this.regs[0] = (this.regs[0]! & ~0xffff) | (r & 0xffff);
      const over = signed ? r !== (r << 24) >> 24 : (r & 0xff00) !== 0;
      this.setArith(r & 0xff, 8, over ? 1 : 0, over);
      return;
    }
    if (size === 16) {
      const a = this.regs[0]! & 0xffff;
      const r = signed ? ((a << 16) >> 16) * ((src << 16) >> 16) : a * src;
      this.setReg(16, 0, r);
      this.setReg(16, 2, r >> 16);
      const over = signed ? r !== (r << 16) >> 16 : r >>> 16 !== 0;
      this.setArith(r & 0xffff, 16, over ? 1 : 0, over);
      return;
    }
    const a = this.regs[0]!;
    let low: number;
    let high: number;
    if (signed) {
      const product = BigInt(a) * BigInt(src | 0);
      low = Number(BigInt.asIntN(32, product));
      high = Number(BigInt.asIntN(32, product >> 32n));
      const over = high !== low >> 31;
      this.regs[0] = low;
      this.regs[2] = high;
      this.setArith(low >>> 0, 32, over ? 1 : 0, over);
    } else {
      const au = a >>> 0;
      const bu = src >>> 0;
      // 32x32 -> 64 with 16-bit halves (exact in doubles, no BigInt).
      const lowProduct = (au & 0xffff) * bu;
      const highProduct = (au >>> 16) * bu;
      const lowPart = lowProduct + (highProduct % 0x10000) * 0x10000;
      low = lowPart >>> 0;
      high = (Math.floor(highProduct / 0x10000) + Math.floor(lowPart / 0x100000000)) >>> 0;
      this.regs[0] = low;
      this.regs[2] = high;
      const over = high !== 0;
      this.setArith(low, 32, over ? 1 : 0, over);
    }
  }

  /** IMUL with a truncated result (0F AF, 69, 6B). */
  private imulTruncated(size: number, a: number, b: number): number {
    let r: number;
    let over: boolean;
    if (size === 16) {
      const full = ((a << 16) >> 16) * ((b << 16) >> 16);
      r = full & 0xffff;
      over = full !== (full << 16) >> 16;
    } else {
      r = Math.imul(a, b);
      const full = BigInt(a | 0) * BigInt(b | 0);
      over = full !== BigInt(r);
      r >>>= 0;
    }
    this.setArith(r, size, over ? 1 : 0, over);
    return r;
  }

  private bitScan(size: number, src: number, reverse: boolean, dst: number): void {
    const mask = size === 32 ? 0xffffffff : 0xffff;
    src = (src & mask) >>> 0;
    this.materializeFlags();
    if (src === 0) {
      this.flagsBase |= ZF;
      return; // destination unchanged (as Intel and AMD do in practice)
    }
    this.flagsBase &= ~ZF;
    const index = reverse ? 31 - Math.clz32(src) : 31 - Math.clz32(src & -src);
    this.setReg(size, dst, index);
  }

  /** BT/BTS/BTR/BTC (op 0-3); register bit offsets can address memory beyond the operand. */
  private bitTest(insn: Insn, op: number, offset: number, fromRegister: boolean): void {
    const size = insn.opSize;
    this.materializeFlags();
    let value: number;
    let bit: number;
    let addr = 0;
    if (insn.rmIsReg) {
      bit = offset & (size - 1);
      value = this.getReg(size, insn.rm);
    } else {
      const base = this.effectiveAddress(insn);
      if (fromRegister) {
        const signedOffset = size === 16 ? (offset << 16) >> 16 : offset | 0;
        const unit = Math.floor(signedOffset / size);
        addr = (base + unit * (size >> 3)) | 0;
        bit = signedOffset - unit * size;
      } else {
        addr = base;
        bit = offset & (size - 1);
      }
      value = this.readSized(size, addr);
    }
    const cf = (value >>> bit) & 1;
    this.flagsBase = (this.flagsBase & ~CF) | cf;
    if (op === 0) return;
    let r = value;
    if (op === 1) r = value | (1 << bit);
    else if (op === 2) r = value & ~(1 << bit);
    else r = value ^ (1 << bit);
    if (insn.rmIsReg) this.setReg(size, insn.rm, r);
    else this.writeSized(size, addr, r);
  }

  // =====================================================================
  // String instructions
  // =====================================================================

  private stringStep(size: number): number {
    return this.flagsBase & DF ? -(size >> 3) : size >> 3;
  }

  private stringOp(insn: Insn): void {
    const op = insn.opcode;
    const size = op & 1 ? insn.opSize : 8;
    this.materializeFlags();
    const step = this.stringStep(size);
    const a32 = insn.adSize !== SIZE16;
    const srcSeg = insn.segOverride >= 0 ? insn.segOverride : 3;
    const rep = insn.rep !== 0;
    let count = rep ? (a32 ? this.regs[1]! >>> 0 : this.regs[1]! & 0xffff) : 1;
    if (count === 0) return;
    let iterations = 0;
    if (rep && a32 && step > 0 && (op === 0xa4 || op === 0xa5 || op === 0xaa || op === 0xab)) {
      iterations = this.fastRepMoveStore(op <= 0xa5, size >> 3, srcSeg, count);
      count -= iterations;
      if (count === 0) {
        this.instructions += iterations - 1;
        return;
      }
    }
    const limit = rep ? REP_CHUNK : 1;
    while (count > 0 && iterations < limit) {
      const si = a32 ? this.regs[6]! : this.regs[6]! & 0xffff;
      const di = a32 ? this.regs[7]! : this.regs[7]! & 0xffff;
      let stop = false;
      switch (op) {
        case 0xa4:
        case 0xa5: {
          const v = this.readSized(size, (this.segBase[srcSeg]! + si) | 0);
          this.writeSized(size, (this.segBase[0]! + di) | 0, v);
          this.advance(6, step, a32);
          this.advance(7, step, a32);
          break;
        }
        case 0xa6:
        case 0xa7: {
          const a = this.readSized(size, (this.segBase[srcSeg]! + si) | 0);
          const b = this.readSized(size, (this.segBase[0]! + di) | 0);
          this.alu(7, size, a, b);
          this.advance(6, step, a32);
          this.advance(7, step, a32);
          stop = insn.rep === REP_E ? !this.getZF() : insn.rep === REP_NE ? this.getZF() : false;
          break;
        }
        case 0xaa:
        case 0xab:
          this.writeSized(size, (this.segBase[0]! + di) | 0, this.getReg(size, 0));
          this.advance(7, step, a32);
          break;
        case 0xac:
        case 0xad:
          this.setReg(size, 0, this.readSized(size, (this.segBase[srcSeg]! + si) | 0));
          this.advance(6, step, a32);
          break;
        case 0xae:
        case 0xaf: {
          const b = this.readSized(size, (this.segBase[0]! + di) | 0);
          this.alu(7, size, this.getReg(size, 0), b);
          this.advance(7, step, a32);
          stop = insn.rep === REP_E ? !this.getZF() : insn.rep === REP_NE ? this.getZF() : false;
          break;
        }
        case 0x6c:
        case 0x6d: {
          const v = this.portIn(size, this.regs[2]!);
          this.writeSized(size, (this.segBase[0]! + di) | 0, v);
          this.advance(7, step, a32);
          break;
        }
        default: {
          // 6E/6F OUTS
          const v = this.readSized(size, (this.segBase[srcSeg]! + si) | 0);
          this.portOut(size, this.regs[2]!, v);
          this.advance(6, step, a32);
          break;
        }
      }
      count--;
      iterations++;
      if (rep) {
        if (a32) this.regs[1] = count;
        else this.regs[1] = (this.regs[1]! & ~0xffff) | count;
      }
      if (stop) {
        count = 0;
        break;
      }
    }
    if (iterations > 1) this.instructions += iterations - 1;
    if (count > 0) {
      // Not finished: run this instruction again (interrupts may come in between).
      this.eip = this.startEip;
      this.breakLoop = true;
    }
  }

  /**
   * REP MOVS/STOS with 32-bit addresses and DF=0, a page at a time straight
   * on RAM (memcpy/memset in kernels). Returns the iterations done (ECX,
   * ESI, EDI updated); stops early at anything unusual (MMIO, an element
   * crossing a page, overlapping moves) and leaves the rest to the generic loop.
   */
  private fastRepMoveStore(move: boolean, width: number, srcSeg: number, count: number): number {
    const regs = this.regs;
    const ram = this.ram;
    let done = 0;
    while (done < count && done < REP_CHUNK * 16) {
      const dstLin = (this.segBase[0]! + regs[7]!) | 0;
      let chunk = Math.min(count - done, Math.floor((4096 - (dstLin & 0xfff)) / width));
      const srcLin = move ? (this.segBase[srcSeg]! + regs[6]!) | 0 : 0;
      if (move) chunk = Math.min(chunk, Math.floor((4096 - (srcLin & 0xfff)) / width));
      if (chunk <= 0) break;
      const bytes = chunk * width;
      const dst = this.tr(dstLin, true);
      if (!this.isPlainRam(dst, bytes)) break;
      if (move) {
        const src = this.tr(srcLin, false);
        if (!this.isPlainRam(src, bytes)) break;
        if (dst > src && dst < src + bytes) break; // overlapping forward copy: element by element
        ram.copyWithin(dst, src, src + bytes);
        regs[6] = (regs[6]! + bytes) | 0;
      } else if (width === 1) {
        ram.fill(regs[0]! & 0xff, dst, dst + bytes);
      } else {
        const v = regs[0]!;
        const view = this.view;
        if (width === 2) for (let i = 0; i < bytes; i += 2) view.setUint16(dst + i, v, true);
        else for (let i = 0; i < bytes; i += 4) view.setInt32(dst + i, v, true);
      }
      for (let block = dst >>> 8; block <= (dst + bytes - 1) >>> 8; block++) {
        if (this.codeBlocks[block]) this.invalidateCodeBlock(block);
      }
      regs[7] = (regs[7]! + bytes) | 0;
      done += chunk;
      regs[1] = (count - done) | 0;
    }
    return done;
  }

  private isPlainRam(phys: number, bytes: number): boolean {
    return phys + bytes <= this.fastEnd && (phys + bytes <= HOLE_START || phys >= HOLE_START + HOLE_SIZE);
  }

  private advance(reg: number, step: number, a32: boolean): void {
    if (a32) this.regs[reg] = (this.regs[reg]! + step) | 0;
    else this.regs[reg] = (this.regs[reg]! & ~0xffff) | ((this.regs[reg]! + step) & 0xffff);
  }

  // =====================================================================
  // BCD
  // =====================================================================

  private bcd(op: number, imm: number): void {
    const f = this.materializeFlags();
    let al = this.regs[0]! & 0xff;
    let ah = (this.regs[0]! >> 8) & 0xff;
    let cf = f & CF;
    let af = f & AF;
    switch (op) {
      case 0x27: {
        // DAA
        const oldAl = al;
        const oldCf = cf;
        cf = 0;
        if ((al & 0xf) > 9 || af) {
          al = (al + 6) & 0xff;
          cf = oldCf || oldAl + 6 > 0xff ? 1 : 0;
          af = AF;
        } else af = 0;
        if (oldAl > 0x99 || oldCf) {
          al = (al + 0x60) & 0xff;
          cf = 1;
        }
        this.setReg(8, 0, al);
        this.setArith(al, 8, cf, false, af);
        return;
      }
      case 0x2f: {
        // DAS
        const oldAl = al;
        const oldCf = cf;
        cf = 0;
        if ((al & 0xf) > 9 || af) {
          al = (al - 6) & 0xff;
          cf = oldCf || oldAl < 6 ? 1 : 0;
          af = AF;
        } else af = 0;
        if (oldAl > 0x99 || oldCf) {
          al = (al - 0x60) & 0xff;
          cf = 1;
        }
        this.setReg(8, 0, al);
        this.setArith(al, 8, cf, false, af);
        return;
      }
      case 0x37:
      case 0x3f: {
        // AAA / AAS
        if ((al & 0xf) > 9 || af) {
          if (op === 0x37) {
            this.setReg(16, 0, (this.regs[0]! & 0xffff) + 0x106);
          } else {
            this.setReg(16, 0, (this.regs[0]! & 0xffff) - 6);
            this.setReg(8, 4, ((this.regs[0]! >> 8) - 1) & 0xff);
          }
          cf = 1;
          af = AF;
        } else {
          cf = 0;
          af = 0;
        }
        this.setReg(8, 0, this.regs[0]! & 0x0f);
        this.setArith(this.regs[0]! & 0xff, 8, cf, false, af);
        return;
      }
      case 0xd4: {
        // AAM
        if (imm === 0) throw new CpuFault(EXC_DE);
        ah = Math.floor(al / imm);
        al = al % imm;
        this.setReg(16, 0, (ah << 8) | al);
        this.setArith(al, 8, 0, false);
        return;
      }
      default: {
        // AAD
        al = (al + ah * imm) & 0xff;
        this.setReg(16, 0, al);
        this.setArith(al, 8, 0, false);
        return;
      }
    }
  }

  // =====================================================================
  // The executor
  // =====================================================================

  private executeOneByte(insn: Insn, op: number): void {
    if (op < 0x40) {
      const form = op & 7;
      if (form < 6) {
        const aluOp = op >> 3;
        switch (form) {
          case 0: {
            const a = this.readRM(insn, 8);
            const r = this.alu(aluOp, 8, a, this.getReg(8, insn.reg));
            if (aluOp !== 7) this.writeRMAgain(insn, 8, r);
            return;
          }
          case 1: {
            const size = insn.opSize;
            const a = this.readRM(insn, size);
            const r = this.alu(aluOp, size, a, this.getReg(size, insn.reg));
            if (aluOp !== 7) this.writeRMAgain(insn, size, r);
            return;
          }
          case 2: {
            const r = this.alu(aluOp, 8, this.getReg(8, insn.reg), this.readRM(insn, 8));
            if (aluOp !== 7) this.setReg(8, insn.reg, r);
            return;
          }
          case 3: {
            const size = insn.opSize;
            const r = this.alu(aluOp, size, this.getReg(size, insn.reg), this.readRM(insn, size));
            if (aluOp !== 7) this.setReg(size, insn.reg, r);
            return;
          }
          case 4: {
            const r = this.alu(aluOp, 8, this.regs[0]!, insn.imm);
            if (aluOp !== 7) this.setReg(8, 0, r);
            return;
          }
          default: {
            const size = insn.opSize;
            const r = this.alu(aluOp, size, this.regs[0]!, insn.imm);
            if (aluOp !== 7) this.setReg(size, 0, r);
            return;
          }
        }
      }
      switch (op) {
        case 0x06:
        case 0x0e:
        case 0x16:
        case 0x1e:
          this.push(insn.opSize, this.segSel[op >> 3]!);
          return;
        case 0x07:
        case 0x17:
        case 0x1f: {
          const sel = this.peek(insn.opSize, 0);
          this.loadSegment(op >> 3, sel);
          this.addSp(insn.opSize >> 3);
          return;
        }
        case 0x0f:
          throw new CpuFault(EXC_UD); // POP CS (8086 only)
        case 0x27:
        case 0x2f:
        case 0x37:
        case 0x3f:
          this.bcd(op, 0);
          return;
        default:
          throw new CpuFault(EXC_UD); // prefixes never reach here
      }
    }
    switch (op) {
      case 0x40:
      case 0x41:
      case 0x42:
      case 0x43:
      case 0x44:
      case 0x45:
      case 0x46:
      case 0x47:
      case 0x48:
      case 0x49:
      case 0x4a:
      case 0x4b:
      case 0x4c:
      case 0x4d:
      case 0x4e:
      case 0x4f: {
        const size = insn.opSize;
        const reg = op & 7;
        this.setReg(size, reg, this.incDec(size, this.getReg(size, reg), op >= 0x48));
        return;
      }
      case 0x50:
      case 0x51:
      case 0x52:
      case 0x53:
      case 0x54:
      case 0x55:
      case 0x56:
      case 0x57:
        this.push(insn.opSize, this.regs[op & 7]!);
        return;
      case 0x58:
      case 0x59:
      case 0x5a:
      case 0x5b:
      case 0x5c:
      case 0x5d:
      case 0x5e:
      case 0x5f: {
        const v = this.pop(insn.opSize);
        this.setReg(insn.opSize, op & 7, v);
        return;
      }
      case 0x60:
        this.withEspRestored(() => {
          const size = insn.opSize;
          const sp = this.regs[4]!;
          for (let r = 0; r < 8; r++) this.push(size, r === 4 ? sp : this.regs[r]!);
        });
        return;
      case 0x61: {
        const size = insn.opSize;
        const values: number[] = [];
        this.withEspRestored(() => {
          for (let r = 7; r >= 0; r--) values.push(this.pop(size));
        });
        for (let r = 7; r >= 0; r--) {
          const v = values[7 - r]!;
          if (r !== 4) this.setReg(size, r, v);
        }
        return;
      }
      case 0x62: {
        // BOUND
        if (insn.rmIsReg) throw new CpuFault(EXC_UD);
        const size = insn.opSize;
        const addr = this.effectiveAddress(insn);
        const sx = (v: number) => (size === 16 ? (v << 16) >> 16 : v | 0);
        const lower = sx(this.readSized(size, addr));
        const upper = sx(this.readSized(size, (addr + (size >> 3)) | 0));
        const index = sx(this.getReg(size, insn.reg));
        if (index < lower || index > upper) throw new CpuFault(EXC_BR);
        return;
      }
      case 0x63: {
        // ARPL
        if (!(this.cr0 & CR0_PE) || this.flagsBase & VM) throw new CpuFault(EXC_UD);
        const dst = this.readRM(insn, 16);
        const src = this.getReg(16, insn.reg);
        this.materializeFlags();
        if ((dst & 3) < (src & 3)) {
          this.writeRMAgain(insn, 16, (dst & ~3) | (src & 3));
          this.flagsBase |= ZF;
        } else this.flagsBase &= ~ZF;
        return;
      }
      case 0x68:
        this.push(insn.opSize, insn.imm);
        return;
      case 0x69:
      case 0x6b: {
        const size = insn.opSize;
        const imm = op === 0x6b ? (insn.imm << 24) >> 24 : insn.imm;
        this.setReg(size, insn.reg, this.imulTruncated(size, this.readRM(insn, size), imm));
        return;
      }
      case 0x6a:
        this.push(insn.opSize, (insn.imm << 24) >> 24);
        return;
      case 0x6c:
      case 0x6d:
      case 0x6e:
      case 0x6f:
        this.stringOp(insn);
        return;
      case 0x70:
      case 0x71:
      case 0x72:
      case 0x73:
      case 0x74:
      case 0x75:
      case 0x76:
      case 0x77:
      case 0x78:
      case 0x79:
      case 0x7a:
      case 0x7b:
      case 0x7c:
      case 0x7d:
      case 0x7e:
      case 0x7f:
        if (this.condition(op & 15)) this.jumpRelative(insn, (insn.imm << 24) >> 24);
        return;
      case 0x80:
      case 0x82: {
        const aluOp = insn.reg & 7;
        const a = this.readRM(insn, 8);
        const r = this.alu(aluOp, 8, a, insn.imm);
        if (aluOp !== 7) this.writeRMAgain(insn, 8, r);
        return;
      }
      case 0x81:
      case 0x83: {
        const size = insn.opSize;
        const aluOp = insn.reg & 7;
        const imm = op === 0x83 ? (insn.imm << 24) >> 24 : insn.imm;
        const a = this.readRM(insn, size);
        const r = this.alu(aluOp, size, a, imm);
        if (aluOp !== 7) this.writeRMAgain(insn, size, r);
        return;
      }
      case 0x84:
        this.alu(4, 8, this.readRM(insn, 8), this.getReg(8, insn.reg));
        return;
      case 0x85:
        this.alu(4, insn.opSize, this.readRM(insn, insn.opSize), this.getReg(insn.opSize, insn.reg));
        return;
      case 0x86:
      case 0x87: {
        const size = op === 0x86 ? 8 : insn.opSize;
        const a = this.readRM(insn, size);
        const b = this.getReg(size, insn.reg);
        this.writeRMAgain(insn, size, b);
        this.setReg(size, insn.reg, a);
        return;
      }
      case 0x88:
        this.writeRM(insn, 8, this.getReg(8, insn.reg));
        return;
      case 0x89:
        if (insn.rmIsReg) {
          if (insn.opSize === SIZE32) this.regs[insn.rm] = this.regs[insn.reg]!;
          else this.setReg(16, insn.rm, this.regs[insn.reg]!);
        } else this.writeSized(insn.opSize, this.effectiveAddress(insn), this.regs[insn.reg]!);
        return;
      case 0x8a:
        this.setReg(8, insn.reg, this.readRM(insn, 8));
        return;
      case 0x8b:
        if (insn.opSize === SIZE32) {
          this.regs[insn.reg] = insn.rmIsReg ? this.regs[insn.rm]! : this.read32(this.effectiveAddress(insn));
        } else this.setReg(16, insn.reg, this.readRM(insn, 16));
        return;
      case 0x8c: {
        const seg = insn.reg & 7;
        if (seg > 5) throw new CpuFault(EXC_UD);
        // To a register the upper bits are zeroed with 32-bit operand size; to memory 16 bits.
        if (insn.rmIsReg) this.setReg(insn.opSize, insn.rm, this.segSel[seg]!);
        else this.write16(this.effectiveAddress(insn), this.segSel[seg]!);
        return;
      }
      case 0x8d:
        if (insn.rmIsReg) throw new CpuFault(EXC_UD);
        this.setReg(insn.opSize, insn.reg, this.effectiveOffset(insn));
        return;
      case 0x8e: {
        const seg = insn.reg & 7;
        if (seg === 1 || seg > 5) throw new CpuFault(EXC_UD);
        this.loadSegment(seg, this.readRM(insn, 16));
        if (seg === 2) this.inhibitInterrupts = true;
        return;
      }
      case 0x8f: {
        // POP r/m: ESP is incremented before the address is computed.
        const size = insn.opSize;
        const v = this.peek(size, 0);
        this.addSp(size >> 3);
        try {
          this.writeRM(insn, size, v);
        } catch (e) {
          this.addSp(-(size >> 3));
          throw e;
        }
        return;
      }
      case 0x90:
        return; // NOP / PAUSE
      case 0x91:
      case 0x92:
      case 0x93:
      case 0x94:
      case 0x95:
      case 0x96:
      case 0x97: {
        const size = insn.opSize;
        const r = op & 7;
        const a = this.getReg(size, 0);
        this.setReg(size, 0, this.getReg(size, r));
        this.setReg(size, r, a);
        return;
      }
      case 0x98:
        if (insn.opSize === SIZE32) this.regs[0] = (this.regs[0]! << 16) >> 16;
        else this.setReg(16, 0, (this.regs[0]! << 24) >> 24);
        return;
      case 0x99:
        if (insn.opSize === SIZE32) this.regs[2] = this.regs[0]! >> 31;
        else this.setReg(16, 2, (this.regs[0]! << 16) >> 31);
        return;
      case 0x9a:
        this.farCall(insn.imm2, insn.imm, insn.opSize);
        return;
      case 0x9b:
        // FWAIT: raises #NM when CR0.TS and CR0.MP are both set.
        if ((this.cr0 & (CR0_TS | CR0_MP)) === (CR0_TS | CR0_MP)) throw new CpuFault(EXC_NM);
        return;
      case 0x9c: {
        if (this.flagsBase & VM && (this.flagsBase & IOPL) !== IOPL) throw new CpuFault(EXC_GP, 0);
        const f = this.materializeFlags() & ~(VM | RF);
        this.push(insn.opSize, f);
        return;
      }
      case 0x9d: {
        if (this.flagsBase & VM && (this.flagsBase & IOPL) !== IOPL) throw new CpuFault(EXC_GP, 0);
        const v = this.pop(insn.opSize);
        let mask = POPF_MASK;
        if (this.cr0 & CR0_PE) {
          if (this.cpl > 0) mask &= ~IOPL;
          if (this.cpl > (this.flagsBase & IOPL) >> 12) mask &= ~IF;
        }
        if (insn.opSize === SIZE16) mask &= 0xffff;
        this.setFlagsMasked(v, mask);
        return;
      }
      case 0x9e: {
        const f = this.materializeFlags();
        const ah = (this.regs[0]! >> 8) & (SF | ZF | AF | PF | CF);
        this.flagsBase = (f & ~(SF | ZF | AF | PF | CF)) | ah;
        return;
      }
      case 0x9f: {
        const f = this.materializeFlags();
        this.setReg(8, 4, (f & (SF | ZF | AF | PF | CF)) | 2);
        return;
      }
      case 0xa0:
        this.setReg(8, 0, this.read8(this.moffs(insn)));
        return;
      case 0xa1:
        this.setReg(insn.opSize, 0, this.readSized(insn.opSize, this.moffs(insn)));
        return;
      case 0xa2:
        this.write8(this.moffs(insn), this.regs[0]!);
        return;
      case 0xa3:
        this.writeSized(insn.opSize, this.moffs(insn), this.regs[0]!);
        return;
      case 0xa4:
      case 0xa5:
      case 0xa6:
      case 0xa7:
      case 0xaa:
      case 0xab:
      case 0xac:
      case 0xad:
      case 0xae:
      case 0xaf:
        this.stringOp(insn);
        return;
      case 0xa8:
        this.alu(4, 8, this.regs[0]!, insn.imm);
        return;
      case 0xa9:
        this.alu(4, insn.opSize, this.regs[0]!, insn.imm);
        return;
      case 0xb0:
      case 0xb1:
      case 0xb2:
      case 0xb3:
      case 0xb4:
      case 0xb5:
      case 0xb6:
      case 0xb7:
        this.setReg(8, op & 7, insn.imm);
        return;
      case 0xb8:
      case 0xb9:
      case 0xba:
      case 0xbb:
      case 0xbc:
      case 0xbd:
      case 0xbe:
      case 0xbf:
        this.setReg(insn.opSize, op & 7, insn.imm);
        return;
      case 0xc0:
      case 0xc1:
      case 0xd0:
      case 0xd1:
      case 0xd2:
      case 0xd3: {
        const size = op & 1 ? insn.opSize : 8;
        const count = op <= 0xc1 ? insn.imm : op <= 0xd1 ? 1 : this.regs[1]! & 0xff;
        const a = this.readRM(insn, size);
        if ((count & 0x1f) === 0) return;
        this.writeRMAgain(insn, size, this.shift(insn.reg & 7, size, a, count));
        return;
      }
      case 0xc2:
      case 0xc3: {
        const ip = this.pop(insn.opSize);
        if (op === 0xc2) this.addSp(insn.imm);
        this.eip = insn.opSize === SIZE16 ? ip & 0xffff : ip;
        return;
      }
      case 0xc4:
      case 0xc5:
        this.loadFarPointer(insn, op === 0xc4 ? 0 : 3);
        return;
      case 0xc6:
        this.writeRM(insn, 8, insn.imm);
        return;
      case 0xc7:
        this.writeRM(insn, insn.opSize, insn.imm);
        return;
      case 0xc8:
        this.withEspRestored(() => this.enter(insn));
        return;
      case 0xc9: {
        // LEAVE
        let bp = 0;
        this.withEspRestored(() => {
          if (this.stack32) this.regs[4] = this.regs[5]!;
          else this.setReg(16, 4, this.regs[5]!);
          bp = this.pop(insn.opSize);
        });
        this.setReg(insn.opSize, 5, bp);
        return;
      }
      case 0xca:
        this.farReturn(insn.opSize, insn.imm);
        return;
      case 0xcb:
        this.farReturn(insn.opSize, 0);
        return;
      case 0xcc:
        this.softwareInterrupt(EXC_BP);
        return;
      case 0xcd:
        this.softwareInterrupt(insn.imm);
        return;
      case 0xce:
        if (this.getOF()) this.softwareInterrupt(EXC_OF);
        return;
      case 0xcf:
        this.iret(insn.opSize);
        return;
      case 0xd4:
      case 0xd5:
        this.bcd(op, insn.imm);
        return;
      case 0xd6: // SALC (undocumented): AL = CF ? FF : 00
        this.setReg(8, 0, this.getCF() ? 0xff : 0);
        return;
      case 0xd7: {
        const seg = insn.segOverride >= 0 ? insn.segOverride : 3;
        const bx = insn.adSize === SIZE16 ? this.regs[3]! & 0xffff : this.regs[3]!;
        const off =
          insn.adSize === SIZE16 ? (bx + (this.regs[0]! & 0xff)) & 0xffff : bx + (this.regs[0]! & 0xff);
        this.setReg(8, 0, this.read8((this.segBase[seg]! + off) | 0));
        return;
      }
      case 0xd8:
      case 0xd9:
      case 0xda:
      case 0xdb:
      case 0xdc:
      case 0xdd:
      case 0xde:
      case 0xdf:
        if (this.cr0 & (CR0_EM | CR0_TS)) throw new CpuFault(EXC_NM);
        this.fpu.execute(insn);
        return;
      case 0xe0:
      case 0xe1:
      case 0xe2: {
        const a32 = insn.adSize !== SIZE16;
        const count = a32 ? (this.regs[1]! - 1) | 0 : (this.regs[1]! - 1) & 0xffff;
        if (a32) this.regs[1] = count;
        else this.setReg(16, 1, count);
        let take = count !== 0;
        if (op === 0xe0) take = take && !this.getZF();
        else if (op === 0xe1) take = take && this.getZF();
        if (take) this.jumpRelative(insn, (insn.imm << 24) >> 24);
        return;
      }
      case 0xe3: {
        const count = insn.adSize === SIZE16 ? this.regs[1]! & 0xffff : this.regs[1]!;
        if (count === 0) this.jumpRelative(insn, (insn.imm << 24) >> 24);
        return;
      }
      case 0xe4:
        this.setReg(8, 0, this.portIn(8, insn.imm));
        return;
      case 0xe5:
        this.setReg(insn.opSize, 0, this.portIn(insn.opSize, insn.imm));
        return;
      case 0xe6:
        this.portOut(8, insn.imm, this.regs[0]!);
        return;
      case 0xe7:
        this.portOut(insn.opSize, insn.imm, this.regs[0]!);
        return;
      case 0xe8:
        this.push(insn.opSize, this.eip);
        this.jumpRelative(insn, insn.imm);
        return;
      case 0xe9:
        this.jumpRelative(insn, insn.imm);
        return;
      case 0xea:
        this.farJump(insn.imm2, insn.imm, insn.opSize);
        return;
      case 0xeb:
        this.jumpRelative(insn, (insn.imm << 24) >> 24);
        return;
      case 0xec:
        this.setReg(8, 0, this.portIn(8, this.regs[2]!));
        return;
      case 0xed:
        this.setReg(insn.opSize, 0, this.portIn(insn.opSize, this.regs[2]!));
        return;
      case 0xee:
        this.portOut(8, this.regs[2]!, this.regs[0]!);
        return;
      case 0xef:
        this.portOut(insn.opSize, this.regs[2]!, this.regs[0]!);
        return;
      case 0xf1:
        this.softwareInterrupt(1);
        return;
      case 0xf4:
        if (this.cr0 & CR0_PE && this.cpl !== 0) throw new CpuFault(EXC_GP, 0);
        this.halted = true;
        this.breakLoop = true;
        return;
      case 0xf5:
        this.setFlagBit(CF, !this.getCF());
        return;
      case 0xf6:
      case 0xf7:
        this.group3(insn, op === 0xf6 ? 8 : insn.opSize);
        return;
      case 0xf8:
        this.setFlagBit(CF, false);
        return;
      case 0xf9:
        this.setFlagBit(CF, true);
        return;
      case 0xfa:
        this.checkIfPermission();
        this.flagsBase &= ~IF;
        return;
      case 0xfb:
        this.checkIfPermission();
        if (!(this.flagsBase & IF)) this.inhibitInterrupts = true;
        this.flagsBase |= IF;
        this.breakLoop = true;
        return;
      case 0xfc:
        this.flagsBase &= ~DF;
        return;
      case 0xfd:
        this.flagsBase |= DF;
        return;
      case 0xfe: {
        const sub = insn.reg & 7;
        if (sub > 1) throw new CpuFault(EXC_UD);
        const a = this.readRM(insn, 8);
        this.writeRMAgain(insn, 8, this.incDec(8, a, sub === 1));
        return;
      }
      case 0xff:
        this.group5(insn);
        return;
      default:
        throw new Unimplemented(`opcode ${op.toString(16)}`);
    }
  }

  /** Runs a multi-step stack operation; a fault part-way leaves ESP as it was. */
  private withEspRestored(steps: () => void): void {
    const esp = this.regs[4]!;
    try {
      steps();
    } catch (e) {
      this.regs[4] = esp;
      throw e;
    }
  }

  private checkIfPermission(): void {
    if (this.cr0 & CR0_PE && this.cpl > (this.flagsBase & IOPL) >> 12) throw new CpuFault(EXC_GP, 0);
  }

  private moffs(insn: Insn): number {
    const seg = insn.segOverride >= 0 ? insn.segOverride : 3;
    const off = insn.adSize === SIZE16 ? insn.disp & 0xffff : insn.disp;
    return (this.segBase[seg]! + off) | 0;
  }

  private jumpRelative(insn: Insn, delta: number): void {
    let target = (this.eip + delta) | 0;
    if (insn.opSize === SIZE16) target &= 0xffff;
    this.eip = target;
  }

  private softwareInterrupt(vector: number): void {
    if (this.flagsBase & VM && (this.flagsBase & IOPL) !== IOPL) throw new CpuFault(EXC_GP, 0);
    this.deliverWithRollback(vector, -1, true, false, this.eip);
  }

  private loadFarPointer(insn: Insn, seg: number): void {
    if (insn.rmIsReg) throw new CpuFault(EXC_UD);
    const addr = this.effectiveAddress(insn);
    const size = insn.opSize;
    const offset = this.readSized(size, addr);
    const selector = this.read16((addr + (size >> 3)) | 0);
    this.loadSegment(seg, selector);
    this.setReg(size, insn.reg, offset);
  }

  private enter(insn: Insn): void {
    const size = insn.opSize;
    const level = insn.imm2 & 31;
    this.push(size, this.regs[5]!);
    const frame = this.stack32 ? this.regs[4]! : this.regs[4]! & 0xffff;
    for (let i = 1; i < level; i++) {
      const bp = this.stack32
        ? (this.regs[5]! - i * (size >> 3)) | 0
        : (this.regs[5]! - i * (size >> 3)) & 0xffff;
      this.push(size, this.readSized(size, this.stackLin(bp)));
    }
    if (level > 0) this.push(size, frame);
    this.setReg(size, 5, frame);
    this.addSp(-insn.imm);
  }

  private group3(insn: Insn, size: number): void {
    const sub = insn.reg & 7;
    const a = this.readRM(insn, size);
    switch (sub) {
      case 0:
      case 1:
        this.alu(4, size, a, insn.imm);
        return;
      case 2:
        this.writeRMAgain(insn, size, ~a);
        return;
      case 3: {
        const mask = size === 32 ? 0xffffffff : size === 16 ? 0xffff : 0xff;
        const r = ((0 - a) & mask) >>> 0;
        this.setLazy(OP_SUB, 0, (a & mask) >>> 0, r, size);
        this.writeRMAgain(insn, size, r);
        return;
      }
      case 4:
        this.multiplyWide(size, false, a);
        return;
      case 5:
        this.multiplyWide(size, true, a);
        return;
      case 6:
        this.divide(size, false, a);
        return;
      default:
        this.divide(size, true, a);
        return;
    }
  }

  private group5(insn: Insn): void {
    const sub = insn.reg & 7;
    const size = insn.opSize;
    switch (sub) {
      case 0:
      case 1: {
        const a = this.readRM(insn, size);
        this.writeRMAgain(insn, size, this.incDec(size, a, sub === 1));
        return;
      }
      case 2: {
        const target = this.readRM(insn, size);
        this.push(size, this.eip);
        this.eip = target;
        return;
      }
      case 3:
      case 5: {
        if (insn.rmIsReg) throw new CpuFault(EXC_UD);
        const addr = this.effectiveAddress(insn);
        const offset = this.readSized(size, addr);
        const selector = this.read16((addr + (size >> 3)) | 0);
        if (sub === 3) this.farCall(selector, offset, size);
        else this.farJump(selector, offset, size);
        return;
      }
      case 4:
        this.eip = this.readRM(insn, size);
        return;
      case 6:
        this.push(size, this.readRM(insn, size));
        return;
      default:
        throw new CpuFault(EXC_UD);
    }
  }

  private executeTwoByte(insn: Insn, op: number): void {
    switch (op) {
      case 0x00:
        this.group6(insn);
        return;
      case 0x01:
        this.group7(insn);
        return;
      case 0x02:
      case 0x03: {
        if (!(this.cr0 & CR0_PE) || this.flagsBase & VM) throw new CpuFault(EXC_UD);
        const selector = this.readRM(insn, 16);
        this.materializeFlags();
        if (this.probeDescriptor(selector, op === 0x03)) {
          const v = op === 0x02 ? this.descHigh & 0x00ffff00 : X86Cpu.descLimit(this.descLow, this.descHigh);
          this.setReg(insn.opSize, insn.reg, v);
          this.flagsBase |= ZF;
        } else this.flagsBase &= ~ZF;
        return;
      }
      case 0x06:
        this.requireCpl0();
        this.cr0 &= ~CR0_TS;
        return;
      case 0x08:
      case 0x09:
        this.requireCpl0();
        return; // INVD / WBINVD: no caches
      case 0x0b:
        throw new CpuFault(EXC_UD);
      case 0x0d:
      case 0x18:
      case 0x19:
      case 0x1a:
      case 0x1b:
      case 0x1c:
      case 0x1d:
      case 0x1e:
      case 0x1f:
        return; // prefetch hints and multi-byte NOP
      case 0x20: {
        this.requireCpl0();
        const cr = insn.reg;
        const values = [this.cr0, 0, this.cr2, this.cr3, this.cr4];
        if (cr === 1 || cr > 4) throw new CpuFault(EXC_UD);
        this.regs[insn.rm] = values[cr]!;
        return;
      }
      case 0x21:
        this.requireCpl0();
        this.regs[insn.rm] = this.dr[insn.reg & 7]!;
        return;
      case 0x22: {
        this.requireCpl0();
        const v = this.regs[insn.rm]!;
        switch (insn.reg) {
          case 0:
            this.writeCr0(v);
            return;
          case 2:
            this.cr2 = v;
            return;
          case 3:
            this.cr3 = v;
            this.flushTlb(false);
            this.breakLoop = true;
            return;
          case 4:
            this.writeCr4(v);
            return;
          default:
            throw new CpuFault(EXC_UD);
        }
      }
      case 0x23:
        // Debug registers are stored but breakpoints are not implemented.
        this.requireCpl0();
        this.dr[insn.reg & 7] = this.regs[insn.rm]!;
        return;
      case 0x30:
        this.requireCpl0();
        this.wrmsr();
        return;
      case 0x31: {
        if (this.cr4 & 4 && this.cpl !== 0 && this.cr0 & CR0_PE) throw new CpuFault(EXC_GP, 0);
        const t = this.instructions + this.tscOffset;
        this.regs[0] = t | 0;
        this.regs[2] = Math.floor(t / 0x100000000) | 0;
        return;
      }
      case 0x32:
        this.requireCpl0();
        this.rdmsr();
        return;
      case 0x34:
        this.sysenter();
        return;
      case 0x35:
        this.sysexit();
        return;
      case 0x3f: {
        // Our BIOS hypercall 0F 3F ib (see api.ts).
        const result = this.host.hypercall(insn.imm, this);
        this.breakLoop = true;
        if (result && typeof (result as Promise<void>).then === "function") {
          this.pendingWait = result as Promise<void>;
        }
        return;
      }
      case 0x40:
      case 0x41:
      case 0x42:
      case 0x43:
      case 0x44:
      case 0x45:
      case 0x46:
      case 0x47:
      case 0x48:
      case 0x49:
      case 0x4a:
      case 0x4b:
      case 0x4c:
      case 0x4d:
      case 0x4e:
      case 0x4f: {
        // CMOVcc: the source is read (and may fault) even when the condition is false.
        const v = this.readRM(insn, insn.opSize);
        if (this.condition(op & 15)) this.setReg(insn.opSize, insn.reg, v);
        else if (insn.opSize === SIZE32) this.regs[insn.reg] = this.regs[insn.reg]!;
        return;
      }
      case 0x80:
      case 0x81:
      case 0x82:
      case 0x83:
      case 0x84:
      case 0x85:
      case 0x86:
      case 0x87:
      case 0x88:
      case 0x89:
      case 0x8a:
      case 0x8b:
      case 0x8c:
      case 0x8d:
      case 0x8e:
      case 0x8f:
        if (this.condition(op & 15)) this.jumpRelative(insn, insn.imm);
        return;
      case 0x90:
      case 0x91:
      case 0x92:
      case 0x93:
      case 0x94:
      case 0x95:
      case 0x96:
      case 0x97:
      case 0x98:
      case 0x99:
      case 0x9a:
      case 0x9b:
      case 0x9c:
      case 0x9d:
      case 0x9e:
      case 0x9f:
        this.writeRM(insn, 8, this.condition(op & 15) ? 1 : 0);
        return;
      case 0xa0:
      case 0xa8:
        this.push(insn.opSize, this.segSel[op === 0xa0 ? 4 : 5]!);
        return;
      case 0xa1:
      case 0xa9: {
        const sel = this.peek(insn.opSize, 0);
        this.loadSegment(op === 0xa1 ? 4 : 5, sel);
        this.addSp(insn.opSize >> 3);
        return;
      }
      case 0xa2:
        this.cpuid();
        return;
      case 0xa3:
        this.bitTest(insn, 0, this.getReg(insn.opSize, insn.reg), true);
        return;
      case 0xab:
        this.bitTest(insn, 1, this.getReg(insn.opSize, insn.reg), true);
        return;
      case 0xb3:
        this.bitTest(insn, 2, this.getReg(insn.opSize, insn.reg), true);
        return;
      case 0xbb:
        this.bitTest(insn, 3, this.getReg(insn.opSize, insn.reg), true);
        return;
      case 0xba: {
        const sub = insn.reg & 7;
        if (sub < 4) throw new CpuFault(EXC_UD);
        this.bitTest(insn, sub - 4, insn.imm, false);
        return;
      }
      case 0xa4:
      case 0xa5:
      case 0xac:
      case 0xad: {
        const size = insn.opSize;
        const count = (op & 1 ? this.regs[1]! : insn.imm) & 31;
        const a = this.readRM(insn, size);
        if (count === 0) return;
        const r = this.doubleShift(size, a, this.getReg(size, insn.reg), count, op < 0xa8);
        this.writeRMAgain(insn, size, r);
        return;
      }
      case 0xaf:
        this.setReg(
          insn.opSize,
          insn.reg,
          this.imulTruncated(insn.opSize, this.getReg(insn.opSize, insn.reg), this.readRM(insn, insn.opSize)),
        );
        return;
      case 0xb0:
      case 0xb1: {
        const size = op === 0xb0 ? 8 : insn.opSize;
        const dst = this.readRM(insn, size);
        const acc = this.getReg(size, 0);
        this.alu(7, size, acc, dst);
        if (acc === dst) this.writeRMAgain(insn, size, this.getReg(size, insn.reg));
        else {
          // The destination is written back unchanged (a locked cycle always writes).
          this.writeRMAgain(insn, size, dst);
          this.setReg(size, 0, dst);
        }
        return;
      }
      case 0xb2:
        this.loadFarPointer(insn, 2);
        return;
      case 0xb4:
        this.loadFarPointer(insn, 4);
        return;
      case 0xb5:
        this.loadFarPointer(insn, 5);
        return;
      case 0xb6:
        this.setReg(insn.opSize, insn.reg, this.readRM(insn, 8));
        return;
      case 0xb7:
        this.setReg(insn.opSize, insn.reg, this.readRM(insn, 16));
        return;
      case 0xbc:
        this.bitScan(insn.opSize, this.readRM(insn, insn.opSize), false, insn.reg);
        return;
      case 0xbd:
        this.bitScan(insn.opSize, this.readRM(insn, insn.opSize), true, insn.reg);
        return;
      case 0xbe:
        this.setReg(insn.opSize, insn.reg, (this.readRM(insn, 8) << 24) >> 24);
        return;
      case 0xbf:
        this.setReg(insn.opSize, insn.reg, (this.readRM(insn, 16) << 16) >> 16);
        return;
      case 0xc0:
      case 0xc1: {
        const size = op === 0xc0 ? 8 : insn.opSize;
        const dst = this.readRM(insn, size);
        const src = this.getReg(size, insn.reg);
        const sum = this.alu(0, size, dst, src);
        // SRC <- DEST, then DEST <- sum (so XADD r, r leaves the sum).
        if (insn.rmIsReg) {
          this.setReg(size, insn.reg, dst);
          this.setReg(size, insn.rm, sum);
        } else {
          this.writeSized(size, this.ea, sum);
          this.setReg(size, insn.reg, dst);
        }
        return;
      }
      case 0xc7: {
        if ((insn.reg & 7) !== 1 || insn.rmIsReg) throw new Unimplemented("0F C7 other than CMPXCHG8B");
        const addr = this.effectiveAddress(insn);
        const low = this.read32(addr);
        const high = this.read32((addr + 4) | 0);
        this.materializeFlags();
        if (low === this.regs[0] && high === this.regs[2]) {
          this.write32(addr, this.regs[3]!);
          this.write32((addr + 4) | 0, this.regs[1]!);
          this.flagsBase |= ZF;
        } else {
          this.write32(addr, low);
          this.write32((addr + 4) | 0, high);
          this.regs[0] = low;
          this.regs[2] = high;
          this.flagsBase &= ~ZF;
        }
        return;
      }
      case 0xc8:
      case 0xc9:
      case 0xca:
      case 0xcb:
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xcf: {
        const r = op & 7;
        const v = this.regs[r]!;
        if (insn.opSize === SIZE16)
          this.setReg(16, r, 0); // undefined; 0 as current Intel CPUs do
        else this.regs[r] = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
        return;
      }
      case 0xae:
        this.group15(insn);
        return;
      case 0xc3: // MOVNTI m32, r32 (SSE2; a plain store here: no caches)
        if (insn.rmIsReg) throw new CpuFault(EXC_UD);
        this.writeRM(insn, insn.opSize, this.getReg(insn.opSize, insn.reg));
        return;
      case 0xff:
        throw new CpuFault(EXC_UD);
      default:
        if (!this.sse.execute(insn, op))
          throw new Unimplemented(`opcode 0f ${op.toString(16).padStart(2, "0")}`);
    }
  }

  /** SSE instructions: #UD without CR4.OSFXSR or with CR0.EM, #NM with CR0.TS (SDM vol. 3 §13.1). */
  requireSse(): void {
    if (this.cr0 & CR0_EM || !(this.cr4 & CR4_OSFXSR)) throw new CpuFault(EXC_UD);
    if (this.cr0 & CR0_TS) throw new CpuFault(EXC_NM);
  }

  /** 0F AE: FXSAVE, FXRSTOR, LDMXCSR, STMXCSR and the fences. */
  private group15(insn: Insn): void {
    const sub = insn.reg & 7;
    if (insn.rmIsReg) {
      // LFENCE, MFENCE, SFENCE: memory is always ordered here.
      if (sub >= 5 && insn.rep === 0) return;
      throw new Unimplemented(`0F AE ${(0xc0 | (sub << 3) | (insn.rm & 7)).toString(16)}`);
    }
    if (sub === 0 || sub === 1) {
      if (this.cr0 & (CR0_EM | CR0_TS)) throw new CpuFault(EXC_NM);
      const addr = this.effectiveAddress(insn);
      if (addr & 15) throw new CpuFault(EXC_GP, 0);
      // Without CR4.OSFXSR the XMM state is not saved or restored (SDM FXSAVE).
      const xmmCount = this.cr4 & CR4_OSFXSR ? (this.codeSize === SIZE64 ? 16 : 8) : 0;
      if (sub === 0) {
        this.fpu.storeFxImage(addr);
        this.sse.storeFxImage(addr, xmmCount);
      } else {
        if (xmmCount) this.sse.checkFxImage(addr);
        this.fpu.loadFxImage(addr);
        if (xmmCount) this.sse.loadFxImage(addr, xmmCount);
      }
      return;
    }
    if (sub === 2 || sub === 3) {
      this.requireSse();
      const addr = this.effectiveAddress(insn);
      if (sub === 2) this.sse.loadMxcsr(this.read32(addr));
      else this.write32(addr, this.sse.mxcsr);
      return;
    }
    throw new Unimplemented(`0F AE /${sub}`);
  }

  private group6(insn: Insn): void {
    if (!(this.cr0 & CR0_PE) || this.flagsBase & VM) throw new CpuFault(EXC_UD);
    const sub = insn.reg & 7;
    switch (sub) {
      case 0:
        this.writeRM(insn, insn.rmIsReg ? insn.opSize : 16, this.ldtSel);
        return;
      case 1:
        this.writeRM(insn, insn.rmIsReg ? insn.opSize : 16, this.trSel);
        return;
      case 2:
        this.requireCpl0();
        this.loadLdt(this.readRM(insn, 16));
        return;
      case 3:
        this.requireCpl0();
        this.loadTr(this.readRM(insn, 16));
        return;
      case 4:
      case 5: {
        const selector = this.readRM(insn, 16);
        this.materializeFlags();
        let ok = this.probeDescriptor(selector, false);
        if (ok) {
          const attr = X86Cpu.descAttr(this.descHigh);
          const isCode = (attr & 0x18) === 0x18;
          const isData = (attr & 0x18) === 0x10;
          ok = sub === 4 ? isData || (isCode && (attr & 2) !== 0) : isData && (attr & 2) !== 0;
        }
        if (ok) this.flagsBase |= ZF;
        else this.flagsBase &= ~ZF;
        return;
      }
      default:
        throw new CpuFault(EXC_UD);
    }
  }

  private group7(insn: Insn): void {
    const sub = insn.reg & 7;
    if (insn.rmIsReg && sub !== 4 && sub !== 6)
      throw new Unimplemented(`0F 01 ${(0xc0 | (sub << 3) | insn.rm).toString(16)}`);
    switch (sub) {
      case 0:
      case 1: {
        const addr = this.effectiveAddress(insn);
        const limit = sub === 0 ? this.gdtLimit : this.idtLimit;
        const base = sub === 0 ? this.gdtBase : this.idtBase;
        this.write16(addr, limit);
        this.write32((addr + 2) | 0, insn.opSize === SIZE16 ? base & 0xffffff : base);
        return;
      }
      case 2:
      case 3: {
        this.requireCpl0();
        const { base, limit } = this.readPseudoDescriptor(insn);
        if (sub === 2) {
          this.gdtBase = base;
          this.gdtLimit = limit;
        } else {
          this.idtBase = base;
          this.idtLimit = limit;
        }
        return;
      }
      case 4:
        this.writeRM(insn, insn.rmIsReg ? insn.opSize : 16, this.cr0 & 0xffff);
        return;
      case 6: {
        this.requireCpl0();
        // LMSW changes PE (set only), MP, EM, TS.
        const v = this.readRM(insn, 16);
        this.writeCr0((this.cr0 & ~0xe) | (v & 0xf) | (this.cr0 & CR0_PE));
        return;
      }
      case 7: {
        this.requireCpl0();
        const lin = this.effectiveAddress(insn);
        this.tlb[lin >>> 12] = 0;
        this.breakLoop = true;
        return;
      }
      default:
        throw new CpuFault(EXC_UD);
    }
  }
  // =====================================================================
  // 64-bit mode (IA-32e; SDM vol. 1 §3.2.1, vol. 3 §6.14, §9.8)
  //
  // 64-bit values are int32 pairs: `regs`/`regsHigh`, `eip`/`ripHigh`,
  // and `hi` carries the high half of an operand or result between the
  // helpers below. 64-bit code runs in its own executor: every register
  // write has to zero-extend 32-bit results, which the legacy executor's
  // fast paths do not do. Instructions that write no general register
  // (I/O, flags, segment loads, x87, most SSE) are delegated to it.
  // =====================================================================

  /** Runs up to `count` instructions of 64-bit code (fetched one by one: no decode links). */
  private runBlock64(count: number): void {
    for (let n = 1; ; n++) {
      this.startEip = this.eip;
      this.startRipHigh = this.ripHigh;
      const insn = this.fetch();
      this.advanceRip(insn.length);
      this.instructions++;
      this.byteRegsUniform = insn.rex !== 0;
      try {
        this.execute64(insn);
      } finally {
        this.byteRegsUniform = false;
      }
      if (this.breakLoop || n >= count || this.codeSize !== SIZE64) return;
    }
  }

  private advanceRip(n: number): void {
    const lo = (this.eip >>> 0) + n;
    this.eip = lo | 0;
    if (lo > 0xffffffff) this.ripHigh = (this.ripHigh + 1) | 0;
  }

  /** RIP += sign-extended `delta`. */
  private jump64(delta: number): void {
    this.eip = this.add64(this.eip, this.ripHigh, delta, delta >> 31);
    this.ripHigh = this.hi;
  }

  /** (aLo,aHi) + (bLo,bHi): returns the low half, the high half in `hi`. */
  private add64(aLo: number, aHi: number, bLo: number, bHi: number): number {
    const lo = (aLo >>> 0) + (bLo >>> 0);
    this.hi = (aHi + bHi + (lo > 0xffffffff ? 1 : 0)) | 0;
    return lo | 0;
  }

  /** Offset of the ModRM memory operand (no segment base): LEA. */
  private offset64(insn: Insn): number {
    let lo = insn.disp;
    let hi = insn.disp >> 31;
    const base = insn.eaBase;
    if (base === BASE_RIP) {
      lo = this.add64(lo, hi, this.eip, this.ripHigh);
      hi = this.hi;
    } else if (base !== NO_REG) {
      lo = this.add64(lo, hi, this.regs[base]!, this.regsHigh[base]!);
      hi = this.hi;
    }
    const index = insn.eaIndex;
    if (index !== NO_REG) {
      const s = insn.eaScale;
      let il = this.regs[index]!;
      let ih = this.regsHigh[index]!;
      if (s) {
        ih = (ih << s) | (il >>> (32 - s));
        il <<= s;
      }
      lo = this.add64(lo, hi, il, ih);
      hi = this.hi;
    }
    this.hi = insn.adSize === SIZE32 ? 0 : hi;
    return lo;
  }

  /** Linear address of the memory operand; only FS and GS have bases in 64-bit mode. Sets linHigh. */
  private effectiveAddress64(insn: Insn): number {
    let lo = this.offset64(insn);
    const seg = insn.eaSeg;
    if (seg >= 4) lo = this.add64(lo, this.hi, this.segBase[seg]!, this.segBaseHigh[seg]!);
    this.linHigh = this.hi;
    return lo;
  }

  /** General register of `size`; the high half of a 64-bit one goes to `hi` (0 otherwise). */
  private getReg64(size: number, r: number): number {
    if (size === 64) {
      this.hi = this.regsHigh[r]!;
      return this.regs[r]!;
    }
    this.hi = 0;
    return this.getReg(size, r);
  }

  /** Register write in 64-bit mode: 32-bit results zero-extend, 8/16-bit ones merge. */
  private setReg64(size: number, r: number, v: number, hi: number): void {
    if (size === 64) {
      this.regs[r] = v;
      this.regsHigh[r] = hi;
    } else if (size === 32) {
      this.regs[r] = v;
      this.regsHigh[r] = 0;
    } else this.setReg(size, r, v);
  }

  private readMem64(size: number, lin: number): number {
    if (size !== 64) {
      this.hi = 0;
      return this.readSized(size, lin);
    }
    const high = this.linHigh;
    const lo = this.read32(lin);
    this.linHigh = high;
    this.hi = this.read32((lin + 4) | 0);
    return lo;
  }

  private writeMem64(size: number, lin: number, v: number, hi: number): void {
    if (size !== 64) {
      this.writeSized(size, lin, v);
      return;
    }
    const high = this.linHigh;
    this.write32((lin + 4) | 0, hi);
    this.linHigh = high;
    this.write32(lin, v);
  }

  private eaHigh = 0;

  /** The r/m operand of `size` (the address is kept for a write back). */
  private readOperand64(insn: Insn, size: number): number {
    if (insn.rmIsReg) return this.getReg64(size, insn.rm);
    this.ea = this.effectiveAddress64(insn);
    this.eaHigh = this.linHigh;
    return this.readMem64(size, this.ea);
  }

  /** Writes the r/m operand read by readOperand64. */
  private writeOperandAgain64(insn: Insn, size: number, v: number, hi: number): void {
    if (insn.rmIsReg) this.setReg64(size, insn.rm, v, hi);
    else {
      this.linHigh = this.eaHigh;
      this.writeMem64(size, this.ea, v, hi);
    }
  }

  private writeOperand64(insn: Insn, size: number, v: number, hi: number): void {
    if (insn.rmIsReg) this.setReg64(size, insn.rm, v, hi);
    else {
      const lin = this.effectiveAddress64(insn);
      this.writeMem64(size, lin, v, hi);
    }
  }

  private push64(lo: number, hi: number): void {
    const sp = this.regs[4]! >>> 0;
    const newHigh = sp < 8 ? (this.regsHigh[4]! - 1) | 0 : this.regsHigh[4]!;
    const newLow = (sp - 8) | 0;
    this.linHigh = newHigh;
    this.writeMem64(64, newLow, lo, hi);
    this.regs[4] = newLow;
    this.regsHigh[4] = newHigh;
  }

  /** A 4-byte pop in 64-bit mode (RETF without REX.W). */
  private pop32In64(): number {
    this.linHigh = this.regsHigh[4]!;
    const v = this.read32(this.regs[4]!);
    this.regs[4] = this.add64(this.regs[4]!, this.regsHigh[4]!, 4, 0);
    this.regsHigh[4] = this.hi;
    return v;
  }

  private pop64(): number {
    this.linHigh = this.regsHigh[4]!;
    const lo = this.readMem64(64, this.regs[4]!);
    const hi = this.hi;
    this.regs[4] = this.add64(this.regs[4]!, this.regsHigh[4]!, 8, 0);
    this.regsHigh[4] = this.hi;
    this.hi = hi;
    return lo;
  }

  /**
   * 64-bit ALU op (0 ADD 1 OR 2 ADC 3 SBB 4 AND 5 SUB 6 XOR 7 CMP): the
   * halves go through the 32-bit ALU (the high one with the low one's
   * carry), then ZF, PF and AF are corrected for the whole result.
   */
  private alu64(op: number, aLo: number, aHi: number, bLo: number, bHi: number): number {
    const lo = this.alu(op, 32, aLo, bLo);
    const f = this.materializeFlags();
    const lowFlags = f & (PF | AF);
    let hi: number;
    if (op === 1 || op === 4 || op === 6) hi = this.alu(op, 32, aHi, bHi);
    else {
      // The high half continues with the carry (or borrow) out of the low half.
      this.flagsBase = f;
      hi = this.alu(op === 0 || op === 2 ? 2 : 3, 32, aHi, bHi);
    }
    const g = this.materializeFlags() & ~(ZF | PF | AF);
    this.flagsBase = g | lowFlags | ((lo | hi) === 0 ? ZF : 0);
    this.hi = hi | 0;
    return lo | 0;
  }

  private aluSized64(op: number, size: number, a: number, aHi: number, b: number, bHi: number): number {
    if (size === 64) return this.alu64(op, a, aHi, b, bHi);
    this.hi = 0;
    return this.alu(op, size, a, b);
  }

  private execute64(insn: Insn): void {
    const op = insn.opcode;
    const size = insn.opSize;
    if (op < 0x40 && (op & 7) < 6) {
      this.aluForm64(insn, op >> 3, op & 7);
      return;
    }
    switch (op) {
      case 0x50:
      case 0x51:
      case 0x52:
      case 0x53:
      case 0x54:
      case 0x55:
      case 0x56:
      case 0x57: {
        const r = (op & 7) | ((insn.rex & 1) << 3);
        if (size === SIZE16) break;
        this.push64(this.regs[r]!, this.regsHigh[r]!);
        return;
      }
      case 0x58:
      case 0x59:
      case 0x5a:
      case 0x5b:
      case 0x5c:
      case 0x5d:
      case 0x5e:
      case 0x5f: {
        if (size === SIZE16) break;
        const v = this.pop64();
        this.setReg64(64, (op & 7) | ((insn.rex & 1) << 3), v, this.hi);
        return;
      }
      case 0x63: {
        // MOVSXD (with REX.W); without it a plain 32-bit move.
        const v = this.readOperand64(insn, 32);
        this.setReg64(size === 64 ? 64 : 32, insn.reg, v, v >> 31);
        return;
      }
      case 0x68:
        this.push64(insn.imm, insn.imm >> 31);
        return;
      case 0x6a: {
        const v = (insn.imm << 24) >> 24;
        this.push64(v, v >> 31);
        return;
      }
      case 0x80:
      case 0x81:
      case 0x83: {
        const sz = op === 0x80 ? 8 : size;
        const imm = op === 0x83 ? (insn.imm << 24) >> 24 : insn.imm;
        const a = this.readOperand64(insn, sz);
        const r = this.aluSized64(insn.reg & 7, sz, a, this.hi, imm, imm >> 31);
        if ((insn.reg & 7) !== 7) this.writeOperandAgain64(insn, sz, r, this.hi);
        return;
      }
      case 0x84:
      case 0x85: {
        const sz = op === 0x84 ? 8 : size;
        const a = this.readOperand64(insn, sz);
        const aHi = this.hi;
        const b = this.getReg64(sz, insn.reg);
        this.aluSized64(4, sz, a, aHi, b, this.hi);
        return;
      }
      case 0x88:
      case 0x89: {
        const sz = op === 0x88 ? 8 : size;
        const v = this.getReg64(sz, insn.reg);
        this.writeOperand64(insn, sz, v, this.hi);
        return;
      }
      case 0x8a:
      case 0x8b: {
        const sz = op === 0x8a ? 8 : size;
        const v = this.readOperand64(insn, sz);
        this.setReg64(sz, insn.reg, v, this.hi);
        return;
      }
      case 0x8c:
        this.writeOperand64(insn, insn.rmIsReg ? size : 16, this.segSel[insn.reg & 7]!, 0);
        return;
      case 0x8d: {
        if (insn.rmIsReg) throw new CpuFault(EXC_UD);
        const v = this.offset64(insn);
        this.setReg64(size, insn.reg, v, this.hi);
        return;
      }
      case 0x90:
        if (!(insn.rex & 1)) return; // NOP (XCHG r8, rAX with REX.B)
        this.exchange64(size, 8);
        return;
      case 0x91:
      case 0x92:
      case 0x93:
      case 0x94:
      case 0x95:
      case 0x96:
      case 0x97:
        this.exchange64(size, (op & 7) | ((insn.rex & 1) << 3));
        return;
      case 0x98: // CDQE / CWDE / CBW
        if (size === 64) this.regsHigh[0] = this.regs[0]! >> 31;
        else if (size === 32) this.setReg64(32, 0, (this.regs[0]! << 16) >> 16, 0);
        else this.setReg(16, 0, (this.regs[0]! << 24) >> 24);
        return;
      case 0x99: // CQO / CDQ / CWD
        if (size === 64) this.setReg64(64, 2, this.regsHigh[0]! >> 31, this.regsHigh[0]! >> 31);
        else if (size === 32) this.setReg64(32, 2, this.regs[0]! >> 31, 0);
        else this.setReg(16, 2, (this.regs[0]! << 16) >> 31);
        return;
      case 0x9c:
        this.push64(this.materializeFlags() & ~(VM | RF), 0);
        return;
      case 0x9d: {
        const v = this.pop64();
        const iopl = (this.flagsBase & IOPL) >> 12;
        let mask = POPF_MASK;
        if (this.cpl > 0) mask &= ~IOPL;
        if (this.cpl > iopl) mask &= ~IF;
        this.setFlagsMasked(v, mask);
        return;
      }
      case 0xa8:
      case 0xa9: {
        const sz = op === 0xa8 ? 8 : size;
        const a = this.getReg64(sz, 0);
        this.aluSized64(4, sz, a, this.hi, insn.imm, insn.imm >> 31);
        return;
      }
      case 0xb0:
      case 0xb1:
      case 0xb2:
      case 0xb3:
      case 0xb4:
      case 0xb5:
      case 0xb6:
      case 0xb7:
        this.setReg64(8, (op & 7) | ((insn.rex & 1) << 3), insn.imm, 0);
        return;
      case 0xb8:
      case 0xb9:
      case 0xba:
      case 0xbb:
      case 0xbc:
      case 0xbd:
      case 0xbe:
      case 0xbf:
        this.setReg64(size, (op & 7) | ((insn.rex & 1) << 3), insn.imm, insn.imm2);
        return;
      case 0xc2:
      case 0xc3: {
        const rip = this.pop64();
        const ripHigh = this.hi;
        if (op === 0xc2) {
          this.regs[4] = this.add64(this.regs[4]!, this.regsHigh[4]!, insn.imm, 0);
          this.regsHigh[4] = this.hi;
        }
        this.eip = rip;
        this.ripHigh = ripHigh;
        return;
      }
      case 0xc6:
      case 0xc7: {
        const sz = op === 0xc6 ? 8 : size;
        this.writeOperand64(insn, sz, insn.imm, insn.imm >> 31);
        return;
      }
      case 0xc9: // LEAVE
        this.regs[4] = this.regs[5]!;
        this.regsHigh[4] = this.regsHigh[5]!;
        this.setReg64(64, 5, this.pop64(), this.hi);
        return;
      case 0xcc:
        this.softwareInterrupt(EXC_BP);
        return;
      case 0xcd:
        this.softwareInterrupt(insn.imm);
        return;
      case 0xcf:
        if (size !== 64) break;
        this.iret64();
        return;
      case 0xe8:
        this.push64(this.eip, this.ripHigh);
        this.jump64(insn.imm);
        return;
      case 0xe9:
        this.jump64(insn.imm);
        return;
      case 0xeb:
        this.jump64((insn.imm << 24) >> 24);
        return;
      case 0xe4:
      case 0xe5:
      case 0xec:
      case 0xed:
        this.executeOneByte(insn, op);
        if ((op & 1) === 1 && size !== SIZE16) this.regsHigh[0] = 0;
        return;
      case 0x8e:
        if ((insn.reg & 7) === 2 && this.cpl < 3) {
          // 64-bit mode allows a null SS at CPL 0-2 (SDM vol. 3 §5.4.1.1).
          const selector = this.readOperand64(insn, 16);
          if ((selector & 0xfffc) === 0) {
            this.segSel[2] = selector;
            this.segAttr[2] = 0;
            this.inhibitInterrupts = true;
            this.breakLoop = true;
            return;
          }
        }
        this.executeOneByte(insn, op);
        return;
      case 0xca:
      case 0xcb: {
        // RETF to the same privilege level (64- or 32-bit operands).
        if (size === SIZE16) break;
        const wide = size === 64;
        const rip = wide ? this.pop64() : this.pop32In64();
        const ripHigh = wide ? this.hi : 0;
        const cs = (wide ? this.pop64() : this.pop32In64()) & 0xffff;
        if ((cs & 3) !== this.cpl) throw new Unimplemented("64-bit RETF to another privilege level");
        if ((cs & 0xfffc) === 0) throw new CpuFault(EXC_GP, 0);
        this.readDescriptor(cs);
        this.checkReturnCode(cs, cs & 3);
        this.loadCs(cs, this.cpl);
        this.eip = rip;
        this.ripHigh = this.codeSize === SIZE64 ? ripHigh : 0;
        if (op === 0xca) {
          this.regs[4] = this.add64(this.regs[4]!, this.regsHigh[4]!, insn.imm, 0);
          this.regsHigh[4] = this.hi;
        }
        return;
      }
      case 0xe6:
      case 0xe7:
      case 0xee:
      case 0xef:
      case 0xf4:
      case 0xf5:
      case 0xf8:
      case 0xf9:
      case 0xfa:
      case 0xfb:
      case 0xfc:
      case 0xfd:
      case 0xd8:
      case 0xd9:
      case 0xda:
      case 0xdb:
      case 0xdc:
      case 0xdd:
      case 0xde:
      case 0xdf:
        this.executeOneByte(insn, op);
        return;
      case 0xf6:
      case 0xf7:
        if (this.group3In64(insn, op === 0xf6 ? 8 : size)) return;
        break;
      case 0xc0:
      case 0xc1:
      case 0xd0:
      case 0xd1:
      case 0xd2:
      case 0xd3: {
        const sz = op & 1 ? size : 8;
        const count = op <= 0xc1 ? insn.imm : op <= 0xd1 ? 1 : this.regs[1]! & 0xff;
        const a = this.readOperand64(insn, sz);
        if (sz !== 64) {
          this.writeOperandAgain64(insn, sz, this.shift(insn.reg & 7, sz, a, count), 0);
          return;
        }
        const r = this.shift64(insn.reg & 7, a, this.hi, count);
        this.writeOperandAgain64(insn, 64, r, this.hi);
        return;
      }
      case 0x86:
      case 0x87: {
        const sz = op === 0x86 ? 8 : size;
        const a = this.readOperand64(insn, sz);
        const aHi = this.hi;
        const b = this.getReg64(sz, insn.reg);
        this.writeOperandAgain64(insn, sz, b, this.hi);
        this.setReg64(sz, insn.reg, a, aHi);
        return;
      }
      case 0xa4:
      case 0xa5:
      case 0xaa:
      case 0xab:
        this.stringOp64(insn, op);
        return;
      case 0x69:
      case 0x6b: {
        const imm = op === 0x6b ? (insn.imm << 24) >> 24 : insn.imm;
        const a = this.readOperand64(insn, size);
        if (size !== 64) {
          this.setReg64(size, insn.reg, this.imulTruncated(size, a, imm), 0);
          return;
        }
        const r = this.imul64(a, this.hi, imm, imm >> 31);
        this.setReg64(64, insn.reg, r, this.hi);
        return;
      }
      case 0xfe:
      case 0xff:
        if (this.group5In64(insn, op === 0xfe ? 8 : size)) return;
        break;
      default:
        if (op >= 0x70 && op <= 0x7f) {
          if (this.condition(op & 15)) this.jump64((insn.imm << 24) >> 24);
          return;
        }
        if (op >= 0x100 && this.executeTwoByte64(insn, op & 0xff)) return;
    }
    throw new Unimplemented(`64-bit mode: opcode ${op >= 0x100 ? "0f " : ""}${(op & 0xff).toString(16)}`);
  }

  /** ALU rows 00-3F: 0 Eb,Gb 1 Ev,Gv 2 Gb,Eb 3 Gv,Ev 4 AL,ib 5 rAX,iz. */
  private aluForm64(insn: Insn, aluOp: number, form: number): void {
    const size = insn.opSize;
    if (form >= 4) {
      const sz = form === 4 ? 8 : size;
      const a = this.getReg64(sz, 0);
      const r = this.aluSized64(aluOp, sz, a, this.hi, insn.imm, insn.imm >> 31);
      if (aluOp !== 7) this.setReg64(sz, 0, r, this.hi);
      return;
    }
    const sz = form & 1 ? size : 8;
    const rmValue = this.readOperand64(insn, sz);
    const rmHigh = this.hi;
    const regValue = this.getReg64(sz, insn.reg);
    const regHigh = this.hi;
    if (form & 2) {
      const r = this.aluSized64(aluOp, sz, regValue, regHigh, rmValue, rmHigh);
      if (aluOp !== 7) this.setReg64(sz, insn.reg, r, this.hi);
    } else {
      const r = this.aluSized64(aluOp, sz, rmValue, rmHigh, regValue, regHigh);
      if (aluOp !== 7) this.writeOperandAgain64(insn, sz, r, this.hi);
    }
  }

  private exchange64(size: number, r: number): void {
    const a = this.getReg64(size, 0);
    const aHi = this.hi;
    const b = this.getReg64(size, r);
    this.setReg64(size, 0, b, this.hi);
    this.setReg64(size, r, a, aHi);
  }

  /** F6/F7: TEST, NOT, NEG in every size; MUL/IMUL/DIV/IDIV up to 32 bits. */
  private group3In64(insn: Insn, size: number): boolean {
    const sub = insn.reg & 7;
    if (sub === 0 || sub === 1) {
      const a = this.readOperand64(insn, size);
      this.aluSized64(4, size, a, this.hi, insn.imm, insn.imm >> 31);
      return true;
    }
    if (sub === 2 || sub === 3) {
      const a = this.readOperand64(insn, size);
      const aHi = this.hi;
      if (sub === 2) this.writeOperandAgain64(insn, size, ~a, ~aHi);
      else {
        // NEG = 0 - operand: CF = (operand != 0) comes out of the subtraction.
        const r = this.aluSized64(5, size, 0, 0, a, aHi);
        this.writeOperandAgain64(insn, size, r, this.hi);
      }
      return true;
    }
    if (size === 64) {
      this.multiplyDivide64(sub, this.readOperand64(insn, 64), this.hi);
      return true;
    }
    this.executeOneByte(insn, insn.opcode);
    if (size === 32) this.regsHigh[0] = this.regsHigh[2] = 0;
    return true;
  }

  /** MUL/IMUL RDX:RAX = RAX * src, DIV/IDIV RDX:RAX / src (#DE on zero or overflow). */
  private multiplyDivide64(sub: number, lo: number, hi: number): void {
    const signed = sub === 5 || sub === 7;
    const toBig = (l: number, h: number) => {
      const u = (BigInt(h >>> 0) << 32n) | BigInt(l >>> 0);
      return signed ? BigInt.asIntN(64, u) : u;
    };
    const src = toBig(lo, hi);
    const setPair = (reg: number, v: bigint) => {
      this.regs[reg] = Number(BigInt.asIntN(32, v));
      this.regsHigh[reg] = Number(BigInt.asIntN(32, v >> 32n));
    };
    if (sub <= 5) {
      const product = toBig(this.regs[0]!, this.regsHigh[0]!) * src;
      const low = BigInt.asUintN(64, product);
      const high = BigInt.asUintN(64, product >> 64n);
      setPair(0, low);
      setPair(2, high);
      const fits = signed ? product === BigInt.asIntN(64, product) : high === 0n;
      this.setFlags64(Number(BigInt.asIntN(32, low)), Number(BigInt.asIntN(32, low >> 32n)), !fits, !fits);
      return;
    }
    if (src === 0n) throw new CpuFault(EXC_DE);
    const dividendU =
      (BigInt(this.regsHigh[2]! >>> 0) << 96n) |
      (BigInt(this.regs[2]! >>> 0) << 64n) |
      (BigInt(this.regsHigh[0]! >>> 0) << 32n) |
      BigInt(this.regs[0]! >>> 0);
    const dividend = signed ? BigInt.asIntN(128, dividendU) : dividendU;
    const quotient = dividend / src;
    const remainder = dividend % src;
    const fits = signed ? quotient === BigInt.asIntN(64, quotient) : quotient >> 64n === 0n;
    if (!fits) throw new CpuFault(EXC_DE);
    setPair(0, BigInt.asUintN(64, quotient));
    setPair(2, BigInt.asUintN(64, remainder));
  }

  /** MOVS/STOS (B/W/D/Q) with 64-bit RSI/RDI/RCX, REP honoured (one element per step, interrupts between steps). */
  private stringOp64(insn: Insn, op: number): void {
    const width = op & 1 ? insn.opSize : 8;
    const step = width >> 3;
    const delta = this.flagsBase & DF ? -step : step;
    const a32 = insn.adSize === SIZE32;
    const rep = insn.rep !== 0;
    for (let n = 0; n < REP_CHUNK; n++) {
      if (rep && this.regs[1] === 0 && (a32 || this.regsHigh[1] === 0)) return;
      let v: number;
      let vHi = 0;
      if (op <= 0xa5) {
        const seg = insn.segOverride >= 4 ? insn.segOverride : -1;
        let src = this.regs[6]!;
        let srcHi = a32 ? 0 : this.regsHigh[6]!;
        if (seg >= 0) {
          src = this.add64(src, srcHi, this.segBase[seg]!, this.segBaseHigh[seg]!);
          srcHi = this.hi;
        }
        this.linHigh = srcHi;
        v = this.readMem64(width, src);
        vHi = this.hi;
        this.advance64(6, delta, a32);
      } else {
        v = this.getReg64(width, 0);
        vHi = this.hi;
      }
      this.linHigh = a32 ? 0 : this.regsHigh[7]!;
      this.writeMem64(width, this.regs[7]!, v, vHi);
      this.advance64(7, delta, a32);
      if (n > 0) this.instructions++; // each iteration counts; the first was counted by the run loop
      if (!rep) return;
      this.regs[1] = this.add64(this.regs[1]!, a32 ? 0 : this.regsHigh[1]!, -1, -1);
      this.regsHigh[1] = a32 ? 0 : this.hi;
    }
    // Not finished: run the instruction again (interrupts may come in between).
    this.eip = this.startEip;
    this.ripHigh = this.startRipHigh;
    this.breakLoop = true;
  }

  private advance64(reg: number, delta: number, a32: boolean): void {
    this.regs[reg] = this.add64(this.regs[reg]!, a32 ? 0 : this.regsHigh[reg]!, delta, delta >> 31);
    this.regsHigh[reg] = a32 ? 0 : this.hi;
  }

  /** Sets the arithmetic flags from a 64-bit result (AF left as it was: undefined here). */
  private setFlags64(lo: number, hi: number, cf: boolean, of: boolean): void {
    const f = this.materializeFlags() & ~(CF | PF | ZF | SF | OF);
    this.flagsBase =
      f | (cf ? CF : 0) | PARITY[lo & 0xff]! | ((lo | hi) === 0 ? ZF : 0) | (hi < 0 ? SF : 0) | (of ? OF : 0);
  }

  /**
   * 64-bit shifts and rotates (0 ROL 1 ROR 4/6 SHL 5 SHR 7 SAR; RCL/RCR are
   * not implemented in 64-bit mode). A count of 0 (mod 64) changes nothing.
   */
  private shift64(op: number, lo: number, hi: number, count: number): number {
    count &= 0x3f;
    if (count === 0) {
      this.hi = hi;
      return lo;
    }
    if (op >= 4) return this.shiftPair64(op, lo, hi, count);
    const a = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    const c = BigInt(count);
    let r: bigint;
    let cf: boolean;
    let of: boolean;
    switch (op) {
      case 0:
        r = BigInt.asUintN(64, (a << c) | (a >> (64n - c)));
        cf = (r & 1n) !== 0n;
        of = (r >> 63n !== 0n) !== cf;
        break;
      case 1:
        r = BigInt.asUintN(64, (a >> c) | (a << (64n - c)));
        cf = r >> 63n !== 0n;
        of = cf !== (((r >> 62n) & 1n) !== 0n); // the two most significant bits differ
        break;
      case 4:
      case 6:
        r = BigInt.asUintN(64, a << c);
        cf = ((a >> (64n - c)) & 1n) !== 0n;
        of = (r >> 63n !== 0n) !== cf;
        break;
      case 5:
        r = a >> c;
        cf = ((a >> (c - 1n)) & 1n) !== 0n;
        of = a >> 63n !== 0n;
        break;
      case 7:
        r = BigInt.asUintN(64, BigInt.asIntN(64, a) >> c);
        cf = ((BigInt.asIntN(64, a) >> (c - 1n)) & 1n) !== 0n;
        of = false;
        break;
      default:
        throw new Unimplemented("64-bit RCL/RCR");
    }
    const rLo = Number(r & 0xffffffffn) | 0;
    const rHi = Number(r >> 32n) | 0;
    if (op <= 1) {
      // Rotates change only CF and OF.
      const f = this.materializeFlags() & ~(CF | OF);
      this.flagsBase = f | (cf ? CF : 0) | (of ? OF : 0);
    } else this.setFlags64(rLo, rHi, cf, of);
    this.hi = rHi;
    return rLo;
  }

  /** SHL/SHR/SAR of an int32 pair by 1-63 without BigInt (the frequent shifts). */
  private shiftPair64(op: number, lo: number, hi: number, count: number): number {
    const bit = (k: number) => (k >= 32 ? (hi >>> (k - 32)) & 1 : (lo >>> k) & 1);
    let rLo: number;
    let rHi: number;
    let cf: boolean;
    let of: boolean;
    if (op === 4 || op === 6) {
      if (count < 32) {
        rHi = (hi << count) | (lo >>> (32 - count));
        rLo = lo << count;
      } else {
        rHi = lo << (count - 32);
        rLo = 0;
      }
      cf = bit(64 - count) !== 0;
      of = rHi < 0 !== cf;
    } else {
      if (count < 32) {
        rLo = (lo >>> count) | (hi << (32 - count));
        rHi = op === 7 ? hi >> count : hi >>> count;
      } else {
        rLo = op === 7 ? hi >> (count - 32) : hi >>> (count - 32);
        rHi = op === 7 ? hi >> 31 : 0;
      }
      cf = bit(count - 1) !== 0;
      of = op === 5 && hi < 0;
    }
    rLo |= 0;
    rHi |= 0;
    this.setFlags64(rLo, rHi, cf, of);
    this.hi = rHi;
    return rLo;
  }

  /** Signed 64x64 multiply, truncated; CF = OF = the product did not fit. */
  private imul64(aLo: number, aHi: number, bLo: number, bHi: number): number {
    const a = BigInt.asIntN(64, (BigInt(aHi >>> 0) << 32n) | BigInt(aLo >>> 0));
    const b = BigInt.asIntN(64, (BigInt(bHi >>> 0) << 32n) | BigInt(bLo >>> 0));
    const full = a * b;
    const r = BigInt.asIntN(64, full);
    const lo = Number(BigInt.asUintN(32, r)) | 0;
    const hi = Number(BigInt.asIntN(32, r >> 32n));
    this.setFlags64(lo, hi, r !== full, r !== full);
    this.hi = hi;
    return lo;
  }

  /** FE/FF: INC, DEC, CALL and JMP near through r/m64, PUSH r/m64. */
  private group5In64(insn: Insn, size: number): boolean {
    const sub = insn.reg & 7;
    if (sub === 0 || sub === 1) {
      const a = this.readOperand64(insn, size);
      const aHi = this.hi;
      const cf = this.getCF();
      const r = this.aluSized64(sub === 0 ? 0 : 5, size, a, aHi, 1, 0);
      const rHi = this.hi;
      this.setFlagBit(CF, cf !== 0);
      this.writeOperandAgain64(insn, size, r, rHi);
      return true;
    }
    if (insn.opcode === 0xfe) return false;
    // Near indirect branches and PUSH always use 64-bit operands.
    if (sub === 2 || sub === 4) {
      const target = this.readOperand64(insn, 64);
      const targetHigh = this.hi;
      if (sub === 2) this.push64(this.eip, this.ripHigh);
      this.eip = target;
      this.ripHigh = targetHigh;
      return true;
    }
    if (sub === 6) {
      const v = this.readOperand64(insn, 64);
      this.push64(v, this.hi);
      return true;
    }
    return false;
  }

  private executeTwoByte64(insn: Insn, op: number): boolean {
    const size = insn.opSize;
    if (op >= 0x80 && op <= 0x8f) {
      if (this.condition(op & 15)) this.jump64(insn.imm);
      return true;
    }
    if (op >= 0x40 && op <= 0x4f) {
      // CMOVcc: the 32-bit form zero-extends even when the condition is false.
      const v = this.readOperand64(insn, size);
      const vHi = this.hi;
      if (this.condition(op & 15)) this.setReg64(size, insn.reg, v, vHi);
      else if (size === 32) this.regsHigh[insn.reg] = 0;
      return true;
    }
    switch (op) {
      case 0x01:
        return this.group7In64(insn);
      case 0x05:
        this.syscall();
        return true;
      case 0x07:
        if (size !== 64) return false;
        this.sysret();
        return true;
      case 0x20: {
        this.executeTwoByte(insn, op);
        this.regsHigh[insn.rm] = insn.reg === 2 ? this.cr2High : 0;
        return true;
      }
      case 0x31:
      case 0x32:
        this.executeTwoByte(insn, op);
        this.regsHigh[0] = this.regsHigh[2] = 0;
        return true;
      case 0xa2:
        this.executeTwoByte(insn, op);
        this.regsHigh[0] = this.regsHigh[1] = this.regsHigh[2] = this.regsHigh[3] = 0;
        return true;
      case 0xbc:
      case 0xbd: {
        if (size === SIZE16) return false;
        const src = this.readOperand64(insn, size);
        const srcHi = size === 64 ? this.hi : 0;
        this.materializeFlags();
        if ((src | srcHi) === 0) {
          this.flagsBase |= ZF; // destination left unchanged, as current CPUs do
          return true;
        }
        this.flagsBase &= ~ZF;
        const lowest = (x: number) => 31 - Math.clz32(x & -x);
        const index =
          op === 0xbc
            ? src !== 0
              ? lowest(src)
              : 32 + lowest(srcHi)
            : srcHi !== 0
              ? 63 - Math.clz32(srcHi)
              : 31 - Math.clz32(src);
        this.setReg64(size, insn.reg, index, 0);
        return true;
      }
      case 0xa3:
      case 0xab:
      case 0xb3:
      case 0xbb:
      case 0xba: {
        // BT/BTS/BTR/BTC: register operands, or memory with an immediate bit offset.
        if (size === SIZE16 || (op !== 0xba && !insn.rmIsReg)) return false;
        const kind = op === 0xba ? insn.reg & 7 : 4 + ((op >> 3) & 3);
        if (kind < 4) return false;
        const bits = size === 64 ? 63 : 31;
        const offset = (op === 0xba ? insn.imm : this.regs[insn.reg]!) & bits;
        let lo = this.readOperand64(insn, size);
        let hi = size === 64 ? this.hi : 0;
        const mask = 1 << (offset & 31);
        const inHigh = offset >= 32;
        const set = ((inHigh ? hi : lo) & mask) !== 0;
        this.setFlagBit(CF, set);
        if (kind === 4) return true;
        const apply = (v: number) => (kind === 5 ? v | mask : kind === 6 ? v & ~mask : v ^ mask);
        if (inHigh) hi = apply(hi);
        else lo = apply(lo);
        this.writeOperandAgain64(insn, size, lo, hi);
        return true;
      }
      case 0xb0:
      case 0xb1: {
        // CMPXCHG: compare rAX with r/m; equal -> r/m = reg, else rAX = r/m (the memory is written either way).
        const sz = op === 0xb0 ? 8 : size;
        const dst = this.readOperand64(insn, sz);
        const dstHi = this.hi;
        const acc = this.getReg64(sz, 0);
        this.aluSized64(7, sz, acc, this.hi, dst, dstHi);
        if (this.getZF()) {
          const src = this.getReg64(sz, insn.reg);
          this.writeOperandAgain64(insn, sz, src, this.hi);
        } else {
          if (!insn.rmIsReg) this.writeOperandAgain64(insn, sz, dst, dstHi);
          this.setReg64(sz, 0, dst, dstHi);
        }
        return true;
      }
      case 0xc0:
      case 0xc1: {
        const sz = op === 0xc0 ? 8 : size;
        const dst = this.readOperand64(insn, sz);
        const dstHi = this.hi;
        const src = this.getReg64(sz, insn.reg);
        const sum = this.aluSized64(0, sz, dst, dstHi, src, this.hi);
        const sumHi = this.hi;
        this.setReg64(sz, insn.reg, dst, dstHi);
        this.writeOperandAgain64(insn, sz, sum, sumHi);
        return true;
      }
      case 0xc8:
      case 0xc9:
      case 0xca:
      case 0xcb:
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xcf: {
        const r = (op & 7) | ((insn.rex & 1) << 3);
        const swap = (v: number) =>
          ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
        if (size === 64) this.setReg64(64, r, swap(this.regsHigh[r]!), swap(this.regs[r]!));
        else this.setReg64(32, r, swap(this.regs[r]!), 0);
        return true;
      }
      case 0xaf: {
        const a = this.readOperand64(insn, size);
        const aHi = this.hi;
        const b = this.getReg64(size, insn.reg);
        if (size !== 64) {
          this.setReg64(size, insn.reg, this.imulTruncated(size, b, a), 0);
          return true;
        }
        const r = this.imul64(b, this.hi, a, aHi);
        this.setReg64(64, insn.reg, r, this.hi);
        return true;
      }
      case 0xb6:
      case 0xb7:
      case 0xbe:
      case 0xbf: {
        const from = op & 1 ? 16 : 8;
        let v = this.readOperand64(insn, from);
        if (op >= 0xbe) v = from === 8 ? (v << 24) >> 24 : (v << 16) >> 16;
        this.setReg64(size, insn.reg, v, op >= 0xbe ? v >> 31 : 0);
        return true;
      }
      case 0x7e:
      case 0xd7:
        // MOVD r32, xmm / PMOVMSKB write a 32-bit register: zero-extend it.
        this.executeTwoByte(insn, op);
        if (insn.rmIsReg && op === 0x7e && insn.rep === 0) this.regsHigh[insn.rm] = 0;
        if (op === 0xd7) this.regsHigh[insn.reg] = 0;
        return true;
      case 0x06:
      case 0x08:
      case 0x09:
      case 0x0b:
      case 0x0d:
      case 0x18:
      case 0x19:
      case 0x1a:
      case 0x1b:
      case 0x1c:
      case 0x1d:
      case 0x1e:
      case 0x1f:
      case 0x22:
      case 0x30:
      case 0xae:
        this.executeTwoByte(insn, op);
        return true;
      default:
        if (op >= 0x90 && op <= 0x9f) {
          this.executeTwoByte(insn, op); // SETcc: byte writes only
          return true;
        }
        if (op >= 0x10 && op !== 0xc3 && (op < 0xa0 || op > 0xcf)) {
          // SSE: the operand is an XMM register or memory.
          return this.sse.execute(insn, op) || false;
        }
        return false;
    }
  }

  /** 0F 01 in 64-bit mode: LGDT/LIDT take a 10-byte operand; SWAPGS. */
  private group7In64(insn: Insn): boolean {
    const sub = insn.reg & 7;
    if (insn.rmIsReg) {
      if (sub === 7 && (insn.rm & 7) === 0) {
        this.requireCpl0();
        // SWAPGS: exchange GS.base with IA32_KERNEL_GS_BASE.
        const lo = this.segBase[5]!;
        const hi = this.segBaseHigh[5]!;
        this.segBase[5] = this.kernelGsBase[0]!;
        this.segBaseHigh[5] = this.kernelGsBase[1]!;
        this.kernelGsBase[0] = lo;
        this.kernelGsBase[1] = hi;
        return true;
      }
      return false;
    }
    if (sub === 2 || sub === 3) {
      this.requireCpl0();
      const lin = this.effectiveAddress64(insn);
      const high = this.linHigh;
      const limit = this.read16(lin);
      this.linHigh = high;
      const base = this.read32((lin + 2) | 0);
      this.linHigh = high;
      const baseHigh = this.read32((lin + 6) | 0);
      if (sub === 2) {
        this.gdtBase = base;
        this.gdtBaseHigh = baseHigh;
        this.gdtLimit = limit;
      } else {
        this.idtBase = base;
        this.idtBaseHigh = baseHigh;
        this.idtLimit = limit;
      }
      return true;
    }
    if (sub === 7) {
      this.requireCpl0();
      this.flushTlb(false); // INVLPG: the whole non-global TLB (the tag holds only half the address)
      this.breakLoop = true;
      return true;
    }
    return false;
  }

  /** SYSCALL (SDM vol. 2): RCX = RIP, R11 = RFLAGS, CS/SS from STAR, RIP = LSTAR, RFLAGS &= ~FMASK. */
  private syscall(): void {
    if (!(this.efer & EFER_SCE)) throw new CpuFault(EXC_UD);
    const flags = this.materializeFlags();
    this.setReg64(64, 1, this.eip, this.ripHigh);
    this.setReg64(64, 11, flags & ~RF, 0);
    const selector = this.star[1]! & 0xfffc;
    this.loadFlat(1, selector, 0x9b, 0);
    this.segAttr[1] = 0xa9b; // 64-bit code (L=1, D=0)
    this.loadFlat(2, (selector + 8) & 0xffff, 0x93, 0);
    this.cpl = 0;
    this.flagsBase = flags & ~this.fmask & ~RF;
    this.eip = this.lstar[0]!;
    this.ripHigh = this.lstar[1]!;
    this.updateModes();
    this.breakLoop = true;
  }

  /** SYSRET with REX.W: back to 64-bit ring 3 (CS = STAR[63:48]+16, SS = +8), RIP = RCX, RFLAGS = R11. */
  private sysret(): void {
    if (!(this.efer & EFER_SCE)) throw new CpuFault(EXC_UD);
    this.requireCpl0();
    const base = this.star[1]! >>> 16;
    this.loadFlat(1, ((base + 16) & 0xfffc) | 3, 0xfb, 3);
    this.segAttr[1] = 0xafb;
    this.loadFlat(2, ((base + 8) & 0xfffc) | 3, 0xf3, 3);
    this.cpl = 3;
    this.flagsBase = ((this.regs[11]! & 0x3c7fd7) | 2) & ~RF;
    this.lazy = LAZY_NONE;
    this.eip = this.regs[1]!;
    this.ripHigh = this.regsHigh[1]!;
    this.updateModes();
    this.breakLoop = true;
  }

  /**
   * Interrupt/exception delivery in IA-32e mode (SDM vol. 3 §6.14): 16-byte
   * gates, 64-bit target code segment, RSP from the TSS (or an IST slot),
   * SS nulled on a privilege change, the stack aligned to 16 and five
   * 8-byte words pushed (SS, RSP, RFLAGS, CS, RIP) plus the error code.
   */
  private deliverInterrupt64(
    vector: number,
    errorCode: number,
    software: boolean,
    ext: number,
    returnEip: number,
  ): void {
    const flags = this.materializeFlags();
    const returnHigh = this.ripHigh;
    const gateSelectorCode = vector * 8 + 2 + ext;
    if (vector * 16 + 15 > this.idtLimit) throw new CpuFault(EXC_GP, gateSelectorCode);
    const gate = (this.idtBase + vector * 16) | 0;
    const words = [0, 0, 0];
    for (let i = 0; i < 3; i++) {
      this.linHigh = this.idtBaseHigh;
      words[i] = this.sysRead32((gate + 4 * i) | 0);
    }
    const [low, high, offsetHigh] = words as [number, number, number];
    const type = (high >> 8) & 0x1f;
    if (type !== 0x0e && type !== 0x0f) throw new CpuFault(EXC_GP, gateSelectorCode);
    if (software && ((high >> 13) & 3) < this.cpl) throw new CpuFault(EXC_GP, gateSelectorCode);
    if (!(high & 0x8000)) throw new CpuFault(EXC_NP, gateSelectorCode);
    const selector = low >>> 16;
    if ((selector & 0xfffc) === 0) throw new CpuFault(EXC_GP, ext);
    this.readDescriptor(selector);
    const attr = X86Cpu.descAttr(this.descHigh);
    const dpl = (attr >> 5) & 3;
    if ((attr & 0x18) !== 0x18 || dpl > this.cpl || !(attr & ATTR_L) || attr & ATTR_DB) {
      throw new CpuFault(EXC_GP, (selector & 0xfffc) + ext);
    }
    if (!(attr & 0x80)) throw new CpuFault(EXC_NP, (selector & 0xfffc) + ext);
    const csLow = this.descLow;
    const csHigh = this.descHigh;
    const oldSs = this.segSel[2]!;
    const oldRsp = this.regs[4]!;
    const oldRspHigh = this.regsHigh[4]!;
    const oldCs = this.segSel[1]!;
    const ist = high & 7;
    const newCpl = attr & 4 ? this.cpl : dpl;
    if (ist !== 0 || newCpl < this.cpl) {
      const at = ist !== 0 ? TSS64_IST1 + (ist - 1) * 8 : TSS64_RSP0 + newCpl * 8;
      if (at + 7 > this.trLimit) throw new CpuFault(EXC_TS, (this.trSel & 0xfffc) + ext);
      this.linHigh = this.trBaseHigh;
      this.regs[4] = this.sysRead32((this.trBase + at) | 0);
      this.linHigh = this.trBaseHigh;
      this.regsHigh[4] = this.sysRead32((this.trBase + at + 4) | 0);
    }
    this.regs[4] &= ~15;
    if (newCpl < this.cpl) {
      this.segSel[2] = newCpl; // a null SS with RPL = the new CPL
      this.segAttr[2] = 0;
    }
    this.cpl = newCpl;
    this.push64(oldSs, 0);
    this.push64(oldRsp, oldRspHigh);
    this.push64(flags, 0);
    this.push64(oldCs, 0);
    this.push64(returnEip, returnHigh);
    if (errorCode >= 0) this.push64(errorCode, 0);
    this.descLow = csLow;
    this.descHigh = csHigh;
    this.loadCs(selector, newCpl);
    this.eip = (low & 0xffff) | (high & 0xffff0000);
    this.ripHigh = offsetHigh;
    this.flagsBase &= ~(TF | NT | RF | VM);
    if (!(type & 1)) this.flagsBase &= ~IF;
  }

  /** IRETQ: pops RIP, CS, RFLAGS, RSP and SS (always, in 64-bit mode). */
  private iret64(): void {
    const rip = this.pop64();
    const ripHigh = this.hi;
    const cs = this.pop64() & 0xffff;
    const flags = this.pop64();
    const rsp = this.pop64();
    const rspHigh = this.hi;
    const ss = this.pop64() & 0xffff;
    const oldCpl = this.cpl;
    const rpl = cs & 3;
    if ((cs & 0xfffc) === 0 || rpl < oldCpl) throw new CpuFault(EXC_GP, cs & 0xfffc);
    this.readDescriptor(cs);
    this.checkReturnCode(cs, rpl);
    const iopl = (this.flagsBase & IOPL) >> 12;
    let mask = POPF_MASK;
    if (oldCpl > 0) mask &= ~IOPL;
    if (oldCpl > iopl) mask &= ~IF;
    this.loadCs(cs, rpl);
    this.setFlagsMasked(flags, mask);
    if ((ss & 0xfffc) === 0 && this.codeSize === SIZE64 && rpl < 3) {
      this.segSel[2] = ss;
      this.segAttr[2] = 0;
    } else this.loadSegment(2, ss);
    this.regs[4] = rsp;
    this.regsHigh[4] = this.codeSize === SIZE64 ? rspHigh : 0;
    this.eip = rip;
    this.ripHigh = this.codeSize === SIZE64 ? ripHigh : 0;
    if (rpl > oldCpl) this.nullInaccessibleSegments();
    this.updateModes();
  }
}

/** Raised while delivering #DF: the CPU shuts down. */
class TripleFault {
  constructor(readonly why: string) {}
}

/**
 * CPUID.1:EDX we report: FPU(0) PSE(3) TSC(4) MSR(5) PAE(6) CX8(8) SEP(11)
 * PGE(13) CMOV(15) PAT(16). APIC(9) is added when the machine has one.
 */
/** FXSR (24), SSE (25), SSE2 (26): reported only with CpuHost.reportLongMode. */
const CPUID1_EDX_SSE2_BASELINE = (1 << 24) | (1 << 25) | (1 << 26);
export const CPUID1_EDX =
  (1 << 0) |
  (1 << 3) |
  (1 << 4) |
  (1 << 5) |
  (1 << 6) |
  (1 << 8) |
  (1 << 11) |
  (1 << 13) |
  (1 << 15) |
  (1 << 16);

const BRAND = new TextEncoder().encode("ovfkit virtual x86 CPU".padEnd(48, "\0"));
