/**
 * Exceptions raised while executing an instruction. They are thrown as JS
 * exceptions out of the executor and caught by the run loop, which delivers
 * them through the IDT/IVT (faults are rare, so the throw cost is fine).
 */

export const EXC_DE = 0; // divide error
export const EXC_DB = 1;
export const EXC_NMI = 2;
export const EXC_BP = 3;
export const EXC_OF = 4;
export const EXC_BR = 5;
export const EXC_UD = 6;
export const EXC_NM = 7;
export const EXC_DF = 8;
export const EXC_TS = 10;
export const EXC_NP = 11;
export const EXC_SS = 12;
export const EXC_GP = 13;
export const EXC_PF = 14;
export const EXC_MF = 16;
export const EXC_AC = 17;

/** A CPU exception: vector and error code (-1 when the vector has none). */
export class CpuFault {
  constructor(
    readonly vector: number,
    readonly errorCode = -1,
  ) {}
}

/** An instruction or feature this CPU does not implement: stops the run. */
export class Unimplemented {
  constructor(readonly what: string) {}
}

/** Exceptions that push an error code (SDM vol. 3 table 6-1). */
export function hasErrorCode(vector: number): boolean {
  return vector === 8 || (vector >= 10 && vector <= 14) || vector === 17;
}

/** Double-fault classes (SDM vol. 3 table 6-5): 0 benign, 1 contributory, 2 page fault. */
export function faultClass(vector: number): number {
  if (vector === 0 || (vector >= 10 && vector <= 13)) return 1;
  if (vector === 14) return 2;
  return 0;
}
