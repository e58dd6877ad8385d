import type { Argv, CommandModule } from "yargs";
import { type BootResult, bootTest } from "../runtime/boot.js";
import { qemuBootTest } from "../runtime/engines/qemu.js";
import { printJson, runCommand } from "./common.js";

type BootOutput = "human" | "json" | "junit";

interface BootArgs {
  target: string;
  expect?: string;
  timeout: number;
  "wall-timeout"?: number;
  memory: number;
  output: BootOutput;
  console?: string;
  apic: boolean;
  f?: string;
  "disk-bus": "virtio" | "ide";
  engine: "ovfkit" | "qemu";
}

function xmlEscape(text: string): string {
  return text.replace(
    /[<>&"'\u0000-\u0008\u000b\u000c\u000e-\u001f]/g,
    (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? "",
  );
}

/** One JUnit test case: the boot, failed with the verdict unless it passed. */
export function junitReport(result: BootResult): string {
  const name = `boot ${result.target}${result.expect ? ` expecting "${result.expect}"` : ""}`;
  const failure = result.passed
    ? ""
    : `\n    <failure type="${result.verdict}" message="${xmlEscape(result.detail)}">${xmlEscape(result.consoleTail)}</failure>`;
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites tests="1" failures="${result.passed ? 0 : 1}" time="${result.wallSeconds.toFixed(3)}">`,
    `  <testsuite name="ovfkit boot" tests="1" failures="${result.passed ? 0 : 1}" time="${result.wallSeconds.toFixed(3)}">`,
    `  <testcase classname="ovfkit.boot" name="${xmlEscape(name)}" time="${result.wallSeconds.toFixed(3)}">${failure}`,
    `    <system-out>${xmlEscape(result.consoleTail)}</system-out>`,
    "  </testcase>",
    "  </testsuite>",
    "</testsuites>",
    "",
  ].join("\n");
}

/** Bad option values are usage errors: exit 2, like yargs' own. */
const USAGE_EXIT = 2;

function usageError(args: BootArgs): string | undefined {
  if (!(args.timeout > 0)) return "--timeout must be a positive number of seconds";
  if (args["wall-timeout"] !== undefined && !(args["wall-timeout"] > 0)) {
    return "--wall-timeout must be a positive number of seconds";
  }
  if (!Number.isInteger(args.memory) || args.memory < 2 || args.memory > 3072) {
    return "--memory must be an integer between 2 and 3072 (MiB)";
  }
  return undefined;
}

function humanSummary(result: BootResult): string {
  const lines = [
    "",
    `verdict: ${result.verdict}${result.passed ? "" : " (failed)"}`,
    `detail: ${result.detail}`,
    `instructions: ${result.instructions} (${result.mips.toFixed(1)} MIPS)`,
    `virtual time: ${result.virtualSeconds.toFixed(3)} s (${result.skippedSeconds.toFixed(3)} s idle), host time: ${result.wallSeconds.toFixed(2)} s`,
  ];
  if (result.consoleTail.trim() === "" && result.screen !== "") {
    // Nothing on the serial console: the text screen is the only trace (appliances without console=ttyS0).
    lines.push("screen:", result.screen);
  }
  if (result.unhandledBiosCalls.length > 0) {
    const calls = result.unhandledBiosCalls.map(
      (c) => `int ${c.vector.toString(16)}h AX=${c.ax.toString(16)}h`,
    );
    lines.push(`unimplemented BIOS calls: ${calls.join(", ")}`);
  }
  return `${lines.join("\n")}\n`;
}

/** `ovfkit boot`: boot a disk in the embedded PC and report a verdict. */
export const bootCommand: CommandModule<object, BootArgs> = {
  command: "boot <target>",
  describe: "boot an appliance (disk image, OVF or OVA) in the embedded x86 PC and check its console",
  builder: (yargs: Argv) =>
    yargs
      .positional("target", {
        type: "string",
        demandOption: true,
        describe: "disk image (raw, VHD, VMDK...), .ovf or .ova (its first hard disk)",
      })
      .options({
        expect: { type: "string", describe: "stop with success when this text appears on the console" },
        timeout: { type: "number", default: 120, describe: "virtual seconds before the verdict is timeout" },
        "wall-timeout": {
          type: "number",
          describe: "host seconds before giving up (default max(600, 20×timeout))",
        },
        memory: { type: "number", default: 128, describe: "guest RAM in MiB" },
        output: {
          choices: ["human", "json", "junit"] as const,
          default: "human" as const,
          describe: "human: live console and a summary; json/junit: a report on stdout",
        },
        console: { type: "string", describe: "write the whole serial console to this file" },
        apic: { type: "boolean", default: false, describe: "add a local APIC, an I/O APIC and an MP table" },
        f: { alias: "format", type: "string", describe: "disk format; detected if omitted" },
        "disk-bus": {
          choices: ["virtio", "ide"] as const,
          default: "virtio" as const,
          describe: "the controller the boot disk sits on (virtio-blk or legacy IDE)",
        },
        engine: {
          choices: ["ovfkit", "qemu"] as const,
          default: "ovfkit" as const,
          describe: "ovfkit: the embedded PC; qemu: qemu-system-x86_64 -accel tcg (timeout in host seconds)",
        },
      })
      .example("$0 boot disk.vmdk --expect 'login:' --timeout 60", "pass when the login prompt appears")
      .example("$0 boot disk.vhd --output junit > boot.xml", "a JUnit report for CI") as Argv<BootArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const usage = usageError(args);
        if (usage) {
          process.stderr.write(`ovfkit: ${usage} (ovfkit boot --help)\n`);
          return USAGE_EXIT;
        }
        const live = args.output === "human";
        const controller = new AbortController();
        const onSignal = () => controller.abort();
        process.once("SIGINT", onSignal);
        try {
          const result = await (args.engine === "qemu" ? qemuBootTest : bootTest)(args.target, {
            diskBus: args["disk-bus"],
            expect: args.expect,
            timeoutSeconds: args.timeout,
            wallTimeoutSeconds: args["wall-timeout"],
            memoryMiB: args.memory,
            format: args.f,
            consoleFile: args.console,
            apic: args.apic,
            onConsole: live ? (chunk) => process.stdout.write(chunk) : undefined,
            signal: controller.signal,
          });
          if (args.output === "json") printJson(result);
          else if (args.output === "junit") process.stdout.write(junitReport(result));
          else process.stdout.write(humanSummary(result));
          return result.passed ? 0 : 1;
        } finally {
          process.off("SIGINT", onSignal);
        }
      },
      { mode: args.output === "json" ? "json" : "human" },
    ),
};
