import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { packageVersion } from "../util/package-root.js";
import { COMMANDS } from "./commands.js";

const cli = yargs(hideBin(process.argv))
  .scriptName("ovfkit")
  .usage("$0 <command> [options]\n\nConvert, validate and boot-test virtual appliances.")
  .command(COMMANDS)
  .demandCommand(1, "name a command (ovfkit --help lists them)")
  .strict()
  .version(packageVersion())
  .help()
  .alias("h", "help")
  .wrap(Math.min(110, process.stdout.columns ?? 110))
  .fail((message, error, y) => {
    // Usage errors exit 2 (as qemu-img's and most CLIs' do); errors thrown by handlers are reported by runCommand.
    if (error) throw error;
    process.stderr.write(`${y.help()}\n\novfkit: ${message}\n`);
    process.exit(2);
  });

await cli.parseAsync();
