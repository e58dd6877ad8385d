import type { Argv, CommandModule } from "yargs";
import { parseAlgorithm } from "../ovf/manifest.js";
import { signPackage } from "../ovf/pack.js";
import { runCommand } from "./common.js";
import { signOptionsFrom } from "./pack.js";

interface SignArgs {
  package: string;
  key: string;
  cert?: string;
  passphrase?: string;
  algorithm: string;
  o?: string;
  force: boolean;
}

/** `ovfkit sign`: signs an existing package's manifest (writes APP.cert, or rewrites the OVA). */
export const signCommand: CommandModule<object, SignArgs> = {
  command: "sign <package>",
  describe: "sign the manifest of an OVA or OVF folder with an RSA key and certificate",
  builder: (yargs: Argv) =>
    yargs
      .positional("package", { type: "string", demandOption: true, describe: "APP.ova or APP.ovf" })
      .options({
        key: { type: "string", demandOption: true, describe: "PEM private key (RSA)" },
        cert: { type: "string", describe: "PEM certificate (chain); omit when the key file holds it" },
        passphrase: { type: "string", describe: "passphrase of an encrypted private key" },
        algorithm: { type: "string", default: "sha256", describe: "signature digest: sha1, sha256, sha512" },
        o: { alias: "out", type: "string", describe: "write a signed copy here instead of in place" },
        force: { type: "boolean", default: false, describe: "overwrite the -o output" },
      })
      .example(
        "$0 sign app.ova --key key.pem --cert cert.pem",
        "adds app.cert after app.mf",
      ) as Argv<SignArgs>,
  handler: (args) =>
    runCommand(async () => {
      const sign = await signOptionsFrom(
        args.key,
        args.cert,
        args.passphrase,
        parseAlgorithm(args.algorithm),
      );
      const written = await signPackage(args.package, { ...sign!, output: args.o, overwrite: args.force });
      process.stdout.write(`signed: ${written}\n`);
      return 0;
    }),
};
