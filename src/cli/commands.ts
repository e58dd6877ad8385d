import type { CommandModule } from "yargs";
import { bootCommand } from "./boot.js";
import { checkCommand } from "./check.js";
import { compareCommand } from "./compare.js";
import { convertCommand } from "./convert.js";
import { createCommand } from "./create.js";
import { createOvfCommand } from "./create-ovf.js";
import { demoCommand } from "./demo.js";
import { editCommand } from "./edit.js";
import { envCommand } from "./env.js";
import { infoCommand } from "./info.js";
import { manifestCommand } from "./manifest.js";
import { mapCommand } from "./map.js";
import { packCommand } from "./pack.js";
import { resizeCommand } from "./resize.js";
import { signCommand } from "./sign.js";
import { unpackCommand } from "./unpack.js";
import { validateCommand } from "./validate.js";
import { verifyCommand } from "./verify.js";

/**
 * Every `ovfkit` command: one module each in src/cli/. Add a new command
 * here. The order is the order of `ovfkit --help`.
 */
// biome-ignore lint/suspicious/noExplicitAny: yargs command modules have per-command argument types
export const COMMANDS: CommandModule<object, any>[] = [
  infoCommand,
  checkCommand,
  convertCommand,
  compareCommand,
  createCommand,
  resizeCommand,
  mapCommand,
  demoCommand,
  packCommand,
  unpackCommand,
  verifyCommand,
  manifestCommand,
  signCommand,
  envCommand,
  editCommand,
  createOvfCommand,
  validateCommand,
  bootCommand,
];
