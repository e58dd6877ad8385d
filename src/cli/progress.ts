import { SingleBar } from "cli-progress";

/**
 * A progress bar on stderr, never on stdout (stdout carries data and JSON).
 * Shown when stderr is a terminal; `-p` forces it even when stderr is not
 * one (qemu-img's `-p`), in which case cli-progress redraws it as plain
 * lines every second instead of in place.
 */
export interface Progress {
  /** Reports `done` of `total` bytes processed. */
  update(done: number, total: number): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { update() {}, stop() {} };

export function shouldShowProgress(forced: boolean | undefined, stream = process.stderr): boolean {
  return Boolean(forced) || Boolean(stream.isTTY);
}

export function createProgress(label: string, options: { forced?: boolean } = {}): Progress {
  if (!shouldShowProgress(options.forced)) return NO_PROGRESS;
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB | ETA {eta_formatted}`,
    barCompleteChar: "#",
    barIncompleteChar: "-",
    hideCursor: false,
    noTTYOutput: Boolean(options.forced),
    notTTYSchedule: 1000,
    etaBuffer: 50,
  });
  let started = false;
  return {
    update(done, total) {
      const payload = { doneMiB: toMiB(done), totalMiB: toMiB(total) };
      if (!started) {
        bar.start(total, done, payload);
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(done, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

function toMiB(bytes: number): string {
  return (bytes / 1024 ** 2).toFixed(1);
}
