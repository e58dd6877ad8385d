import type { CommandModule } from "yargs";
import { infoCommand } from "./info.js";

/**
 * Every `ovfkit` command: one module each in src/cli/. Add a new command
 * here. The order is the order of `ovfkit --help`.
 */
// biome-ignore lint/suspicious/noExplicitAny: yargs command modules have per-command argument types
export const COMMANDS: CommandModule<object, any>[] = [infoCommand];
