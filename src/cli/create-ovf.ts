import type { Argv, CommandModule } from "yargs";
import { OvfkitError } from "../errors.js";
import { CONVERT_TARGETS, type ConvertTarget, createOvf } from "../ovf/target-convert.js";
import { parseSize } from "../util/size.js";
import { type OutputMode, outputOption, printJson, runCommand } from "./common.js";
import { createProgress } from "./progress.js";

interface CreateOvfArgs {
  disks: string[];
  o: string;
  name?: string;
  cpus: number;
  memory: string;
  network?: string;
  "os-type"?: string;
  target: ConvertTarget;
  force: boolean;
  p?: boolean;
  output: OutputMode;
}

/** `ovfkit create-ovf`: disk images → an appliance (descriptor, converted disks, manifest) in one command. */
export const createOvfCommand: CommandModule<object, CreateOvfArgs> = {
  command: "create-ovf <disks..>",
  describe: "make an appliance (.ova or .ovf folder) from disk images (raw, qcow2, VHD, VMDK, VHDX)",
  builder: (yargs: Argv) =>
    yargs
      .positional("disks", {
        type: "string",
        array: true,
        demandOption: true,
        describe: "disk images, boot disk first",
      })
      .options({
        o: { alias: "out", type: "string", demandOption: true, describe: "APP.ova or APP.ovf" },
        name: { type: "string", describe: "VM name (default: the output's name)" },
        cpus: { type: "number", default: 1, describe: "virtual CPUs" },
        memory: { type: "string", default: "1024", describe: "memory (MiB, or 2G)" },
        network: { type: "string", describe: 'network for the NIC (default "VM Network")' },
        "os-type": { type: "string", describe: "vmw:osType (default otherLinux64Guest)" },
        target: {
          choices: CONVERT_TARGETS,
          default: "vsphere" as ConvertTarget,
          describe: "importer to build for",
        },
        force: { type: "boolean", default: false, describe: "overwrite the output" },
        p: { alias: "progress", type: "boolean", describe: "progress bar on stderr" },
        ...outputOption,
      })
      .example("$0 create-ovf disk.qcow2 -o app.ova --cpus 2 --memory 2G", "a vSphere-ready OVA from a qcow2")
      .example(
        "$0 create-ovf root.raw data.raw -o app.ova --target azure",
        "fixed VHDs for Azure",
      ) as Argv<CreateOvfArgs>,
  handler: (args) =>
    runCommand(
      async () => {
        const bytes = /^\d+$/.test(args.memory) ? Number(args.memory) * 2 ** 20 : parseSize(args.memory);
        if (bytes <= 0 || bytes % 2 ** 20 !== 0) {
          throw new OvfkitError("BAD_ARGUMENT", `--memory ${args.memory}: not a whole number of MiB`);
        }
        const progress = createProgress("create-ovf", { forced: args.p });
        try {
          const result = await createOvf(args.disks, args.o, {
            name: args.name ?? args.o.replace(/^.*[/\\]/, "").replace(/\.[^.]*$/, ""),
            cpus: args.cpus,
            memoryMiB: bytes / 2 ** 20,
            network: args.network,
            osType: args["os-type"],
            target: args.target,
            overwrite: args.force,
            onProgress: (done, total) => progress.update(done, total),
          });
          progress.stop();
          if (args.output === "json") printJson(result);
          else process.stdout.write(`wrote ${result.output} (${result.disks.map((d) => d.to).join(", ")})\n`);
        } finally {
          progress.stop();
        }
        return 0;
      },
      { mode: args.output },
    ),
};
