import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { RuleDefinition, Severity } from "../rules/types.js";
import type { ValidationReport } from "../validate.js";

/**
 * SARIF 2.1.0 (OASIS), what GitHub code scanning and other CI systems turn
 * into pull-request annotations. One run; rules carry their fix hint as
 * `help` and their layer/targets/evidence as properties; each result has a
 * physical location (file, line, column) and a logical one (the XPath).
 */
export const SARIF_SCHEMA_URI =
  "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

const LEVEL: Record<Severity, "error" | "warning" | "note"> = {
  error: "error",
  warning: "warning",
  info: "note",
};

export function formatSarif(
  report: ValidationReport,
  rules: readonly RuleDefinition[],
  options: { toolVersion: string; baseDir?: string },
): string {
  const used = new Set(report.files.flatMap((f) => f.findings.map((x) => x.ruleId)));
  const driverRules = rules.filter((r) => used.has(r.id));
  const indexOf = new Map(driverRules.map((r, i) => [r.id, i]));
  /** Inside baseDir: a relative URI; anywhere else (or "../" paths): an absolute file: URI. */
  const uri = (file: string): string => {
    const absolute = resolve(file);
    if (options.baseDir && absolute.startsWith(`${resolve(options.baseDir)}/`)) {
      return encodeURI(absolute.slice(resolve(options.baseDir).length + 1));
    }
    return pathToFileURL(absolute).href;
  };
  // relative URIs resolve against SRCROOT (the folder ovfkit ran in), as code-scanning uploads expect
  const artifact = (file: string): { uri: string; uriBaseId?: string } => {
    const u = uri(file);
    return options.baseDir && !u.startsWith("file:") ? { uri: u, uriBaseId: "SRCROOT" } : { uri: u };
  };
  const results = report.files.flatMap((file) =>
    file.findings.map((finding) => ({
      ruleId: finding.ruleId,
      ...(indexOf.has(finding.ruleId) ? { ruleIndex: indexOf.get(finding.ruleId)! } : {}),
      level: LEVEL[finding.severity],
      message: { text: `${finding.message}. Fix: ${finding.fix}` },
      locations: [
        {
          physicalLocation: {
            artifactLocation: artifact(finding.file),
            ...(finding.line > 0
              ? { region: { startLine: finding.line, startColumn: Math.max(1, finding.column) } }
              : {}),
          },
          ...(finding.xpath
            ? { logicalLocations: [{ fullyQualifiedName: finding.xpath, kind: "element" }] }
            : {}),
        },
      ],
      properties: {
        layer: finding.layer,
        ...(finding.profile ? { profile: finding.profile } : {}),
        ...(finding.source ? { source: finding.source } : {}),
      },
    })),
  );
  const sarif = {
    $schema: SARIF_SCHEMA_URI,
    version: "2.1.0",
    runs: [
      {
        tool: {
          driver: {
            name: "ovfkit",
            version: options.toolVersion,
            informationUri: "https://github.com/ovfkit/ovfkit",
            rules: driverRules.map((rule) => ({
              id: rule.id,
              shortDescription: { text: rule.title },
              help: { text: rule.fix },
              defaultConfiguration: { level: LEVEL[rule.severity] },
              properties: {
                layer: rule.layer,
                ...(rule.targets ? { targets: [...rule.targets] } : {}),
                ...(rule.source ? { source: rule.source } : {}),
              },
            })),
          },
        },
        ...(options.baseDir
          ? { originalUriBaseIds: { SRCROOT: { uri: pathToFileURL(`${options.baseDir}/`).href } } }
          : {}),
        results,
      },
    ],
  };
  return `${JSON.stringify(sarif, null, 2)}\n`;
}
