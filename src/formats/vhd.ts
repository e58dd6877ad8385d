import { OvfkitError } from "../errors.js";
import type { FormatDriver } from "./driver.js";

// Placeholder until the format lands: detection never picks it, opening says so.
export const vhdDriver: FormatDriver = {
  name: "vpc",
  aliases: ["vhd"],
  description: "VHD (Virtual PC / Hyper-V) fixed, dynamic, differencing",
  probe: () => 0,
  async open(path) {
    throw new OvfkitError("UNSUPPORTED_FORMAT", "vpc is not implemented yet", { file: path });
  },
};
