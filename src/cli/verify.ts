import { readFile, stat } from "node:fs/promises";
import type { Argv, CommandModule } from "yargs";
import { asOvfkitError } from "../errors.js";
import type { PackageFinding } from "../ovf/manifest.js";
import { type VerifyReport, verifyPackage } from "../ovf/ova.js";
import { formatJunit, formatSarif } from "../ovf/reports/index.js";
import type { Finding, RuleDefinition } from "../ovf/rules/types.js";
import type { ValidationReport } from "../ovf/validate.js";
import { packageVersion } from "../util/package-root.js";
import { printJson, reportError } from "./common.js";
import { createProgress } from "./progress.js";

interface VerifyArgs {
  package: string;
  ca?: string;
  strict: boolean;
  output: "text" | "human" | "json" | "junit" | "sarif";
  p?: boolean;
}

/** Exit codes: 0 clean, 1 findings (errors; warnings too with --strict), 2 could not run. */
export const VERIFY_EXIT = { clean: 0, findings: 1, couldNotRun: 2 } as const;

function where(f: PackageFinding): string {
  if (f.line !== undefined) return ` (${f.file ?? ""}:${f.line}${f.column ? `:${f.column}` : ""})`;
  if (f.offset !== undefined) return ` (${f.file ?? ""} at offset ${f.offset})`;
  return f.file ? ` (${f.file})` : "";
}

export function verifyText(report: VerifyReport): string {
  const lines = [`package: ${report.package} (${report.kind})`];
  if (report.descriptor) lines.push(`descriptor: ${report.descriptor}`);
  lines.push(`manifest: ${report.manifest ?? "none"}`, `certificate: ${report.certificate ?? "none"}`);
  if (report.certificateInfo?.subject) {
    const c = report.certificateInfo;
    lines.push(`signer: ${(c.subject ?? "").replace(/\n/g, ", ")} (valid ${c.validFrom} – ${c.validTo})`);
  }
  lines.push(`members: ${report.members.length}, ${report.bytesHashed} bytes hashed`);
  for (const f of report.findings)
    lines.push(`${f.severity.toUpperCase()}: ${f.code}: ${f.message}${where(f)}`);
  lines.push(report.ok ? "verdict: OK" : "verdict: FAILED");
  return `${lines.join("\n")}\n`;
}

/** One-line fix hints by finding-code prefix (most specific first). */
const FIX_HINTS: [RegExp, string][] = [
  [
    /^MANIFEST_DIGEST_MISMATCH$/,
    "if the change was intended, re-make the manifest: ovfkit manifest update APP.ovf",
  ],
  [
    /^MANIFEST_/,
    "rewrite the manifest with ovfkit manifest update (exact ALG(file)= hex lines, every file listed once)",
  ],
  [
    /^CERT_(SELF_SIGNED|CHAIN_NOT_CHECKED)$/,
    "pass --ca with the CA bundle that should have issued the signer",
  ],
  [/^CERT_/, "re-sign the manifest: ovfkit sign APP --key KEY.pem --cert CERT.pem"],
  [/^OVF_FILE_SIZE/, "set ovf:size to the file's byte size (ovfkit edit rewrites it)"],
  [/^OVF_FILE_/, "add the file to the package or remove its File element"],
  [/^OVF_HREF_/, "use a plain file name inside the package as ovf:href"],
  [/^OVA_/, "re-pack the folder: ovfkit pack APP.ovf -o APP.ova"],
];

function fixFor(code: string): string {
  return FIX_HINTS.find(([pattern]) => pattern.test(code))?.[1] ?? "see the message";
}

/**
 * The verify report in the validator's report shape, so JUnit and SARIF
 * come from the same writers `validate` uses (each finding code is its rule id).
 */
export function asValidationReport(report: VerifyReport): {
  report: ValidationReport;
  rules: RuleDefinition[];
} {
  const findings: Finding[] = report.findings.map((f) => ({
    ruleId: f.code,
    severity: f.severity,
    message: f.message,
    fix: fixFor(f.code),
    file: f.file ?? report.package,
    line: f.line ?? 0,
    column: f.column ?? 0,
    xpath: "",
    layer: 3,
  }));
  const rules = [...new Map(findings.map((f) => [f.ruleId, f])).values()].map(
    (f): RuleDefinition => ({
      id: f.ruleId,
      layer: 3,
      severity: f.severity,
      title: f.ruleId,
      fix: fixFor(f.ruleId),
    }),
  );
  const counts = { error: 0, warning: 0, info: 0 };
  for (const f of findings) counts[f.severity]++;
  return {
    report: {
      files: [
        { file: report.package, kind: report.kind, dialect: undefined, findings, layers: [], profiles: [] },
      ],
      counts,
    },
    rules,
  };
}

/** `ovfkit verify`: manifest, certificate, References and tar layout in one streaming pass. */
export const verifyCommand: CommandModule<object, VerifyArgs> = {
  command: "verify <package>",
  describe: "verify an OVA/OVF package: manifest digests, certificate, file sizes, tar layout (one pass)",
  builder: (yargs: Argv) =>
    yargs
      .positional("package", { type: "string", demandOption: true, describe: "APP.ova or APP.ovf" })
      .options({
        ca: { type: "string", describe: "PEM bundle of trusted CAs the signer must chain to" },
        strict: {
          type: "boolean",
          default: false,
          describe: "warnings fail too; manifest spacing variants are errors",
        },
        output: {
          choices: ["text", "human", "json", "junit", "sarif"] as const,
          default: "text" as const,
          describe: "report format",
        },
        p: { alias: "progress", type: "boolean", describe: "progress bar on stderr" },
      })
      .example("$0 verify app.ova", "check everything, exit 0/1/2")
      .example(
        "$0 verify --ca corp-ca.pem --output json app.ova",
        "require a trusted signer, JSON report",
      ) as Argv<VerifyArgs>,
  handler: async (args) => {
    const json = args.output === "json";
    const progress = createProgress("verify", { forced: args.p });
    try {
      const ca = args.ca
        ? await readFile(args.ca, "utf8").catch((e: unknown) => Promise.reject(asOvfkitError(e, args.ca)))
        : undefined;
      const packageSize = await stat(args.package).then(
        (info) => (info.isFile() ? info.size : 0),
        () => 0,
      );
      const report = await verifyPackage(args.package, {
        ca,
        strict: args.strict,
        // An OVA's bytes are nearly all hashed: its size is the bar's total (a folder's is unknown up front).
        onProgress: (done) => progress.update(done, Math.max(done, packageSize)),
      });
      if (packageSize > 0) progress.update(packageSize, packageSize);
      progress.stop();
      if (json) printJson(report);
      else if (args.output === "junit" || args.output === "sarif") {
        const { report: shaped, rules } = asValidationReport(report);
        process.stdout.write(
          args.output === "junit"
            ? formatJunit(shaped, rules, { warningsAsErrors: args.strict })
            : formatSarif(shaped, rules, { toolVersion: packageVersion(), baseDir: process.cwd() }),
        );
      } else process.stdout.write(verifyText(report));
      process.exitCode = report.ok ? VERIFY_EXIT.clean : VERIFY_EXIT.findings;
    } catch (error) {
      progress.stop();
      process.exitCode = reportError(error, json ? "json" : "human", VERIFY_EXIT.couldNotRun);
    }
  },
};
