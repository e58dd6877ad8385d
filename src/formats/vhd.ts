import type { FormatDriver, ProbeInput } from "./driver.js";
import { openVhd } from "./vhd-chain.js";
import { checkVhd, resizeVhd } from "./vhd-check.js";
import { FOOTER_SIZE, FOOTER_SIZE_OLD_VPC, footerChecksumOk, hasFooterCookie } from "./vhd-format.js";
import { VHD_WRITER_OPTIONS, writeVhd } from "./vhd-write.js";

/**
 * VHD (Virtual PC / Hyper-V, qemu's "vpc"): fixed, dynamic and
 * differencing disks, read and written. Structures live in vhd-format.ts,
 * the reader in vhd-reader.ts, parent chains in vhd-chain.ts, the streaming writer
 * in vhd-write.ts, `check` and `resize` in vhd-check.ts.
 */

/** A footer cookie with a valid checksum is certain; a cookie alone is a damaged VHD (open reports why). */
function scoreFooter(buf: Buffer): number {
  if (!hasFooterCookie(buf)) return 0;
  return footerChecksumOk(buf) ? 100 : 50;
}

/**
 * Fixed disks: footer in the last 512 bytes (or 511 for old Virtual PC);
 * dynamic and differencing disks also carry a copy at offset 0.
 */
export function probeVhd(input: ProbeInput): number {
  const { head, tail } = input;
  let best = 0;
  if (tail.length >= FOOTER_SIZE)
    best = Math.max(best, scoreFooter(tail.subarray(tail.length - FOOTER_SIZE)));
  if (tail.length >= FOOTER_SIZE_OLD_VPC) {
    const old = tail.subarray(tail.length - FOOTER_SIZE_OLD_VPC);
    if (hasFooterCookie(old) && footerChecksumOk(old)) best = 100;
  }
  if (head.length >= FOOTER_SIZE) best = Math.max(best, scoreFooter(head.subarray(0, FOOTER_SIZE)));
  return best;
}

export const vhdDriver: FormatDriver = {
  name: "vpc",
  aliases: ["vhd"],
  description: "VHD (Virtual PC / Hyper-V) fixed, dynamic, differencing",
  probe: probeVhd,
  open: (path, options) => openVhd(path, options),
  write: writeVhd,
  check: checkVhd,
  resize: resizeVhd,
  writerOptions: VHD_WRITER_OPTIONS,
};
