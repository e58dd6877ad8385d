/**
 * CPU benchmarks.
 *  1. Interpreter throughput (MIPS) on fixed workloads assembled with nasm:
 *     a table-driven CRC-32 and an LZ77-style compressor loop over 64 KiB,
 *     run in 32-bit flat protected mode (paging off, and again with paging on).
 *  2. The microbenchmark behind the choice of 64-bit value representation
 *     (int32 pairs in typed arrays vs BigInt vs BigUint64Array) for
 *     ADD/SHL/MUL/compare.
 * Run: npx esbuild bench/cpu.ts --bundle --platform=node --format=esm --outfile=.tmp/bench-cpu.mjs && node .tmp/bench-cpu.mjs
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IoBus, MemoryBus } from "../src/runtime/bus.js";
import { X86Cpu } from "../src/runtime/cpu/cpu.js";

/** A 32-bit workload: CRC-32 over 64 KiB, then a greedy LZ77 match search, forever; OUT 0xE9 per round. */
const WORKLOAD = (paging: boolean) => `bits 16
org 0x7c00
  cli
  lgdt [gdtr]
  mov eax, cr0
  or al, 1
  mov cr0, eax
  jmp 0x08:pm
bits 32
pm:
  mov ax, 0x10
  mov ds, ax
  mov es, ax
  mov ss, ax
  mov esp, 0x90000
%if ${paging ? 1 : 0}
  ; identity-map the first 4 MiB with 4 KiB pages: directory at 0x100000, table at 0x101000
  mov edi, 0x101000
  mov eax, 0x3
  mov ecx, 1024
.fill: stosd
  add eax, 0x1000
  loop .fill
  mov dword [0x100000], 0x101003
  mov eax, 0x100000
  mov cr3, eax
  mov eax, cr0
  or eax, 0x80000000
  mov cr0, eax
%endif
  ; CRC table at 0x200000
  xor ecx, ecx
.table:
  mov eax, ecx
  mov edx, 8
.bit:
  shr eax, 1
  jnc .nox
  xor eax, 0xEDB88320
.nox:
  dec edx
  jnz .bit
  mov [0x200000 + ecx*4], eax
  inc ecx
  cmp ecx, 256
  jb .table
  ; pseudo-random input at 0x210000 (64 KiB, xorshift with repeats for LZ)
  mov edi, 0x210000
  mov eax, 0x12345678
  mov ecx, 16384
.gen:
  mov edx, eax
  shl edx, 13
  xor eax, edx
  mov edx, eax
  shr edx, 17
  xor eax, edx
  mov edx, eax
  shl edx, 5
  xor eax, edx
  mov ebx, eax
  and ebx, 0x0f0f0f0f
  mov [edi], ebx
  add edi, 4
  loop .gen
round:
  ; CRC-32 of the buffer
  mov esi, 0x210000
  mov ecx, 65536
  mov eax, 0xffffffff
.crc:
  movzx edx, byte [esi]
  xor dl, al
  shr eax, 8
  xor eax, [0x200000 + edx*4]
  inc esi
  dec ecx
  jnz .crc
  not eax
  out 0xe9, al
  ; LZ77: for each position, the longest match among the previous 16 positions (max 32)
  mov esi, 0x210000 + 64
  xor ebp, ebp              ; total matched bytes
.pos:
  mov ebx, 1
  xor edx, edx              ; best length
.cand:
  mov edi, esi
  sub edi, ebx
  xor ecx, ecx
.cmp:
  mov al, [esi + ecx]
  cmp al, [edi + ecx]
  jne .end
  inc ecx
  cmp ecx, 32
  jb .cmp
.end:
  cmp ecx, edx
  cmova edx, ecx
  inc ebx
  cmp ebx, 16
  jbe .cand
  add ebp, edx
  inc esi
  cmp esi, 0x210000 + 16384
  jb .pos
  mov eax, ebp
  out 0xe9, al
  jmp round
align 8
gdt: dq 0, 0x00cf9a000000ffff, 0x00cf92000000ffff
gdtr: dw 23
  dd gdt
`;

function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "ovfkit-bench-"));
  try {
    writeFileSync(join(dir, "w.asm"), source);
    execFileSync("nasm", ["-f", "bin", "-o", join(dir, "w.bin"), join(dir, "w.asm")]);
    return new Uint8Array(readFileSync(join(dir, "w.bin")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface CpuBenchResult {
  name: string;
  instructions: number;
  seconds: number;
  mips: number;
}

/** Runs the workload for about `seconds` of host time and returns the rate. */
export function benchInterpreter(paging: boolean, seconds = 3): CpuBenchResult {
  const memory = new MemoryBus(16 << 20);
  const io = new IoBus();
  let outputs = 0;
  io.register(0xe9, 1, { read: () => 0, write: () => void outputs++ });
  const cpu = new X86Cpu({
    memory,
    io,
    interrupts: { hasInterrupt: () => false, acknowledge: () => 0 },
    hypercall: () => {},
  });
  memory.ram.set(assemble(WORKLOAD(paging)), 0x7c00);
  cpu.jumpReal(0, 0x7c00);
  // Warm up (table set-up, JIT tiers), then measure.
  cpu.run(20_000_000);
  const start = cpu.instructions;
  // CPU time of this process, not wall time: the machine is shared, and
  // wall time would measure the other processes too.
  const t0 = cpuSeconds();
  let elapsed = 0;
  while (elapsed < seconds) {
    const stop = cpu.run(5_000_000);
    if (stop.kind !== "budget")
      throw new Error(`workload stopped: ${JSON.stringify(stop)} ${cpu.describeState()}`);
    elapsed = cpuSeconds() - t0;
  }
  const instructions = cpu.instructions - start;
  if (outputs === 0) throw new Error("workload produced no output");
  return {
    name: `crc32+lz77 loop, paging ${paging ? "on" : "off"}`,
    instructions,
    seconds: elapsed,
    mips: instructions / elapsed / 1e6,
  };
}

// ---- 64-bit representation microbenchmark ----

export interface ReprResult {
  representation: string;
  operation: string;
  millionOpsPerSecond: number;
}

const N = 2_000_000;

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function timeIt(fn: () => number): number {
  fn(); // warm up
  const t0 = cpuSeconds();
  const sink = fn();
  const seconds = cpuSeconds() - t0;
  if (sink === 0.5) console.log(""); // keep the result alive
  return N / seconds / 1e6;
}

/** int32 pairs in an Int32Array (lo at 2i, hi at 2i+1): the representation the CPU uses. */
function pairs(op: string): number {
  const r = new Int32Array(32);
  for (let i = 0; i < 32; i++) r[i] = (i * 0x9e3779b9) | 0;
  let acc = 0;
  for (let n = 0; n < N; n++) {
    const a = (n & 7) * 2;
    const b = ((n + 3) & 7) * 2;
    const alo = r[a]!;
    const ahi = r[a + 1]!;
    const blo = r[b]!;
    const bhi = r[b + 1]!;
    if (op === "add") {
      const lo = (alo >>> 0) + (blo >>> 0);
      r[a] = lo | 0;
      r[a + 1] = (ahi + bhi + (lo > 0xffffffff ? 1 : 0)) | 0;
    } else if (op === "shl") {
      const c = n & 31;
      r[a + 1] = c === 0 ? ahi : (ahi << c) | (alo >>> (32 - c));
      r[a] = alo << c;
    } else if (op === "mul") {
      // low 64 bits of a 64x64 product from 16-bit limbs
      const a0 = alo & 0xffff;
      const a1 = alo >>> 16;
      const b0 = blo & 0xffff;
      const b1 = blo >>> 16;
      const lowLow = a0 * b0;
      const mid = a1 * b0 + a0 * b1 + (lowLow >>> 16);
      r[a] = (mid << 16) | (lowLow & 0xffff) | 0;
      r[a + 1] =
        (Math.imul(ahi, blo) + Math.imul(alo, bhi) + Math.imul(a1, b1) + Math.floor(mid / 0x10000)) | 0;
    } else if (op === "mixed") {
      // What an interpreter does most: a 32-bit ALU op on a register with a
      // value from memory, then the result as a Number for the lazy flags.
      const lo = ((alo >>> 0) + n) >>> 0;
      r[a] = lo;
      r[a + 1] = 0;
      acc += lo & 1;
    } else {
      acc += ahi < bhi || (ahi === bhi && alo >>> 0 < blo >>> 0) ? 1 : 0;
    }
  }
  return acc + r[0]!;
}

function bigints(op: string): number {
  const r: bigint[] = [];
  for (let i = 0; i < 16; i++) r.push(BigInt.asUintN(64, BigInt(i) * 0x9e3779b97f4a7c15n));
  let acc = 0;
  for (let n = 0; n < N; n++) {
    const a = n & 7;
    const b = (n + 3) & 7;
    if (op === "add") r[a] = BigInt.asUintN(64, r[a]! + r[b]!);
    else if (op === "shl") r[a] = BigInt.asUintN(64, r[a]! << BigInt(n & 31));
    else if (op === "mul") r[a] = BigInt.asUintN(64, r[a]! * r[b]!);
    else if (op === "mixed") {
      const lo = Number(BigInt.asUintN(32, r[a]! + BigInt(n)));
      r[a] = BigInt(lo);
      acc += lo & 1;
    } else acc += r[a]! < r[b]! ? 1 : 0;
  }
  return acc + Number(r[0]! & 1n);
}

function bigUint64Array(op: string): number {
  const r = new BigUint64Array(16);
  for (let i = 0; i < 16; i++) r[i] = BigInt(i) * 0x9e3779b97f4a7c15n;
  let acc = 0;
  for (let n = 0; n < N; n++) {
    const a = n & 7;
    const b = (n + 3) & 7;
    if (op === "add") r[a] = r[a]! + r[b]!;
    else if (op === "shl") r[a] = r[a]! << BigInt(n & 31);
    else if (op === "mul") r[a] = r[a]! * r[b]!;
    else if (op === "mixed") {
      const lo = Number(BigInt.asUintN(32, r[a]! + BigInt(n)));
      r[a] = BigInt(lo);
      acc += lo & 1;
    } else acc += r[a]! < r[b]! ? 1 : 0;
  }
  return acc + Number(r[0]! & 1n);
}

export function benchRepresentations(): ReprResult[] {
  const results: ReprResult[] = [];
  for (const operation of ["add", "shl", "mul", "compare", "mixed"]) {
    results.push({
      representation: "int32 pairs",
      operation,
      millionOpsPerSecond: timeIt(() => pairs(operation)),
    });
    results.push({
      representation: "BigInt",
      operation,
      millionOpsPerSecond: timeIt(() => bigints(operation)),
    });
    results.push({
      representation: "BigUint64Array",
      operation,
      millionOpsPerSecond: timeIt(() => bigUint64Array(operation)),
    });
  }
  return results;
}

export function main(): void {
  for (const paging of [false, true]) {
    const r = benchInterpreter(paging);
    console.log(
      `cpu: ${r.name}: ${r.instructions} instructions in ${r.seconds.toFixed(2)} s = ${r.mips.toFixed(1)} MIPS`,
    );
  }
  console.log("64-bit value representation (million operations per second):");
  for (const r of benchRepresentations()) {
    console.log(
      `  ${r.operation.padEnd(8)} ${r.representation.padEnd(15)} ${r.millionOpsPerSecond.toFixed(1)}`,
    );
  }
}

if (process.argv[1]?.includes("bench-cpu")) main();
