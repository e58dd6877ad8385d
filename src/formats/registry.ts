import { OvfkitError } from "../errors.js";
import type { DiskFormat } from "./disk.js";
import type { FormatDriver } from "./driver.js";
import { qcow2Driver } from "./qcow2.js";
import { rawDriver } from "./raw.js";
import { vhdDriver } from "./vhd.js";
import { vhdxDriver } from "./vhdx.js";
import { vmdkDriver } from "./vmdk.js";

/** Every format ovfkit knows, in the order `--help` lists them. */
export const DRIVERS: readonly FormatDriver[] = [rawDriver, vhdDriver, vhdxDriver, vmdkDriver, qcow2Driver];

/** Looks a driver up by qemu-img's name or an alias (`vhd` = `vpc`). */
export function driverFor(name: string): FormatDriver {
  const wanted = name.toLowerCase();
  const driver = DRIVERS.find((d) => d.name === wanted || d.aliases?.includes(wanted));
  if (!driver) {
    const known = DRIVERS.map((d) => [d.name, ...(d.aliases ?? [])].join("/")).join(", ");
    throw new OvfkitError("UNSUPPORTED_FORMAT", `unknown format "${name}" (known: ${known})`);
  }
  return driver;
}

export function formatNames(): DiskFormat[] {
  return DRIVERS.map((d) => d.name);
}
