import { OvfkitError } from "../errors.js";
import type { FormatDriver, WriterOptions } from "../formats/index.js";

/**
 * Parses qemu-img style format options: `-o key=value,key2=value2`, given
 * once or several times (later keys win). As in qemu-img, a doubled comma
 * `,,` is a literal comma inside a value. A bare `key` means `key=on`.
 */
export function parseWriterOptions(specs: string | readonly string[] | undefined): WriterOptions {
  const options: WriterOptions = {};
  const list = specs === undefined ? [] : typeof specs === "string" ? [specs] : specs;
  for (const spec of list) {
    for (const item of splitOnSingleCommas(spec)) {
      if (item === "") continue;
      const eq = item.indexOf("=");
      const key = (eq < 0 ? item : item.slice(0, eq)).trim();
      const value = eq < 0 ? "on" : item.slice(eq + 1);
      if (key === "") {
        throw new OvfkitError("BAD_OPTION", `option "${item}" has no key (expected key=value)`);
      }
      options[key] = value;
    }
  }
  return options;
}

/** Splits on `,` but keeps `,,` as a literal comma (qemu's QemuOpts escaping). */
function splitOnSingleCommas(spec: string): string[] {
  const items: string[] = [];
  let current = "";
  for (let i = 0; i < spec.length; i++) {
    const ch = spec[i];
    if (ch === "," && spec[i + 1] === ",") {
      current += ",";
      i++;
    } else if (ch === ",") {
      items.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  items.push(current);
  return items;
}

/** True when the user asked for the option list (`-o help`, as in qemu-img). */
export function wantsOptionHelp(options: WriterOptions): boolean {
  return "help" in options || "?" in options;
}

/** The `-o help` text of a driver: one line per option key it accepts. */
export function describeWriterOptions(driver: FormatDriver): string {
  const entries = Object.entries(driver.writerOptions ?? {});
  if (entries.length === 0) return `${driver.name} takes no -o options\n`;
  const width = Math.max(...entries.map(([key]) => key.length));
  const lines = entries.map(([key, help]) => `  ${key.padEnd(width)}  ${help}`);
  return `Supported ${driver.name} options:\n${lines.join("\n")}\n`;
}
