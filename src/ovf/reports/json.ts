import type { ValidationReport } from "../validate.js";

/** Version of the JSON report layout (docs/ovf-validate.md "JSON output"); bumped on incompatible changes. */
export const JSON_REPORT_VERSION = 1;

export interface JsonReport {
  version: typeof JSON_REPORT_VERSION;
  tool: { name: "ovfkit"; version: string };
  /** 0 no errors, 1 errors (or warnings with --warnings-as-errors). */
  exitCode: 0 | 1;
  counts: ValidationReport["counts"];
  files: ValidationReport["files"];
}

export function toJsonReport(report: ValidationReport, toolVersion: string, exitCode: 0 | 1): JsonReport {
  return {
    version: JSON_REPORT_VERSION,
    tool: { name: "ovfkit", version: toolVersion },
    exitCode,
    counts: report.counts,
    files: report.files,
  };
}

export function formatJson(report: ValidationReport, toolVersion: string, exitCode: 0 | 1): string {
  return `${JSON.stringify(toJsonReport(report, toolVersion, exitCode), null, 2)}\n`;
}
