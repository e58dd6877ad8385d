import { describe, expect, it } from "vitest";
import { checkExitCode, checkFailureExitCode, checkJson } from "../../src/cli/check.js";
import { runDemo } from "../../src/cli/demo.js";
import { mapEntry } from "../../src/cli/map.js";
import { describeWriterOptions, parseWriterOptions, wantsOptionHelp } from "../../src/cli/options.js";
import { targetSize } from "../../src/cli/resize.js";
import { OvfkitError } from "../../src/errors.js";
import { type CheckReport, driverFor } from "../../src/formats/index.js";
import { tempDir } from "../helpers/tmp.js";

describe("-o key=value parsing (qemu-img style)", () => {
  it("splits on commas, merges repeated -o, later keys win", () => {
    expect(parseWriterOptions(["subformat=fixed,block_size=2M", "subformat=dynamic"])).toEqual({
      subformat: "dynamic",
      block_size: "2M",
    });
  });
  it("keeps a doubled comma as a literal comma and a bare key as on", () => {
    expect(parseWriterOptions("parent=a,,b.vhd,force_size")).toEqual({ parent: "a,b.vhd", force_size: "on" });
  });
  it("accepts nothing and ignores empty items", () => {
    expect(parseWriterOptions(undefined)).toEqual({});
    expect(parseWriterOptions("a=1,,")).toEqual({ a: "1," });
    expect(parseWriterOptions("a=1,")).toEqual({ a: "1" });
  });
  it("refuses an item without a key", () => {
    expect(() => parseWriterOptions("=x")).toThrow(expect.objectContaining({ code: "BAD_OPTION" }));
  });
  it("recognises -o help and lists a driver's options", () => {
    expect(wantsOptionHelp(parseWriterOptions("help"))).toBe(true);
    expect(wantsOptionHelp(parseWriterOptions("a=b"))).toBe(false);
    expect(describeWriterOptions(driverFor("raw"))).toBe("raw takes no -o options\n");
  });
});

describe("resize size arithmetic", () => {
  it("reads absolute, +relative and -relative sizes", () => {
    expect(targetSize("10M", 5)).toBe(10 * 1024 * 1024);
    expect(targetSize("+1K", 1024)).toBe(2048);
    expect(targetSize("-1K", 4096)).toBe(3072);
  });
  it("refuses a size below zero and garbage", () => {
    expect(() => targetSize("-2K", 1024)).toThrow(expect.objectContaining({ code: "BAD_SIZE" }));
    expect(() => targetSize("ten", 1024)).toThrow(expect.objectContaining({ code: "BAD_SIZE" }));
  });
});

describe("check exit codes follow qemu-img check", () => {
  const report = (...severities: ("corruption" | "leak" | "warning")[]): CheckReport => ({
    filename: "x",
    format: "raw",
    findings: severities.map((severity) => ({ code: "X", severity, message: "m", file: "x" })),
  });
  it("0 clean (warnings do not count), 2 corruption, 3 leaks only", () => {
    expect(checkExitCode(report())).toBe(0);
    expect(checkExitCode(report("warning"))).toBe(0);
    expect(checkExitCode(report("leak", "corruption"))).toBe(2);
    expect(checkExitCode(report("leak", "warning"))).toBe(3);
  });
  it("63 when the format has no check, 1 when the check could not run", () => {
    expect(checkFailureExitCode(new OvfkitError("UNSUPPORTED_CHECK", "no check"))).toBe(63);
    expect(checkFailureExitCode(new OvfkitError("FILE_NOT_FOUND", "gone"))).toBe(1);
    expect(checkFailureExitCode(new Error("bug"))).toBe(1);
  });

  it("counts findings in qemu-img's ImageCheck fields", () => {
    expect(checkJson(report("leak", "leak", "corruption", "warning"))).toMatchObject({
      corruptions: 1,
      leaks: 2,
      warnings: 1,
      "check-errors": 0,
    });
  });
});

describe("map entries use qemu-img map's fields", () => {
  it("data, zero and unallocated", () => {
    expect(mapEntry({ offset: 0, length: 512, kind: "data" })).toEqual({
      start: 0,
      length: 512,
      data: true,
      zero: false,
      present: true,
    });
    expect(mapEntry({ offset: 512, length: 512, kind: "zero" })).toMatchObject({
      data: false,
      zero: true,
      present: true,
    });
    expect(mapEntry({ offset: 1024, length: 1, kind: "unallocated" })).toMatchObject({
      data: false,
      zero: true,
      present: false,
    });
  });
});

describe("demo step list", () => {
  it("counts a throwing step as failed and keeps going", async () => {
    const lines: string[] = [];
    const summary = await runDemo(
      tempDir(),
      [
        { title: "broken", run: async () => Promise.reject(new Error("boom")) },
        { title: "fine", run: async (ctx) => ctx.record("ok", "fine step") },
      ],
      (line) => lines.push(line),
    );
    expect(summary).toEqual({ ok: 1, skipped: 0, failed: 1 });
    expect(lines).toContain("FAIL  broken: boom");
    expect(lines.at(-1)).toBe("demo: 1 ok, 1 failed, 0 skipped");
  });
});
