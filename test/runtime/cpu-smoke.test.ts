import { describe, expect, it } from "vitest";
import { skipReason } from "../helpers/tools.js";
import { assemble, bareMachine, runReal } from "./cpu-harness.js";

describe("smoke", () => {
  it.skipIf(skipReason("nasm") !== "")("runs real mode code", () => {
    const m = bareMachine();
    const code = assemble(`bits 16
org 0x7c00
  mov ax, 0x1234
  mov bx, 5
  add ax, bx
  xor dx, dx
  mov cx, 10
l: inc dx
  loop l
  hlt`);
    const stop = runReal(m, code);
    expect(stop).toEqual({ kind: "shutdown", why: "HLT with interrupts disabled" });
    expect(m.cpu.getReg16(0)).toBe(0x1239);
    expect(m.cpu.getReg16(2)).toBe(10);
  });
});
