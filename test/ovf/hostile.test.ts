import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isOvfkitError } from "../../src/errors.js";
import { parseOvf } from "../../src/ovf/parse.js";
import { validateDescriptor } from "../../src/ovf/validate.js";

const BASE = readFileSync(
  join(resolve(import.meta.dirname, "../../fixtures/ovf/negative"), "base.ovf"),
  "utf8",
);

/** Bad input must give an OvfkitError (parse) or findings (validate), never a TypeError/RangeError. */
describe("hostile descriptors", () => {
  it("random mutations of a real descriptor: typed errors or findings only", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: BASE.length - 1 }),
        fc.integer({ min: 0, max: 40 }),
        fc.string({ maxLength: 12 }),
        async (at, cut, insert) => {
          const text = BASE.slice(0, at) + insert + BASE.slice(at + cut);
          try {
            parseOvf(text);
          } catch (error) {
            expect(isOvfkitError(error), String(error)).toBe(true);
          }
          const result = await validateDescriptor(text, {
            profiles: ["vsphere", "aws", "azure", "ovirt", "virtualbox"],
          });
          for (const f of result.findings) expect(f.ruleId).toMatch(/^OVF-[A-Z]+-\d{3}$/);
        },
      ),
      { numRuns: 150, seed: 20261125 },
    );
  });

  it("random bytes: typed errors only", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          parseOvf(bytes);
        } catch (error) {
          expect(isOvfkitError(error), String(error)).toBe(true);
        }
      }),
      { numRuns: 300, seed: 7 },
    );
  });

  it("a billion-laughs document is refused before any expansion", () => {
    const lol = `<?xml version="1.0"?><!DOCTYPE l [${Array.from({ length: 10 }, (_, i) => `<!ENTITY l${i + 1} "${`&l${i};`.repeat(10)}">`).join("")}<!ENTITY l0 "lol">]><Envelope>&l10;</Envelope>`;
    expect(() => parseOvf(lol)).toThrow(expect.objectContaining({ code: "OVF_XML_DTD_FORBIDDEN", line: 1 }));
  });
});
