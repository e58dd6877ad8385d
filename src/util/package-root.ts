import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The ovfkit package folder (where package.json and fixtures/ live), found by
 * walking up from this module: the same answer from dist/cli.js, dist/index.js
 * and the TypeScript sources under vitest.
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "ovfkit"
    ) {
      return dir;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error("ovfkit: package.json not found above the running module");
    dir = parent;
  }
}

/** ovfkit's version, from its package.json. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string })
    .version;
}
