// Builds dist/ from src/ with esbuild (fast enough to run before every test
// run) and, unless --no-types is given, the .d.ts files with tsc.
// Dependencies stay external: they are installed next to us by npm.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { build } from "esbuild";

const entryPoints = { index: "src/index.ts", cli: "src/cli/main.ts" };
if (existsSync("bench/run.ts")) entryPoints["bench/run"] = "bench/run.ts";
if (existsSync("bench/cpu.ts")) entryPoints["bench/bench-cpu"] = "bench/cpu.ts";

await build({
  entryPoints,
  outdir: "dist",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
});

// Declarations for library users. A type error must not break `npm install`
// (the JavaScript above is already built); `npm run lint` is where type
// errors fail CI.
if (!process.argv.includes("--no-types")) {
  try {
    execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
      stdio: "inherit",
    });
  } catch {
    console.warn("build: tsc reported type errors; declarations may be incomplete (npm run lint shows them)");
  }
}
