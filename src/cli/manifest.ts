import type { Argv, CommandModule } from "yargs";
import { parseAlgorithm } from "../ovf/manifest.js";
import { writeManifest } from "../ovf/pack.js";
import { type OutputMode, outputOption, printJson, runCommand } from "./common.js";
import { signOptionsFrom } from "./pack.js";

interface ManifestArgs {
  action: "create" | "update";
  descriptor: string;
  algorithm?: string;
  sign?: string;
  cert?: string;
  passphrase?: string;
  output: OutputMode;
}

/** `ovfkit manifest create|update`: (re)writes APP.mf beside an OVF descriptor. */
export const manifestCommand: CommandModule<object, ManifestArgs> = {
  command: "manifest <action> <descriptor>",
  describe: "create or update the manifest (.mf) of an OVF folder",
  builder: (yargs: Argv) =>
    yargs
      .positional("action", { choices: ["create", "update"] as const, demandOption: true })
      .positional("descriptor", { type: "string", demandOption: true, describe: "APP.ovf" })
      .options({
        algorithm: {
          type: "string",
          describe: "sha1, sha256 or sha512 (create: sha256; update: keep each line's)",
        },
        sign: { type: "string", describe: "re-sign with this PEM private key" },
        cert: { type: "string", describe: "PEM certificate of the signing key" },
        passphrase: { type: "string", describe: "passphrase of an encrypted private key" },
        ...outputOption,
      })
      .example("$0 manifest create app.ovf --algorithm sha1", "SHA1 manifest for old vSphere")
      .example("$0 manifest update app.ovf", "after editing the descriptor") as Argv<ManifestArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const algorithm = args.algorithm ? parseAlgorithm(args.algorithm) : undefined;
        const sign = await signOptionsFrom(args.sign, args.cert, args.passphrase, algorithm);
        const result = await writeManifest(args.descriptor, args.action, { algorithm, sign });
        if (args.output === "json") {
          printJson(result);
        } else {
          process.stdout.write(`wrote ${result.manifest} (${result.entries.length} files)\n`);
          if (result.certificate) process.stdout.write(`signed: ${result.certificate}\n`);
        }
        if (result.certificateInvalidated) {
          process.stderr.write(
            "ovfkit: warning: the package's .cert no longer matches the manifest; re-sign with --sign KEY --cert CERT\n",
          );
        }
        return 0;
      },
      { mode: args.output },
    ),
};
