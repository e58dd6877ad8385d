import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { CORPUS_OVF, hasCorpus } from "../helpers/corpus.js";

/** Files of ../shared/corpus/ovf whose names match `pattern`, sorted (none when the corpus is missing). */
export function corpusOvfFiles(pattern: RegExp): string[] {
  if (!hasCorpus) return [];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (pattern.test(name)) out.push(path);
    }
  };
  walk(CORPUS_OVF);
  return out.sort();
}
