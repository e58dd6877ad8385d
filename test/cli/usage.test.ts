import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ovfkit } from "../helpers/cli.js";

const COMMANDS = ["info", "check", "convert", "compare", "create", "resize", "map", "demo"];

describe("ovfkit usage", () => {
  it("--version prints package.json's version", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    const result = ovfkit(["--version"]);
    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toBe(pkg.version);
  });

  it("--help lists every command", () => {
    const result = ovfkit(["--help"]);
    expect(result.status).toBe(0);
    for (const command of COMMANDS) expect(result.stdout).toContain(`ovfkit ${command}`);
  });

  it.each(COMMANDS)("%s --help shows examples", (command) => {
    const result = ovfkit([command, "--help"]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("Examples:");
    expect(result.stdout).toContain(`ovfkit ${command}`);
  });

  it.each([
    [["frobnicate"], "Unknown argument"],
    [[], "name a command"],
    [["convert", "a.raw"], "Not enough non-option arguments"],
    [["convert", "a.raw", "b.raw"], "Missing required argument: O"],
    [["check", "x", "--bogus"], "Unknown argument"],
    [["map", "--output", "xml", "x"], "Invalid values"],
    [["resize", "x.raw"], "resize needs a SIZE"],
  ])("usage error %j exits 2 with a message on stderr", (args, message) => {
    const result = ovfkit(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe("");
  });
});
