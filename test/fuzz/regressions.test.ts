import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/tmp.js";
import {
  exerciseCli,
  exerciseDescriptor,
  exerciseDisk,
  exercisePackage,
  REGRESSIONS,
  type RegressionMeta,
} from "./harness.js";
import { Rng } from "./mutators.js";

/**
 * Replays every reproducer the fuzzers saved in fixtures/regressions/
 * (one folder per bug: the mutated file gzip-compressed, its unmutated
 * companions, case.json naming the step and the original failure). Each
 * must now pass: every reader path gives a result or a typed error.
 */
const cases = existsSync(REGRESSIONS)
  ? readdirSync(REGRESSIONS).filter((name) => existsSync(join(REGRESSIONS, name, "case.json")))
  : [];

describe("fuzz regressions replay", () => {
  it("the regression folder exists (reproducers are committed there)", () => {
    expect(existsSync(REGRESSIONS)).toBe(true);
  });

  for (const name of cases) {
    const meta = JSON.parse(readFileSync(join(REGRESSIONS, name, "case.json"), "utf8")) as RegressionMeta;
    it(`${name}: ${meta.failures[0]?.step} ${meta.failures[0]?.kind} (${meta.seed})`, async () => {
      const dir = join(tempDir("ovfkit-regression-"), name);
      mkdirSync(dir, { recursive: true });
      for (const file of [meta.target, ...meta.companions]) {
        writeFileSync(join(dir, file), gunzipSync(readFileSync(join(REGRESSIONS, name, `${file}.gz`))));
      }
      const rng = new Rng(meta.caseSeed);
      const path = join(dir, meta.primary);
      const failures =
        meta.kind === "disk"
          ? await exerciseDisk(path, rng, dir)
          : meta.kind === "cli-disk"
            ? await exerciseCli(path)
            : meta.kind === "descriptor"
              ? await exerciseDescriptor(readFileSync(path, "utf8"), rng, meta.primary)
              : await exercisePackage(path);
      expect(failures).toEqual([]);
    });
  }
});
