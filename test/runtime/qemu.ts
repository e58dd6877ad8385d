import { spawn } from "node:child_process";

/**
 * Boots a disk image in qemu-system-i386 (SeaBIOS, TCG) with COM1 on
 * stdout and returns what it printed, once `until` appears, qemu exits
 * (-no-reboot turns a guest reset into an exit) or `timeoutMs` passes.
 */
export function qemuSerial(
  image: string,
  options: { format?: string; until?: string; timeoutMs?: number; memoryMiB?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "qemu-system-i386",
      [
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-m",
        String(options.memoryMiB ?? 64),
        "-drive",
        `file=${image},format=${options.format ?? "raw"},if=ide,snapshot=on`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    let stderr = "";
    const finish = () => {
      clearTimeout(timer);
      if (child.exitCode === null) child.kill("SIGKILL");
      resolve(output);
    };
    const timer = setTimeout(finish, options.timeoutMs ?? 30_000);
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("latin1");
      if (options.until && output.includes(options.until)) finish();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    // "close", not "exit": it fires after stdout has been read to the end.
    child.on("close", (code) => {
      if (code !== 0 && code !== null && output === "")
        reject(new Error(`qemu exited with ${code}: ${stderr}`));
      else finish();
    });
  });
}

/** The PASS/FAIL/DONE report lines of a fixture program's console output. */
export function reportLines(console: string): string[] {
  return console
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => /^(PASS|FAIL) |^DONE$/.test(line));
}
