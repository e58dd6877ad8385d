import type { Finding } from "../rules/types.js";
import type { ValidationReport } from "../validate.js";

const COLORS = {
  error: "\x1b[31m",
  warning: "\x1b[33m",
  info: "\x1b[36m",
  dim: "\x1b[2m",
  reset: "\x1b[0m",
} as const;

/** `file:line:col: severity RULE: message` then an indented fix hint; a summary line at the end. */
export function formatText(
  report: ValidationReport,
  options: { color?: boolean; quiet?: boolean } = {},
): string {
  const paint = (key: keyof typeof COLORS, text: string): string =>
    options.color ? `${COLORS[key]}${text}${COLORS.reset}` : text;
  const lines: string[] = [];
  for (const file of report.files) {
    for (const finding of file.findings) {
      if (options.quiet && finding.severity === "info") continue;
      lines.push(
        `${where(finding)}: ${paint(finding.severity, finding.severity)} ${finding.ruleId}: ${finding.message}`,
      );
      lines.push(paint("dim", `    fix: ${finding.fix}${finding.profile ? ` [${finding.profile}]` : ""}`));
    }
  }
  const { error, warning, info } = report.counts;
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`;
  lines.push(
    `${plural(report.files.length, "file")} checked: ${plural(error, "error")}, ${plural(warning, "warning")}, ${info} info`,
  );
  return `${lines.join("\n")}\n`;
}

function where(f: Finding): string {
  return f.line > 0 ? `${f.file}:${f.line}:${f.column}` : f.file;
}
