import type { Argv, CommandModule } from "yargs";
import { OvfkitError } from "../errors.js";
import { formatJson, formatJunit, formatSarif, formatText } from "../ovf/reports/index.js";
import { ALL_RULES, hasFailures, validateOvf } from "../ovf/validate.js";
import { packageVersion } from "../util/package-root.js";
import { printJson, runCommand, useColor } from "./common.js";

type ValidateOutput = "text" | "json" | "junit" | "sarif";

interface ValidateArgs {
  paths: string[];
  output: ValidateOutput;
  profile?: string | string[];
  "strict-xsd": boolean;
  schemas?: string;
  "warnings-as-errors": boolean;
  "list-rules": boolean;
  quiet: boolean;
}

/** `ovfkit validate`: layered OVF validation with CI-friendly reports. Exit 0 clean, 1 errors, 2 could not run. */
export const validateCommand: CommandModule<object, ValidateArgs> = {
  command: "validate [paths..]",
  describe: "validate OVF descriptors / OVA packages (layers, target profiles, text/JSON/JUnit/SARIF)",
  builder: (yargs: Argv) =>
    yargs
      .positional("paths", {
        type: "string",
        array: true,
        default: [],
        describe: ".ovf, .ova or folders of them",
      })
      .options({
        output: {
          alias: "o",
          choices: ["text", "json", "junit", "sarif"] as const,
          default: "text" as const,
          describe: "report format on stdout",
        },
        profile: {
          alias: "p",
          type: "string",
          // not `array`: an array option would swallow the paths after it; repeating the flag collects values
          describe:
            "target importer: vsphere[-6.0..8.0u2], virtualbox, aws, azure, ovirt (repeatable, or comma-separated)",
        },
        "strict-xsd": { type: "boolean", default: false, describe: "layer 5: DMTF XSD verdict via xmllint" },
        schemas: { type: "string", describe: "folder of the DMTF OVF schemas (default $OVFKIT_SCHEMAS)" },
        "warnings-as-errors": { type: "boolean", default: false, describe: "warnings make the exit code 1" },
        "list-rules": {
          type: "boolean",
          default: false,
          describe: "print every rule id, layer, severity and what it checks",
        },
        quiet: { alias: "q", type: "boolean", default: false, describe: "text output: hide info findings" },
      })
      .example("$0 validate app.ova", "all tolerant layers")
      .example("$0 validate --profile vsphere-6.7 --profile aws app.ova", "what those importers would refuse")
      .example("$0 validate --output sarif dist/ > ovf.sarif", "annotations for CI") as Argv<ValidateArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        if (args["list-rules"]) {
          if (args.output === "json") printJson(ALL_RULES);
          else {
            const lines = ALL_RULES.map(
              (r) =>
                `${r.id}\t${r.layer === "profile" ? `profile(${(r.targets ?? []).join(",")})` : `layer ${r.layer}`}\t${r.severity}\t${r.title}`,
            );
            process.stdout.write(`${lines.join("\n")}\n`);
          }
          return 0;
        }
        if (args.paths.length === 0) {
          throw new OvfkitError(
            "OVF_NOTHING_TO_VALIDATE",
            "name at least one .ovf, .ova or folder (or --list-rules)",
          );
        }
        const report = await validateOvf(args.paths, {
          strictXsd: args["strict-xsd"],
          schemaDir: args.schemas,
          profiles: ([] as string[])
            .concat(args.profile ?? [])
            .flatMap((p) => p.split(","))
            .filter(Boolean),
        });
        const failed = report.files.some((f) => hasFailures(f, args["warnings-as-errors"]));
        const exitCode = failed ? 1 : 0;
        const version = packageVersion();
        switch (args.output) {
          case "json":
            process.stdout.write(formatJson(report, version, exitCode));
            break;
          case "junit":
            process.stdout.write(
              formatJunit(report, ALL_RULES, { warningsAsErrors: args["warnings-as-errors"] }),
            );
            break;
          case "sarif":
            process.stdout.write(
              formatSarif(report, ALL_RULES, { toolVersion: version, baseDir: process.cwd() }),
            );
            break;
          default:
            process.stdout.write(formatText(report, { color: useColor(), quiet: args.quiet }));
        }
        return exitCode;
      },
      { mode: args.output === "json" ? "json" : "human", errorExitCode: 2 },
    ),
};
