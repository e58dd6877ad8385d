import type { CommandModule } from "yargs";
import { checkCommand } from "./check.js";
import { compareCommand } from "./compare.js";
import { convertCommand } from "./convert.js";
import { createCommand } from "./create.js";
import { demoCommand } from "./demo.js";
import { infoCommand } from "./info.js";
import { mapCommand } from "./map.js";
import { resizeCommand } from "./resize.js";

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
];
