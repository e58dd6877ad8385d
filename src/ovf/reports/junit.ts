import { hostname } from "node:os";
import type { RuleDefinition } from "../rules/types.js";
import type { FileResult, ValidationReport } from "../validate.js";
import { escapeAttribute, escapeText } from "../xml.js";

/**
 * JUnit XML (the Apache Ant schema CI systems read): one <testsuite> per
 * file, one <testcase> per rule that ran on it; a rule with an error (or,
 * with warningsAsErrors, a warning) is a <failure> listing every finding.
 */
export function formatJunit(
  report: ValidationReport,
  rules: readonly RuleDefinition[],
  options: { warningsAsErrors?: boolean; timestamp?: Date } = {},
): string {
  const timestamp = (options.timestamp ?? new Date()).toISOString().slice(0, 19);
  const host = hostname() || "localhost";
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"];
  report.files.forEach((file, index) => {
    const applicable = rulesFor(file, rules);
    let failures = 0;
    const cases: string[] = [];
    for (const rule of applicable) {
      const findings = file.findings.filter((f) => f.ruleId === rule.id);
      const failing = findings.filter(
        (f) => f.severity === "error" || (options.warningsAsErrors && f.severity === "warning"),
      );
      const open = `    <testcase name="${escapeAttribute(`${rule.id} ${rule.title}`)}" classname="${escapeAttribute(classname(file.file))}" time="0">`;
      if (failing.length === 0) {
        cases.push(open.replace(/>$/, "/>"));
        continue;
      }
      failures += 1;
      const body = findings
        .map(
          (f) =>
            `${f.line > 0 ? `${f.file}:${f.line}:${f.column}` : f.file}: ${f.severity}: ${f.message} (fix: ${f.fix})`,
        )
        .join("\n");
      cases.push(
        `${open}\n      <failure message="${escapeAttribute(failing[0]!.message)}" type="${failing[0]!.severity}">${escapeText(body)}</failure>\n    </testcase>`,
      );
    }
    const attributes = [
      `name="${escapeAttribute(file.file)}"`,
      `package="ovfkit.validate"`,
      `id="${index}"`,
      `timestamp="${timestamp}"`,
      `hostname="${escapeAttribute(host)}"`,
      `tests="${applicable.length}"`,
      `failures="${failures}"`,
      `errors="0"`,
      `time="0"`,
    ].join(" ");
    out.push(
      `  <testsuite ${attributes}>`,
      "    <properties/>",
      ...cases,
      "    <system-out/>",
      "    <system-err/>",
      "  </testsuite>",
    );
  });
  out.push("</testsuites>");
  return `${out.join("\n")}\n`;
}

/** The rules that ran on a file: those of its layers, plus the target rules of its profiles. */
function rulesFor(file: FileResult, rules: readonly RuleDefinition[]): RuleDefinition[] {
  const targets = new Set(file.profiles.map((p) => p.replace(/-.*$/, "")));
  const ran = rules.filter((rule) =>
    rule.layer === "profile"
      ? (rule.targets ?? []).some((t) => targets.has(t))
      : file.layers.includes(rule.layer),
  );
  // a finding from a rule outside those (e.g. a package-level one) still gets its testcase
  for (const finding of file.findings) {
    if (!ran.some((r) => r.id === finding.ruleId)) {
      const rule = rules.find((r) => r.id === finding.ruleId);
      if (rule) ran.push(rule);
    }
  }
  return ran;
}

function classname(file: string): string {
  return `ovfkit.validate.${file.replace(/[^A-Za-z0-9_.-]+/g, "_")}`;
}
