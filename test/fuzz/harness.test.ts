import { describe, expect, it } from "vitest";
import { asOvfkitError, OvfkitError } from "../../src/errors.js";
import { buildTar, classify, documentedCodes, guard, withWatchdog } from "./harness.js";
import {
  DirtySet,
  type MutationTarget,
  mutateBinary,
  mutateXml,
  Rng,
  tarLayout,
  vhdLayout,
} from "./mutators.js";

/** The fuzz harness itself: it must catch what it claims to catch, and replay exactly. */
describe("fuzz harness", () => {
  it("a documented OvfkitError passes; another type, an undocumented code and a hang fail", async () => {
    expect(documentedCodes().has("TRUNCATED")).toBe(true);
    expect(classify("s", new OvfkitError("TRUNCATED", "x"))).toBeUndefined();
    expect(classify("s", new TypeError("x"))).toMatchObject({ kind: "exception", step: "s" });
    expect(classify("s", new RangeError("x"))).toMatchObject({ kind: "exception" });
    expect(classify("s", "a string")).toMatchObject({ kind: "exception" });
    expect(classify("s", new OvfkitError("NO_SUCH_CODE_EVER", "x"))).toMatchObject({
      kind: "undocumented-code",
    });
    // a TypeError wrapped by asOvfkitError into IO_ERROR is still a bug; a real EIO is not
    expect(classify("s", asOvfkitError(new TypeError("x.y is undefined")))).toMatchObject({
      kind: "exception",
    });
    const eio = Object.assign(new Error("EIO: i/o error, read"), { code: "EIO", errno: -5, syscall: "read" });
    expect(classify("s", asOvfkitError(eio))).toBeUndefined();
    await expect(withWatchdog(() => new Promise(() => undefined), 20)).rejects.toThrow(
      /no result after 20 ms/,
    );
    expect(await guard("hang", () => withWatchdog(() => new Promise(() => undefined), 20))).toMatchObject({
      kind: "timeout",
    });
  });

  it("the same seed gives the same mutation (cases replay from their seed)", () => {
    const seed = Buffer.alloc(4096, 7);
    seed.write("conectix", seed.length - 512, "latin1");
    const run = (caseSeed: number) => {
      const t: MutationTarget = {
        buf: Buffer.from(seed),
        pristine: seed,
        layout: vhdLayout(seed),
        dirty: new DirtySet(),
      };
      const applied = mutateBinary(new Rng(caseSeed), t);
      return { applied, bytes: t.buf.toString("hex"), truncate: t.truncateTo };
    };
    expect(run(12345)).toEqual(run(12345));
    expect(run(12345)).not.toEqual(run(54321));
    const xml = '<a x="1"><b y="2"/></a>';
    expect(mutateXml(new Rng(9), xml)).toEqual(mutateXml(new Rng(9), xml));
  });

  it("tar fix-up recomputes header checksums that GNU tar's rule accepts", () => {
    const tar = buildTar([{ name: "a.ovf", data: Buffer.from("hello") }]);
    const t = { buf: Buffer.from(tar), pristine: tar, layout: tarLayout(tar), dirty: new DirtySet() };
    t.buf.write("b", 0, "latin1");
    t.layout.fixup?.(t.buf, t.dirty);
    const stored = Number.parseInt(t.buf.subarray(148, 154).toString("latin1"), 8);
    t.buf.fill(0x20, 148, 156); // the rule: the sum of the header with the checksum field as spaces
    expect(stored).toBe(t.buf.subarray(0, 512).reduce((a, b) => a + b, 0));
  });
});
