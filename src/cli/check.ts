import type { Argv, CommandModule } from "yargs";
import { isOvfkitError } from "../errors.js";
import { type CheckFinding, type CheckReport, checkDisk } from "../formats/index.js";
import {
  formatOption,
  type OutputMode,
  openOptionsFrom,
  outputOption,
  printJson,
  reportError,
} from "./common.js";

interface CheckArgs {
  file: string;
  f?: string;
  output: OutputMode;
}

/** qemu-img check's exit codes (qemu-img(1), "check"), kept so scripts written for it work. */
export const CHECK_EXIT = {
  clean: 0,
  couldNotCheck: 1,
  corruption: 2,
  leaksOnly: 3,
  unsupported: 63,
} as const;

export function checkExitCode(report: CheckReport): number {
  if (report.findings.some((f) => f.severity === "corruption")) return CHECK_EXIT.corruption;
  if (report.findings.some((f) => f.severity === "leak")) return CHECK_EXIT.leaksOnly;
  return CHECK_EXIT.clean;
}

/** When the check itself fails: 63 if the format has no check, else 1 (qemu-img check's codes). */
export function checkFailureExitCode(error: unknown): number {
  const unsupported = isOvfkitError(error) && error.code === "UNSUPPORTED_CHECK";
  return unsupported ? CHECK_EXIT.unsupported : CHECK_EXIT.couldNotCheck;
}

/** The JSON shape: qemu-img's ImageCheck field names, plus ovfkit's findings list. */
export function checkJson(report: CheckReport): Record<string, unknown> {
  const count = (severity: CheckFinding["severity"]) =>
    report.findings.filter((f) => f.severity === severity).length;
  return {
    filename: report.filename,
    format: report.format,
    "check-errors": 0,
    corruptions: count("corruption"),
    leaks: count("leak"),
    warnings: count("warning"),
    ...(report.allocatedClusters !== undefined ? { "allocated-clusters": report.allocatedClusters } : {}),
    ...(report.totalClusters !== undefined ? { "total-clusters": report.totalClusters } : {}),
    findings: report.findings,
  };
}

function printHuman(report: CheckReport): void {
  const lines: string[] = [];
  for (const f of report.findings) {
    const where = f.offset !== undefined ? ` (${f.file} at offset ${f.offset})` : "";
    lines.push(`${f.severity.toUpperCase()}: ${f.code}: ${f.message}${where}`);
  }
  const corruptions = report.findings.filter((f) => f.severity === "corruption").length;
  const leaks = report.findings.filter((f) => f.severity === "leak").length;
  if (corruptions === 0 && leaks === 0) lines.push("No errors were found on the image.");
  if (corruptions > 0) {
    lines.push(
      `${corruptions} errors were found on the image.`,
      "Data may be corrupted, or further writes to the image may corrupt it.",
    );
  }
  if (leaks > 0) {
    lines.push(
      `${leaks} leaked clusters were found on the image.`,
      "This means waste of disk space, but no harm to data.",
    );
  }
  if (report.allocatedClusters !== undefined && report.totalClusters !== undefined) {
    const pct = report.totalClusters
      ? ((100 * report.allocatedClusters) / report.totalClusters).toFixed(2)
      : "0";
    lines.push(`${report.allocatedClusters}/${report.totalClusters} = ${pct}% allocated`);
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

/** `ovfkit check`: structural checks; exit codes as qemu-img check. */
export const checkCommand: CommandModule<object, CheckArgs> = {
  command: "check <file>",
  describe: "check an image's structure (exit 0 clean, 2 corrupt, 3 leaks only, 1 could not check)",
  builder: (yargs: Argv) =>
    yargs
      .positional("file", { type: "string", demandOption: true, describe: "disk image" })
      .options({ ...formatOption, ...outputOption })
      .example("$0 check disk.vhd", "checksums, table ranges, overlaps, footer copy")
      .example("$0 check --output json disk.vhd", "qemu-img's ImageCheck fields plus every finding")
      .epilogue(
        "Exit status: 0 no errors, 1 the check could not run, 2 corruption found, " +
          "3 leaked blocks only, 63 the format has no check (as qemu-img check).",
      ) as Argv<CheckArgs>,
  handler: async (args) => {
    try {
      const report = await checkDisk(args.file, openOptionsFrom(args));
      if (args.output === "json") printJson(checkJson(report));
      else printHuman(report);
      process.exitCode = checkExitCode(report);
    } catch (error) {
      process.exitCode = reportError(error, args.output, checkFailureExitCode(error));
    }
  },
};
