import { spawnSync } from "node:child_process";

/**
 * Peers the interop tests compare against (qemu-img, xmllint, ...). A test
 * that needs one skips with a printed reason when it is missing; .ci/run
 * installs them, so CI never skips.
 */
export function hasTool(name: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).status === 0;
}

export function skipReason(tool: string): string {
  const reason = hasTool(tool) ? "" : `${tool} not installed (apt-get install ${debianPackageOf(tool)})`;
  if (reason) console.warn(`[skip] ${reason}`);
  return reason;
}

function debianPackageOf(tool: string): string {
  const packages: Record<string, string> = {
    "qemu-img": "qemu-utils",
    xmllint: "libxml2-utils",
    "qemu-system-i386": "qemu-system-x86",
    "qemu-system-x86_64": "qemu-system-x86",
    nasm: "nasm",
    openssl: "openssl",
  };
  return packages[tool] ?? tool;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function run(
  command: string,
  args: string[],
  options: { cwd?: string; input?: string } = {},
): RunResult {
  const result = spawnSync(command, args, {
    encoding: "utf8",
    cwd: options.cwd,
    input: options.input,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: result.status ?? -1, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}
