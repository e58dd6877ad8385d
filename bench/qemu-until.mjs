// Runs qemu (argv after the marker) with COM1 on stdout and stops it when
// `marker` appears: exit 0 then, 1 when qemu ends without it or after 300 s.
// The child is reaped before exiting, so `time` counts qemu's CPU time.
import { spawn } from "node:child_process";

const [marker, ...args] = process.argv.slice(2);
const qemu = spawn("qemu-system-i386", args, { stdio: ["ignore", "pipe", "inherit"] });
let output = "";
let found = false;
const timer = setTimeout(() => qemu.kill("SIGKILL"), 300_000);
qemu.stdout.on("data", (chunk) => {
  output += chunk.toString("latin1");
  if (!found && output.includes(marker)) {
    found = true;
    qemu.kill("SIGKILL");
  }
});
qemu.on("exit", () => {
  clearTimeout(timer);
  process.exit(found ? 0 : 1);
});
