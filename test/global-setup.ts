import { execFileSync } from "node:child_process";

/** Builds dist/ (esbuild only, about a second) so CLI tests run the current source. */
export default function setup(): void {
  execFileSync(process.execPath, ["scripts/build.mjs", "--no-types"], { stdio: "inherit" });
}
