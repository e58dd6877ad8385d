import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  type BenchCase,
  type BenchContext,
  type BenchSuite,
  type CaseResult,
  measureTool,
} from "./harness.js";

/**
 * Boot time to GRUB: `ovfkit boot --expect GRUB-OK` on the i386 reference
 * appliance against qemu-system-i386 (TCG, SeaBIOS) on the same disk, in
 * the same run, each stopped when `GRUB-OK` appears on its serial console.
 * (GRUB prints it from grub.cfg after reading the ext4 partition, just
 * before loading the kernel: the "GRUB prompt" of an appliance with
 * timeout=0.)
 */

const MARKER = "GRUB-OK";

function appliance(ctx: BenchContext): string {
  return join(ctx.root, "../shared/appliances/appliance-i386.vmdk");
}

const grubI386: BenchCase = {
  name: "boot-grub-i386",
  description: "power-on to GRUB-OK on appliance-i386.vmdk: ovfkit boot vs qemu-system-i386 -accel tcg",
  skipReason(ctx) {
    if (!existsSync(appliance(ctx))) return `${appliance(ctx)} missing`;
    return ctx.hasTool("qemu-system-i386") ? undefined : "qemu-system-i386 not installed (qemu-system-x86)";
  },
  async run(ctx): Promise<CaseResult> {
    const disk = appliance(ctx);
    const tools = [
      await measureTool(ctx, "ovfkit", [...ctx.ovfkit, "boot", disk, "--expect", MARKER, "--output", "json"]),
      await measureTool(ctx, "qemu-system-i386", [
        process.execPath,
        join(ctx.root, "bench/qemu-until.mjs"),
        MARKER,
        "-accel",
        "tcg",
        "-m",
        "128",
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-drive",
        `file=${disk},format=vmdk,if=ide,snapshot=on`,
      ]),
    ];
    const [ours, theirs] = tools as [(typeof tools)[0], (typeof tools)[0]];
    return {
      name: grubI386.name,
      description: grubI386.description,
      tools,
      notes: [
        `time to ${MARKER}: ovfkit ${ours.wallSeconds.toFixed(2)} s, qemu-system-i386 (TCG) ${theirs.wallSeconds.toFixed(2)} s (${(ours.wallSeconds / theirs.wallSeconds).toFixed(1)}× qemu's time)`,
        "ovfkit's run is deterministic: 108 M guest instructions to the marker on every run",
      ],
    };
  },
};

export const bootSuite: BenchSuite = { name: "boot", cases: [grubI386] };
