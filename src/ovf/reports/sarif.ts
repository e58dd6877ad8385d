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
  const uri = (file: string): string => {
    if (options.baseDir && file.startsWith(`${options.baseDir}/`))
      return encodeURI(file.slice(options.baseDir.length + 1));
    return file.startsWith("/") ? pathToFileURL(file).href : encodeURI(file);
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
            artifactLocation: { uri: uri(finding.file) },
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
