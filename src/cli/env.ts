import type { Argv, CommandModule } from "yargs";
import { parsePropertyPairs, writeEnvironment } from "../ovf/env.js";
import { type OutputMode, outputOption, printJson, runCommand } from "./common.js";

interface EnvArgs {
  package: string;
  property?: string[];
  o: string;
  id?: string;
  "allow-unknown": boolean;
  force: boolean;
  output: OutputMode;
}

/** `ovfkit env`: ovf-env.xml (DSP8027) for given property values, on an ISO 9660 CD (transport iso). */
export const envCommand: CommandModule<object, EnvArgs> = {
  command: "env <package>",
  describe: "write the OVF environment (ovf-env.xml) for property values, as an ISO (transport iso) or XML",
  builder: (yargs: Argv) =>
    yargs
      .positional("package", { type: "string", demandOption: true, describe: "APP.ovf or APP.ova" })
      .options({
        property: {
          type: "string",
          array: true,
          describe: "key=value (repeatable); others get their defaults",
        },
        o: {
          alias: "out",
          type: "string",
          demandOption: true,
          describe: "env.iso (ISO 9660 + Joliet) or env.xml",
        },
        id: { type: "string", describe: "oe:id of the environment (default: the VirtualSystem id)" },
        "allow-unknown": {
          type: "boolean",
          default: false,
          describe: "accept keys the descriptor does not declare",
        },
        force: { type: "boolean", default: false, describe: "overwrite the output" },
        ...outputOption,
      })
      .example("$0 env app.ova --property hostname=web1 -o env.iso", "attach env.iso as a CD-ROM to the VM")
      .example("$0 env app.ovf --property user-data=... -o ovf-env.xml", "just the XML") as Argv<EnvArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const environment = await writeEnvironment(
          args.package,
          parsePropertyPairs(args.property ?? []),
          args.o,
          {
            id: args.id,
            allowUnknown: args["allow-unknown"],
            overwrite: args.force,
          },
        );
        if (args.output === "json") printJson({ output: args.o, properties: environment.properties });
        else process.stdout.write(`wrote ${args.o} (${environment.properties.length} properties)\n`);
        return 0;
      },
      { mode: args.output },
    ),
};
