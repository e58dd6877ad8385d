import { readFile } from "node:fs/promises";
import type { Argv, CommandModule } from "yargs";
import { asOvfkitError } from "../errors.js";
import type { PackageFinding } from "../ovf/manifest.js";
import { type VerifyReport, verifyPackage } from "../ovf/ova.js";
import { printJson, reportError } from "./common.js";
import { createProgress } from "./progress.js";

interface VerifyArgs {
  package: string;
  ca?: string;
  strict: boolean;
  output: "text" | "human" | "json";
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
          choices: ["text", "human", "json"] as const,
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
      const report = await verifyPackage(args.package, {
        ca,
        strict: args.strict,
        onProgress: (done) => progress.update(done, Math.max(done, 1)),
      });
      progress.stop();
      if (json) printJson(report);
      else process.stdout.write(verifyText(report));
      process.exitCode = report.ok ? VERIFY_EXIT.clean : VERIFY_EXIT.findings;
    } catch (error) {
      progress.stop();
      process.exitCode = reportError(error, json ? "json" : "human", VERIFY_EXIT.couldNotRun);
    }
  },
};
