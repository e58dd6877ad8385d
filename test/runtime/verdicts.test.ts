import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bootTest } from "../../src/runtime/boot.js";
import type { Cpu, CpuHost, StopReason } from "../../src/runtime/cpu/api.js";
import { Machine } from "../../src/runtime/machine.js";
import { ovfkit } from "../helpers/cli.js";
import { tempDir } from "../helpers/tmp.js";
import { bootSectorDisk, bufferDisk, newMachine } from "./harness.js";

const dir = tempDir();

function diskFile(name: string, data: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, data);
  return path;
}

// Boot sectors, hand-assembled (16-bit).
const JMP_SELF = [0xeb, 0xfe]; // jmp $
const CLI_HLT = [0xfa, 0xf4]; // cli; hlt
const STI_HLT_LOOP = [0xfa, 0xb0, 0xff, 0xe6, 0x21, 0xfb, 0xf4, 0xeb, 0xfd]; // mask all IRQs; sti; hlt; jmp -3
const KBC_RESET = [0xb0, 0xfe, 0xe6, 0x64, 0xfa, 0xf4]; // mov al, 0FEh; out 64h, al; cli; hlt
// mov si, msg; lodsb; or al, al; jz done; mov dx, 3F8h; out dx, al; jmp loop; done: cli; hlt; msg db "hello", 0
const SAY_HELLO = [
  0xbe,
  0x14,
  0x7c,
  0xac,
  0x08,
  0xc0,
  0x74,
  0x06,
  0xba,
  0xf8,
  0x03,
  0xee,
  0xeb,
  0xf5,
  0xfa,
  0xf4,
  0x90,
  0x90,
  0x90,
  0x90,
  ...Buffer.from("hello\r\n\0", "latin1"),
];

describe("boot verdicts", () => {
  it("a blank disk has no bootable sector", async () => {
    const result = await bootTest(diskFile("blank.raw", Buffer.alloc(64 * 1024)), { timeoutSeconds: 1 });
    expect(result.verdict).toBe("no-bootable-disk");
    expect(result.passed).toBe(false);
    expect(result.detail).toMatch(/55 AA/);
  });

  it("a guest that spins reaches the virtual-time timeout, at the same instruction count each run", async () => {
    const path = diskFile("spin.raw", bootSectorDisk(JMP_SELF));
    const a = await bootTest(path, { timeoutSeconds: 0.002, expect: "never" });
    expect(a.verdict).toBe("timeout");
    expect(a.virtualSeconds).toBeGreaterThanOrEqual(0.002);
    const b = await bootTest(path, { timeoutSeconds: 0.002, expect: "never" });
    expect(b.instructions).toBe(a.instructions);
  });

  it("CLI; HLT is guest-halted; HLT with every IRQ masked and no timer is guest-halted too", async () => {
    const halted = await bootTest(diskFile("halt.raw", bootSectorDisk(CLI_HLT)), { timeoutSeconds: 1 });
    expect(halted.verdict).toBe("guest-halted");
    const idle = await bootTest(diskFile("idle.raw", bootSectorDisk(STI_HLT_LOOP)), { timeoutSeconds: 1 });
    // The PIT still runs, but masked at the PIC it can never wake the CPU.
    expect(idle.verdict).toBe("guest-halted");
    expect(idle.detail).toMatch(/masked/);
    expect(idle.passed).toBe(false);
  });

  it("a keyboard-controller reset ends the run as guest-reset", async () => {
    const result = await bootTest(diskFile("reset.raw", bootSectorDisk(KBC_RESET)), { timeoutSeconds: 1 });
    expect(result.verdict).toBe("guest-reset");
    expect(result.detail).toMatch(/i8042/);
  });

  it("stops at the expected text on the serial console", async () => {
    const result = await bootTest(diskFile("hello.raw", bootSectorDisk(SAY_HELLO)), {
      expect: "hell",
      timeoutSeconds: 1,
    });
    expect(result.verdict).toBe("passed");
    expect(result.consoleTail).toBe("hell");
  });

  it("reports cpu-fault and unimplemented-instruction from the CPU's stop reasons", async () => {
    const fake = (stop: StopReason) => (host: CpuHost) => new ScriptedCpu(host, stop);
    const fault = await newMachineWith(fake({ kind: "shutdown", why: "triple fault" })).run();
    expect(fault.kind).toBe("cpu-fault");
    expect(fault.detail).toMatch(/triple fault; state/);
    const missing = await newMachineWith(
      fake({ kind: "unimplemented", address: 0x7c10, bytes: [0x0f, 0xc7, 0xf0], mode: "real" }),
    ).run();
    expect(missing).toMatchObject({
      kind: "unimplemented-instruction",
      address: 0x7c10,
      bytes: [0x0f, 0xc7, 0xf0],
    });
    expect(missing.detail).toMatch(/0f c7 f0 at 0x7c10/);
  });

  it("the overlay keeps guest writes away from the disk file", async () => {
    // mov ax, 0301h; mov cx, 0002h; mov dx, 0080h; xor bx, bx; mov es, bx; mov bx, 7C00h; int 13h; cli; hlt
    const writer = [
      0xb8, 0x01, 0x03, 0xb9, 0x02, 0x00, 0xba, 0x80, 0x00, 0x31, 0xdb, 0x8e, 0xc3, 0xbb, 0x00, 0x7c, 0xcd,
      0x13, 0xfa, 0xf4,
    ];
    const data = bootSectorDisk(writer);
    const disk = bufferDisk(data);
    const machine = newMachine({ disk });
    const stop = await machine.run({ maxVirtualNs: 1e9 });
    expect(stop.kind).toBe("guest-halted");
    expect(data.subarray(512, 1024).every((b) => b === 0)).toBe(true);
    expect((await machine.disk!.read(512, 512)).equals(data.subarray(0, 512))).toBe(true);
  });
});

describe("ovfkit boot (CLI)", () => {
  it("exit 0 with the expected text, JSON report on stdout", () => {
    const path = diskFile("cli-hello.raw", bootSectorDisk(SAY_HELLO));
    const result = ovfkit(["boot", path, "--expect", "hello", "--output", "json", "--timeout", "1"]);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ verdict: "passed", passed: true, expect: "hello" });
    expect(report.instructions).toBeGreaterThan(0);
    expect(report.consoleTail).toContain("hello");
  });

  it("exit 1 with a verdict; human mode prints the console live and a summary; --console keeps it", () => {
    const path = diskFile("cli-halt.raw", bootSectorDisk(SAY_HELLO));
    const consoleFile = join(dir, "console.txt");
    const result = ovfkit(["boot", path, "--expect", "login:", "--timeout", "1", "--console", consoleFile]);
    expect(result.status).toBe(1);
    expect(result.stdout).toContain("hello");
    expect(result.stdout).toMatch(/verdict: guest-halted \(failed\)/);
    expect(readFileSync(consoleFile, "latin1")).toBe("hello\r\n");
  });

  it("shows the text screen when the serial console stayed silent", () => {
    // mov ax, 0E41h; int 10h; cli; hlt — an "A" through the BIOS teletype only
    const path = diskFile("cli-screen.raw", bootSectorDisk([0xb8, 0x41, 0x0e, 0xcd, 0x10, 0xfa, 0xf4]));
    const result = ovfkit(["boot", path, "--timeout", "1"]);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/screen:\nA$/m);
  });

  it("JUnit output has one failing test case for a failed boot", () => {
    const path = diskFile("cli-blank.raw", Buffer.alloc(4096));
    const result = ovfkit(["boot", path, "--output", "junit", "--timeout", "1"]);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/<testsuites tests="1" failures="1"/);
    expect(result.stdout).toMatch(/<failure type="no-bootable-disk"/);
  });

  it("exit 2 for usage errors; a missing file is an error with its code", () => {
    expect(ovfkit(["boot"]).status).toBe(2);
    expect(ovfkit(["boot", "x.raw", "--timeout", "-1"]).status).toBe(2);
    const missing = ovfkit(["boot", join(dir, "nope.raw")]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/FILE_NOT_FOUND/);
  });
});

/** A CPU that stops at once with a given reason (to test the machine's verdict mapping). */
class ScriptedCpu implements Cpu {
  instructions = 0;
  readonly mode = "real" as const;
  a20 = true;
  tscOffset = 0;
  constructor(
    _host: CpuHost,
    private readonly stop: StopReason,
  ) {}
  reset(): void {}
  requestStop(): void {}
  run(maxInstructions: number): StopReason {
    this.instructions += Math.min(maxInstructions, 10);
    return this.stop;
  }
  getReg32(): number {
    return 0;
  }
  setReg32(): void {}
  getReg16(): number {
    return 0;
  }
  setReg16(): void {}
  getReg8(): number {
    return 0;
  }
  setReg8(): void {}
  getSegmentSelector(): number {
    return 0;
  }
  getSegmentBase(): number {
    return 0;
  }
  loadSegmentReal(): void {}
  getFlags(): number {
    return 2;
  }
  setFlags(): void {}
  getEip(): number {
    return 0;
  }
  jumpReal(): void {}
  describeState(): string {
    return "state";
  }
}

function newMachineWith(createCpu: (host: CpuHost) => Cpu): Machine {
  return new Machine({ memoryMiB: 2, createCpu });
}
