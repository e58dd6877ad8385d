import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type BenchCase,
  type BenchContext,
  type BenchSuite,
  type CaseResult,
  measureTool,
} from "./harness.js";

/**
 * OVF validation throughput: `ovfkit validate` (layers 1-4: well-formedness,
 * structure, references with file sizes, semantics; no XSD) over every
 * DMTF 1.x descriptor of ../shared/corpus/ovf in ONE process, against
 * `xmllint --noout --nonet --schema dsp8023_1.1.1.xsd` over the same files
 * in one run. Both exit non-zero when a file fails, which is expected on
 * this corpus: each runs under `sh -c '...; exit 0'` so the harness times
 * the work, not the verdict. Goal: at least as fast as xmllint.
 */

function corpusFiles(ctx: BenchContext): { files: string[]; schema: string } | undefined {
  const corpus = join(ctx.root, "../shared/corpus");
  const tsv = join(corpus, "ovf/VALIDATION-xmllint.tsv");
  if (!existsSync(tsv)) return undefined;
  const files = readFileSync(tsv, "utf8")
    .trim()
    .split("\n")
    .slice(1)
    .map((line) => line.split("\t"))
    .filter((row) => row[1] === "dmtf-1.x")
    .map((row) => join(corpus, "ovf", row[0]!));
  return { files, schema: join(corpus, "schemas/dmtf-ovf-1.1.1/dsp8023_1.1.1.xsd") };
}

/**
 * `sh -c 'xargs -0 -a LIST CMD >/dev/null 2>&1; exit 0'`: one run over every file (the list is
 * NUL-separated, so names with spaces stay intact; 495 names fit one command line).
 */
function ignoringVerdict(command: readonly string[], list: string): string[] {
  const quoted = command.map((part) => `'${part.replace(/'/g, `'\\''`)}'`).join(" ");
  return ["sh", "-c", `xargs -0 -a '${list}' ${quoted} >/dev/null 2>&1; exit 0`];
}

const validateCorpus: BenchCase = {
  name: "ovf-validate-corpus",
  description: "validate every DMTF 1.x corpus descriptor in one process (layers 1-4) vs xmllint --schema",
  skipReason: (ctx) =>
    !corpusFiles(ctx)
      ? "../shared/corpus/ovf not found"
      : ctx.hasTool("xmllint")
        ? undefined
        : "xmllint not installed (libxml2-utils)",
  async run(ctx): Promise<CaseResult> {
    const { files, schema } = corpusFiles(ctx)!;
    const bytes = files.reduce((sum, f) => sum + readFileSync(f).length, 0);
    mkdirSync(ctx.work, { recursive: true });
    const list = join(ctx.work, "ovf-corpus.list");
    writeFileSync(list, `${files.join("\0")}\0`);
    const tools = [
      await measureTool(
        ctx,
        "ovfkit",
        ignoringVerdict([...ctx.ovfkit, "validate", "--output", "json"], list),
      ),
      await measureTool(
        ctx,
        "xmllint",
        ignoringVerdict(["xmllint", "--noout", "--nonet", "--schema", schema], list),
      ),
    ];
    const [ours, theirs] = tools as [(typeof tools)[0], (typeof tools)[0]];
    const rate = (seconds: number) => `${(files.length / seconds).toFixed(0)} descriptors/s`;
    return {
      name: validateCorpus.name,
      description: validateCorpus.description,
      tools,
      notes: [
        `${files.length} descriptors, ${(bytes / 2 ** 20).toFixed(1)} MiB of XML`,
        `ovfkit ${rate(ours.wallSeconds)} (all tolerant layers, node start-up included), xmllint ${rate(theirs.wallSeconds)} (XSD only)`,
        `ratio ovfkit/xmllint throughput: ${(theirs.wallSeconds / ours.wallSeconds).toFixed(2)}× (goal ≥ 1.00×)`,
      ],
    };
  },
};

export const ovfSuite: BenchSuite = { name: "ovf", cases: [validateCorpus] };
