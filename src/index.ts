/**
 * ovfkit as a library: everything the CLI does is callable from here with
 * typed results.
 */

export type { ErrorLocation } from "./errors.js";
export { isOvfkitError, OvfkitError } from "./errors.js";
export * from "./formats/index.js";
export * from "./ovf/appliance.js";
export * from "./ovf/index.js";
export { type BootResult, type BootTestOptions, type BootVerdict, bootTest } from "./runtime/index.js";
export { formatSize, parseSize } from "./util/size.js";
