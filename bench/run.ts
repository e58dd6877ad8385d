import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bootSuite } from "./boot.js";
import { diskSuite } from "./disk.js";
import {
  type BenchCase,
  type BenchContext,
  type BenchSuite,
  type CaseResult,
  hasTool,
  machineDescription,
  packageRoot,
  resultTable,
} from "./harness.js";
import { ovaSuite } from "./ova.js";
import { ovfSuite } from "./ovf.js";
import { vhdxSuite } from "./vhdx.js";
import { vmdkSuite } from "./vmdk.js";

/**
 * `npm run bench [-- --only NAME[,NAME...]] [--repeat N]`: every benchmark
 * suite, ovfkit against its peers in the same run. To add a suite: write
 * bench/<area>.ts exporting a `BenchSuite`, import it here and add it to SUITES.
 */
const SUITES: BenchSuite[] = [diskSuite, vmdkSuite, vhdxSuite, ovaSuite, ovfSuite, bootSuite];

const { values } = parseArgs({
  options: {
    only: { type: "string", multiple: true },
    repeat: { type: "string", default: "3" },
    list: { type: "boolean", default: false },
  },
});

const root = packageRoot();
const ctx: BenchContext = {
  root,
  work: join(root, ".tmp/bench"),
  repeat: Math.max(1, Number(values.repeat)),
  ovfkit: [process.execPath, join(root, "bin/ovfkit")],
  hasTool,
  log: (line) => process.stderr.write(`${line}\n`),
};

const only = (values.only ?? []).flatMap((v) => v.split(",")).filter(Boolean);
/** `--only` names a suite (all its cases) or a case. */
function selected(suite: BenchSuite, bench: BenchCase): boolean {
  return only.length === 0 || only.includes(suite.name) || only.includes(bench.name);
}

if (values.list) {
  for (const suite of SUITES)
    for (const c of suite.cases) console.log(`${suite.name}/${c.name}: ${c.description}`);
  process.exit(0);
}

mkdirSync(ctx.work, { recursive: true });
const results: CaseResult[] = [];
let failed = false;
for (const suite of SUITES) {
  for (const bench of suite.cases) {
    if (!selected(suite, bench)) continue;
    const skipped = bench.skipReason?.(ctx);
    if (skipped) {
      ctx.log(`[skip] ${bench.name}: ${skipped}`);
      results.push({ name: bench.name, description: bench.description, tools: [], notes: [], skipped });
      continue;
    }
    ctx.log(`[run] ${bench.name}: ${bench.description}`);
    try {
      results.push(await bench.run(ctx));
    } catch (error) {
      failed = true;
      const message = error instanceof Error ? error.message : String(error);
      ctx.log(`[fail] ${bench.name}: ${message}`);
      results.push({
        name: bench.name,
        description: bench.description,
        tools: [],
        notes: [],
        skipped: `FAILED: ${message}`,
      });
    }
  }
}

if (results.length === 0) {
  ctx.log(`no benchmark matches --only ${only.join(",")} (npm run bench -- --list shows them)`);
  process.exitCode = 2;
} else {
  console.log(
    machineDescription()
      .map((line) => `- ${line}`)
      .join("\n"),
  );
  console.log(`- runs per tool: ${ctx.repeat} (median wall and CPU time, highest peak RSS)\n`);
  console.log(resultTable(results));
  console.log("");
  for (const r of results) {
    console.log(`- ${r.name}: ${r.description}`);
    for (const t of r.tools) console.log(`  - ${t.tool}: \`${t.command}\``);
    for (const note of r.notes) console.log(`  - ${note}`);
  }
  if (failed) process.exitCode = 1;
}
