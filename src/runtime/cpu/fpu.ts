/**
 * x87 FPU, the subset guests use (SDM vol. 1 ch. 8, vol. 2 "F..." entries).
 *
 * Approximation: registers hold IEEE doubles, not 80-bit extended values.
 * FLD/FSTP m80 convert exactly for values a double can hold and round the
 * 64-bit significand to 53 bits otherwise; FILD/FISTP m64 are exact only up
 * to 2^53. Precision control (CW.PC) is ignored (always double); rounding
 * control (CW.RC) is honoured by FIST/FISTP and FRNDINT only. Exceptions are
 * flagged in the status word but never delivered (#MF / IRQ13 are not
 * raised, as if all were masked). Transcendentals use Math.* (double).
 */
import type { Insn } from "./decoder.js";
import { Unimplemented } from "./faults.js";

/** What the FPU needs from the CPU: memory operands and EFLAGS for FCOMI. */
export interface FpuCpu {
  effectiveAddress(insn: Insn): number;
  read8(lin: number): number;
  read16(lin: number): number;
  read32(lin: number): number;
  write8(lin: number, v: number): void;
  write16(lin: number, v: number): void;
  write32(lin: number, v: number): void;
  setReg16(reg: number, value: number): void;
  materializeFlags(): number;
  flagsBase: number;
  lazy: number;
}

// Status word bits.
const SW_IE = 0x1;
const SW_ZE = 0x4;
const SW_SF = 0x40;
const SW_C0 = 0x100;
const SW_C1 = 0x200;
const SW_C2 = 0x400;
const SW_C3 = 0x4000;
const SW_CC = SW_C0 | SW_C1 | SW_C2 | SW_C3;

// Tag values (2 bits per register, by physical register number).
const TAG_VALID = 0;
const TAG_ZERO = 1;
const TAG_SPECIAL = 2;
const TAG_EMPTY = 3;

const scratch = new DataView(new ArrayBuffer(8));
/** Offset of ST0 in an FXSAVE image (SDM vol. 1 table 10-2). */
const FX_ST0 = 32;

export class Fpu {
  readonly st = new Float64Array(8);
  readonly tags = new Uint8Array(8);
  top = 0;
  control = 0x37f;
  status = 0;
  lastIp = 0;
  lastOpcode = 0;
  lastData = 0;

  constructor(private readonly cpu: FpuCpu) {
    this.reset();
  }

  reset(): void {
    this.control = 0x37f;
    this.status = 0;
    this.top = 0;
    this.tags.fill(TAG_EMPTY);
    this.st.fill(0);
    this.lastIp = this.lastOpcode = this.lastData = 0;
  }

  /** The status word with TOP in bits 11-13 (what FNSTSW stores). */
  statusWord(): number {
    return (this.status & ~0x3800) | ((this.top & 7) << 11);
  }

  private tagWord(): number {
    let tw = 0;
    for (let i = 0; i < 8; i++) {
      let tag = this.tags[i]!;
      if (tag !== TAG_EMPTY) {
        const v = this.st[i]!;
        tag = v === 0 ? TAG_ZERO : Number.isFinite(v) ? TAG_VALID : TAG_SPECIAL;
      }
      tw |= tag << (2 * i);
    }
    return tw;
  }

  private setTagWord(tw: number): void {
    for (let i = 0; i < 8; i++) this.tags[i] = ((tw >> (2 * i)) & 3) === TAG_EMPTY ? TAG_EMPTY : TAG_VALID;
  }

  // ---- stack ----
  private phys(i: number): number {
    return (this.top + i) & 7;
  }

  get(i: number): number {
    const p = this.phys(i);
    if (this.tags[p] === TAG_EMPTY) {
      this.status |= SW_IE | SW_SF;
      this.status &= ~SW_C1;
      return Number.NaN;
    }
    return this.st[p]!;
  }

  private set(i: number, v: number): void {
    const p = this.phys(i);
    this.st[p] = v;
    this.tags[p] = TAG_VALID;
  }

  push(v: number): void {
    this.top = (this.top - 1) & 7;
    if (this.tags[this.top] !== TAG_EMPTY) {
      this.status |= SW_IE | SW_SF | SW_C1;
      v = Number.NaN;
    }
    this.st[this.top] = v;
    this.tags[this.top] = TAG_VALID;
  }

  pop(): void {
    this.tags[this.top] = TAG_EMPTY;
    this.top = (this.top + 1) & 7;
  }

  // ---- rounding ----
  private round(v: number): number {
    switch ((this.control >> 10) & 3) {
      case 0: {
        // nearest, ties to even
        const r = Math.round(v);
        return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
      }
      case 1:
        return Math.floor(v);
      case 2:
        return Math.ceil(v);
      default:
        return Math.trunc(v);
    }
  }

  // ---- comparisons ----
  private compare(a: number, b: number): number {
    if (Number.isNaN(a) || Number.isNaN(b)) return SW_C0 | SW_C2 | SW_C3;
    if (a > b) return 0;
    if (a < b) return SW_C0;
    return SW_C3;
  }

  private setCompare(a: number, b: number): void {
    this.status = (this.status & ~SW_CC) | this.compare(a, b);
  }

  /** FCOMI/FUCOMI: ZF, PF, CF from the comparison; OF, SF, AF cleared. */
  private setCompareEflags(a: number, b: number): void {
    const cc = this.compare(a, b);
    const f = this.cpu.materializeFlags() & ~(0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x800);
    this.cpu.flagsBase = f | (cc & SW_C0 ? 0x1 : 0) | (cc & SW_C2 ? 0x4 : 0) | (cc & SW_C3 ? 0x40 : 0);
    this.status &= ~SW_C1;
  }

  private arith(op: number, a: number, b: number): number {
    switch (op) {
      case 0:
        return a + b;
      case 1:
        return a * b;
      case 4:
        return a - b;
      case 5:
        return b - a;
      case 6:
        if (b === 0 && !Number.isNaN(a) && a !== 0) this.status |= SW_ZE;
        return a / b;
      default:
        if (a === 0 && !Number.isNaN(b) && b !== 0) this.status |= SW_ZE;
        return b / a;
    }
  }

  // ---- memory formats ----
  private readF32(addr: number): number {
    scratch.setInt32(0, this.cpu.read32(addr), true);
    return scratch.getFloat32(0, true);
  }

  private readF64(addr: number): number {
    scratch.setInt32(0, this.cpu.read32(addr), true);
    scratch.setInt32(4, this.cpu.read32((addr + 4) | 0), true);
    return scratch.getFloat64(0, true);
  }

  private writeF32(addr: number, v: number): void {
    scratch.setFloat32(0, v, true);
    this.cpu.write32(addr, scratch.getInt32(0, true));
  }

  private writeF64(addr: number, v: number): void {
    scratch.setFloat64(0, v, true);
    this.cpu.write32(addr, scratch.getInt32(0, true));
    this.cpu.write32((addr + 4) | 0, scratch.getInt32(4, true));
  }

  private readF80(addr: number): number {
    const low = this.cpu.read32(addr) >>> 0;
    const high = this.cpu.read32((addr + 4) | 0) >>> 0;
    const se = this.cpu.read16((addr + 8) | 0);
    return extendedToDouble(low, high, se);
  }

  private writeF80(addr: number, v: number): void {
    const [low, high, se] = doubleToExtended(v);
    this.cpu.write32(addr, low);
    this.cpu.write32((addr + 4) | 0, high);
    this.cpu.write16((addr + 8) | 0, se);
  }

  private readI64(addr: number): number {
    const low = this.cpu.read32(addr) >>> 0;
    const high = this.cpu.read32((addr + 4) | 0);
    return high * 0x100000000 + low;
  }

  /** Integer store with the "integer indefinite" value on overflow/NaN. */
  private toInt(v: number, bits: number): bigint {
    const r = this.round(v);
    const limit = 2n ** BigInt(bits - 1);
    if (!Number.isFinite(r)) {
      this.status |= SW_IE;
      return -limit;
    }
    const big = BigInt(r);
    if (big >= limit || big < -limit) {
      this.status |= SW_IE;
      return -limit;
    }
    return big;
  }

  private writeInt(addr: number, v: number, bits: number): void {
    const big = this.toInt(v, bits);
    if (bits === 16) this.cpu.write16(addr, Number(BigInt.asIntN(16, big)) & 0xffff);
    else if (bits === 32) this.cpu.write32(addr, Number(BigInt.asIntN(32, big)));
    else {
      this.cpu.write32(addr, Number(BigInt.asIntN(32, big)));
      this.cpu.write32((addr + 4) | 0, Number(BigInt.asIntN(32, big >> 32n)));
    }
  }

  // ---- environment ----
  private storeEnvironment(addr: number, size32: boolean): number {
    if (size32) {
      this.cpu.write32(addr, this.control | 0xffff0000);
      this.cpu.write32((addr + 4) | 0, this.statusWord() | 0xffff0000);
      this.cpu.write32((addr + 8) | 0, this.tagWord() | 0xffff0000);
      this.cpu.write32((addr + 12) | 0, this.lastIp);
      this.cpu.write32((addr + 16) | 0, this.lastOpcode & 0x7ff);
      this.cpu.write32((addr + 20) | 0, this.lastData);
      this.cpu.write32((addr + 24) | 0, 0xffff0000 | 0);
      return 28;
    }
    this.cpu.write16(addr, this.control);
    this.cpu.write16((addr + 2) | 0, this.statusWord());
    this.cpu.write16((addr + 4) | 0, this.tagWord());
    this.cpu.write16((addr + 6) | 0, this.lastIp);
    this.cpu.write16((addr + 8) | 0, 0);
    this.cpu.write16((addr + 10) | 0, this.lastData);
    this.cpu.write16((addr + 12) | 0, 0);
    return 14;
  }

  private loadEnvironment(addr: number, size32: boolean): number {
    this.control = this.cpu.read16(addr);
    const sw = this.cpu.read16((addr + (size32 ? 4 : 2)) | 0);
    this.status = sw & ~0x3800;
    this.top = (sw >> 11) & 7;
    this.setTagWord(this.cpu.read16((addr + (size32 ? 8 : 4)) | 0));
    return size32 ? 28 : 14;
  }

  // ---- FXSAVE image (SDM vol. 1 §10.5.1, table 10-2; bytes 0-159) ----
  /**
   * Writes the x87 part of an FXSAVE image at `addr`: FCW, FSW, the
   * abridged tag byte (bit i = physical register i is not empty), FOP,
   * FPU IP/DP (32-bit format) and ST0-ST7 in stack order, 16 bytes apart.
   */
  storeFxImage(addr: number): void {
    let abridged = 0;
    for (let i = 0; i < 8; i++) if (this.tags[i] !== TAG_EMPTY) abridged |= 1 << i;
    this.cpu.write16(addr, this.control);
    this.cpu.write16((addr + 2) | 0, this.statusWord());
    this.cpu.write16((addr + 4) | 0, abridged);
    this.cpu.write16((addr + 6) | 0, this.lastOpcode & 0x7ff);
    this.cpu.write32((addr + 8) | 0, this.lastIp);
    this.cpu.write32((addr + 12) | 0, 0);
    this.cpu.write32((addr + 16) | 0, this.lastData);
    this.cpu.write32((addr + 20) | 0, 0);
    for (let i = 0; i < 8; i++) {
      const slot = (addr + FX_ST0 + 16 * i) | 0;
      this.writeF80(slot, this.st[this.phys(i)]!);
      this.cpu.write16((slot + 10) | 0, 0);
      this.cpu.write32((slot + 12) | 0, 0);
    }
  }

  /** Loads the x87 part of an FXSAVE image (the inverse of storeFxImage). */
  loadFxImage(addr: number): void {
    this.control = this.cpu.read16(addr);
    const sw = this.cpu.read16((addr + 2) | 0);
    this.status = sw & ~0x3800;
    this.top = (sw >> 11) & 7;
    const abridged = this.cpu.read8((addr + 4) | 0);
    this.lastOpcode = this.cpu.read16((addr + 6) | 0) & 0x7ff;
    this.lastIp = this.cpu.read32((addr + 8) | 0);
    this.lastData = this.cpu.read32((addr + 16) | 0);
    for (let i = 0; i < 8; i++) this.st[this.phys(i)] = this.readF80((addr + FX_ST0 + 16 * i) | 0);
    for (let i = 0; i < 8; i++) this.tags[i] = abridged & (1 << i) ? TAG_VALID : TAG_EMPTY;
  }

  // ---- dispatch ----
  execute(insn: Insn): void {
    const op = insn.opcode & 7;
    const reg = insn.reg & 7;
    if (!insn.rmIsReg) {
      this.executeMemory(insn, op, reg, this.cpu.effectiveAddress(insn));
      this.lastOpcode = ((op << 8) | (insn.mod << 6) | (reg << 3) | insn.rm) & 0x7ff;
      return;
    }
    this.executeRegister(op, reg, insn.rm & 7);
  }

  private executeMemory(insn: Insn, op: number, reg: number, addr: number): void {
    this.lastData = addr;
    switch (op) {
      case 0: // D8: m32real arithmetic
      case 2: // DA: m32int
      case 4: // DC: m64real
      case 6: {
        // DE: m16int
        let v: number;
        if (op === 0) v = this.readF32(addr);
        else if (op === 2) v = this.cpu.read32(addr);
        else if (op === 4) v = this.readF64(addr);
        else v = (this.cpu.read16(addr) << 16) >> 16;
        if (reg === 2 || reg === 3) {
          this.setCompare(this.get(0), v);
          if (reg === 3) this.pop();
          return;
        }
        this.set(0, this.arith(reg, this.get(0), v));
        return;
      }
      case 1:
        switch (reg) {
          case 0:
            this.push(this.readF32(addr));
            return;
          case 2:
            this.writeF32(addr, this.get(0));
            return;
          case 3:
            this.writeF32(addr, this.get(0));
            this.pop();
            return;
          case 4:
            this.loadEnvironment(addr, insn.opSize !== 16);
            return;
          case 5:
            this.control = this.cpu.read16(addr);
            return;
          case 6:
            this.storeEnvironment(addr, insn.opSize !== 16);
            this.control |= 0x3f;
            return;
          case 7:
            this.cpu.write16(addr, this.control);
            return;
          default:
            throw new Unimplemented("x87 instruction outside the implemented subset");
        }
      case 3:
        switch (reg) {
          case 0:
            this.push(this.cpu.read32(addr));
            return;
          case 2:
            this.writeInt(addr, this.get(0), 32);
            return;
          case 3:
            this.writeInt(addr, this.get(0), 32);
            this.pop();
            return;
          case 5:
            this.push(this.readF80(addr));
            return;
          case 7:
            this.writeF80(addr, this.get(0));
            this.pop();
            return;
          default:
            throw new Unimplemented("x87 instruction outside the implemented subset");
        }
      case 5:
        switch (reg) {
          case 0:
            this.push(this.readF64(addr));
            return;
          case 2:
            this.writeF64(addr, this.get(0));
            return;
          case 3:
            this.writeF64(addr, this.get(0));
            this.pop();
            return;
          case 4: {
            // FRSTOR
            const at = this.loadEnvironment(addr, insn.opSize !== 16);
            for (let i = 0; i < 8; i++) {
              const p = this.phys(i);
              const tag = this.tags[p]!;
              this.st[p] = this.readF80((addr + at + 10 * i) | 0);
              this.tags[p] = tag;
            }
            return;
          }
          case 6: {
            // FNSAVE, then FNINIT
            const at = this.storeEnvironment(addr, insn.opSize !== 16);
            for (let i = 0; i < 8; i++) this.writeF80((addr + at + 10 * i) | 0, this.st[this.phys(i)]!);
            this.reset();
            return;
          }
          case 7:
            this.cpu.write16(addr, this.statusWord());
            return;
          default:
            throw new Unimplemented("x87 instruction outside the implemented subset");
        }
      default:
        // DF
        switch (reg) {
          case 0:
            this.push((this.cpu.read16(addr) << 16) >> 16);
            return;
          case 2:
            this.writeInt(addr, this.get(0), 16);
            return;
          case 3:
            this.writeInt(addr, this.get(0), 16);
            this.pop();
            return;
          case 5:
            this.push(this.readI64(addr));
            return;
          case 7:
            this.writeInt(addr, this.get(0), 64);
            this.pop();
            return;
          default:
            throw new Unimplemented("x87 instruction outside the implemented subset");
        }
    }
  }

  private executeRegister(op: number, reg: number, i: number): void {
    switch (op) {
      case 0:
        if (reg === 2 || reg === 3) {
          this.setCompare(this.get(0), this.get(i));
          if (reg === 3) this.pop();
          return;
        }
        this.set(0, this.arith(reg, this.get(0), this.get(i)));
        return;
      case 1:
        this.executeD9(reg, i);
        return;
      case 2:
        if (reg < 4) {
          if (this.fcmovCondition(reg)) this.set(0, this.get(i));
          return;
        }
        if (reg === 5 && i === 1) {
          this.setCompare(this.get(0), this.get(1));
          this.pop();
          this.pop();
          return;
        }
        throw new Unimplemented("x87 instruction outside the implemented subset");
      case 3:
        if (reg < 4) {
          if (!this.fcmovCondition(reg)) this.set(0, this.get(i));
          return;
        }
        if (reg === 4) {
          if (i === 2)
            this.status &= ~0x80ff; // FNCLEX
          else if (i === 3) this.reset(); // FNINIT
          // E0/E1/E4 (FENI/FDISI/FSETPM) are no-ops on a 387+.
          return;
        }
        if (reg === 5 || reg === 6) {
          this.setCompareEflags(this.get(0), this.get(i));
          return;
        }
        throw new Unimplemented("x87 instruction outside the implemented subset");
      case 4: {
        // DC: ST(i) = ST(i) op ST(0), with SUB/SUBR and DIV/DIVR swapped relative to D8.
        if (reg === 2 || reg === 3) {
          this.setCompare(this.get(0), this.get(i));
          if (reg === 3) this.pop();
          return;
        }
        const swapped = reg >= 4 ? reg ^ 1 : reg;
        this.set(i, this.arith(swapped, this.get(i), this.get(0)));
        return;
      }
      case 5:
        switch (reg) {
          case 0:
            this.tags[this.phys(i)] = TAG_EMPTY; // FFREE
            return;
          case 2:
            this.set(i, this.get(0));
            return;
          case 3:
            this.set(i, this.get(0));
            this.pop();
            return;
          case 4:
          case 5:
            this.setCompare(this.get(0), this.get(i));
            if (reg === 5) this.pop();
            return;
          default:
            throw new Unimplemented("x87 instruction outside the implemented subset");
        }
      case 6: {
        if (reg === 3) {
          if (i !== 1) throw new Unimplemented("x87 instruction outside the implemented subset");
          this.setCompare(this.get(0), this.get(1));
          this.pop();
          this.pop();
          return;
        }
        if (reg === 2) throw new Unimplemented("x87 instruction outside the implemented subset");
        const swapped = reg >= 4 ? reg ^ 1 : reg;
        this.set(i, this.arith(swapped, this.get(i), this.get(0)));
        this.pop();
        return;
      }
      default:
        // DF
        if (reg === 4 && i === 0) {
          this.cpu.setReg16(0, this.statusWord());
          return;
        }
        if (reg === 5 || reg === 6) {
          this.setCompareEflags(this.get(0), this.get(i));
          this.pop();
          return;
        }
        if (reg === 0) {
          this.tags[this.phys(i)] = TAG_EMPTY;
          this.pop();
          return;
        }
        throw new Unimplemented("x87 instruction outside the implemented subset");
    }
  }

  /** FCMOVcc conditions for DA (B, E, BE, U); DB negates them. */
  private fcmovCondition(reg: number): boolean {
    const f = this.cpu.materializeFlags();
    switch (reg) {
      case 0:
        return (f & 1) !== 0;
      case 1:
        return (f & 0x40) !== 0;
      case 2:
        return (f & 0x41) !== 0;
      default:
        return (f & 4) !== 0;
    }
  }

  private executeD9(reg: number, i: number): void {
    switch (reg) {
      case 0:
        this.push(this.get(i));
        return;
      case 1: {
        const a = this.get(0);
        const b = this.get(i);
        this.set(0, b);
        this.set(i, a);
        return;
      }
      case 2:
        if (i === 0) return; // FNOP
        throw new Unimplemented("x87 instruction outside the implemented subset");
      case 4:
        switch (i) {
          case 0:
            this.set(0, -this.get(0));
            return;
          case 1:
            this.set(0, Math.abs(this.get(0)));
            return;
          case 4:
            this.setCompare(this.get(0), 0);
            return;
          case 5:
            this.fxam();
            return;
          default:
            throw new Unimplemented("x87 instruction outside the implemented subset");
        }
      case 5: {
        const constants = [1, Math.log2(10), Math.LOG2E, Math.PI, Math.log10(2), Math.LN2, 0];
        if (i > 6) throw new Unimplemented("x87 instruction outside the implemented subset");
        this.push(constants[i]!);
        return;
      }
      case 6:
        this.executeD9F0(i);
        return;
      case 7:
        this.executeD9F8(i);
        return;
      default:
        throw new Unimplemented("x87 instruction outside the implemented subset");
    }
  }

  private executeD9F0(i: number): void {
    switch (i) {
      case 0:
        this.set(0, 2 ** this.get(0) - 1);
        return;
      case 1: {
        const v = this.get(1) * Math.log2(this.get(0));
        this.pop();
        this.set(0, v);
        return;
      }
      case 2:
        this.set(0, Math.tan(this.get(0)));
        this.push(1);
        this.status &= ~SW_C2;
        return;
      case 3: {
        const v = Math.atan2(this.get(1), this.get(0));
        this.pop();
        this.set(0, v);
        return;
      }
      case 4: {
        const v = this.get(0);
        const exponent = v === 0 ? Number.NEGATIVE_INFINITY : Math.floor(Math.log2(Math.abs(v)));
        const significand = v === 0 ? v : v / 2 ** exponent;
        this.set(0, exponent);
        this.push(significand);
        return;
      }
      case 5:
      case 8: {
        const a = this.get(0);
        const b = this.get(1);
        this.set(0, i === 5 ? a - Math.round(a / b) * b : a % b);
        this.status &= ~(SW_C2 | SW_C0 | SW_C1 | SW_C3);
        return;
      }
      case 6:
        this.top = (this.top - 1) & 7;
        return;
      default:
        this.top = (this.top + 1) & 7;
        return;
    }
  }

  private executeD9F8(i: number): void {
    switch (i) {
      case 0: {
        const a = this.get(0);
        const b = this.get(1);
        const q = Math.trunc(a / b);
        this.set(0, a - q * b);
        this.status &= ~(SW_C0 | SW_C1 | SW_C2 | SW_C3);
        if (q & 1) this.status |= SW_C1;
        if (q & 2) this.status |= SW_C3;
        if (q & 4) this.status |= SW_C0;
        return;
      }
      case 1: {
        const v = this.get(1) * Math.log2(this.get(0) + 1);
        this.pop();
        this.set(0, v);
        return;
      }
      case 2:
        this.set(0, Math.sqrt(this.get(0)));
        return;
      case 3: {
        const v = this.get(0);
        this.set(0, Math.sin(v));
        this.push(Math.cos(v));
        this.status &= ~SW_C2;
        return;
      }
      case 4:
        this.set(0, this.round(this.get(0)));
        return;
      case 5:
        this.set(0, this.get(0) * 2 ** Math.trunc(this.get(1)));
        return;
      case 6:
        this.set(0, Math.sin(this.get(0)));
        this.status &= ~SW_C2;
        return;
      default:
        this.set(0, Math.cos(this.get(0)));
        this.status &= ~SW_C2;
        return;
    }
  }

  private fxam(): void {
    const p = this.phys(0);
    const v = this.st[p]!;
    let cc: number;
    if (this.tags[p] === TAG_EMPTY) cc = SW_C3 | SW_C0;
    else if (Number.isNaN(v)) cc = SW_C0;
    else if (!Number.isFinite(v)) cc = SW_C2 | SW_C0;
    else if (v === 0) cc = SW_C3;
    else cc = SW_C2;
    if (v < 0 || Object.is(v, -0)) cc |= SW_C1;
    this.status = (this.status & ~SW_CC) | cc;
  }
}

/** 80-bit extended (low/high significand words, sign+exponent) -> double. */
export function extendedToDouble(low: number, high: number, se: number): number {
  const sign = se & 0x8000 ? -1 : 1;
  const exponent = se & 0x7fff;
  if (exponent === 0 && low === 0 && high === 0) return sign * 0;
  if (exponent === 0x7fff) {
    return (high & 0x7fffffff) === 0 && low === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  }
  const e = exponent - 16383;
  return sign * (high * 2 ** (e - 31) + low * 2 ** (e - 63));
}

/** double -> 80-bit extended as [low, high, sign+exponent]. */
export function doubleToExtended(v: number): [number, number, number] {
  scratch.setFloat64(0, v, true);
  const lo = scratch.getUint32(0, true);
  const hi = scratch.getUint32(4, true);
  const sign = hi & 0x80000000 ? 0x8000 : 0;
  let exponent = (hi >>> 20) & 0x7ff;
  let fracHigh = hi & 0xfffff;
  let fracLow = lo;
  if (exponent === 0 && fracHigh === 0 && fracLow === 0) return [0, 0, sign];
  if (exponent === 0x7ff) {
    if (fracHigh === 0 && fracLow === 0) return [0, 0x80000000, sign | 0x7fff];
    return [0, 0xc0000000, sign | 0x7fff];
  }
  if (exponent === 0) {
    // Denormal double: normalise (every double denormal is normal in extended format).
    exponent = 1;
    while (!(fracHigh & 0x100000)) {
      fracHigh = (fracHigh << 1) | (fracLow >>> 31);
      fracLow = (fracLow << 1) >>> 0;
      exponent--;
    }
    fracHigh &= 0xfffff;
  }
  // 1.fraction(52 bits) -> explicit integer bit + 63 bits.
  const high = (0x80000000 | (fracHigh << 11) | (fracLow >>> 21)) >>> 0;
  const low = (fracLow << 11) >>> 0;
  return [low, high, sign | (exponent - 1023 + 16383)];
}
