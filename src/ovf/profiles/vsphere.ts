import { OvfkitError } from "../../errors.js";
import type { ManifestAlgorithm } from "../manifest.js";
import {
  checkCompression,
  checkDevices,
  checkHardwareVersion,
  checkManifest,
  checkOvf2,
  checkQcow2,
  checkRequiredProperties,
  checkSizes,
  checkTarLayout,
  checkTransport,
  checkVmdkComplete,
  checkVmdkSubformat,
} from "./checks.js";
import type { TargetProfile } from "./types.js";

/**
 * vSphere/ESXi (ovftool, the vSphere client, govc). Newest hardware
 * version per release from notes/targets.md check 5 (open-vmdk templates
 * hw7…hw21, VMware KB "ESXi hardware versions").
 */
export const VSPHERE_VERSIONS: Record<string, { maxVmx: number; algorithms: readonly ManifestAlgorithm[] }> =
  {
    "5.0": { maxVmx: 8, algorithms: ["SHA1"] },
    "5.1": { maxVmx: 9, algorithms: ["SHA1"] },
    "5.5": { maxVmx: 10, algorithms: ["SHA1"] },
    "6.0": { maxVmx: 11, algorithms: ["SHA1"] },
    "6.5": { maxVmx: 13, algorithms: ["SHA1", "SHA256"] },
    "6.7": { maxVmx: 14, algorithms: ["SHA1", "SHA256", "SHA512"] },
    "6.7u2": { maxVmx: 15, algorithms: ["SHA1", "SHA256", "SHA512"] },
    "7.0": { maxVmx: 17, algorithms: ["SHA1", "SHA256", "SHA512"] },
    "7.0u1": { maxVmx: 18, algorithms: ["SHA1", "SHA256", "SHA512"] },
    "7.0u2": { maxVmx: 19, algorithms: ["SHA1", "SHA256", "SHA512"] },
    "8.0": { maxVmx: 20, algorithms: ["SHA1", "SHA256", "SHA512"] },
    "8.0u2": { maxVmx: 21, algorithms: ["SHA1", "SHA256", "SHA512"] },
  };
const NEWEST = "8.0u2";

export function vsphereProfile(version: string | undefined): TargetProfile {
  const key = (version ?? NEWEST).toLowerCase();
  const known = VSPHERE_VERSIONS[key];
  if (!known) {
    throw new OvfkitError(
      "OVF_UNKNOWN_PROFILE",
      `unknown vSphere version "${version}" (known: ${Object.keys(VSPHERE_VERSIONS).join(", ")})`,
    );
  }
  const label = version ? `vsphere-${key}` : "vsphere";
  const name = `vSphere ${key}`;
  return {
    target: "vsphere",
    version: key,
    label,
    async run(ctx) {
      checkTarLayout(ctx);
      await checkManifest(ctx, { accepted: known.algorithms, targetLabel: name });
      await checkSizes(ctx);
      checkHardwareVersion(ctx, known.maxVmx, name);
      await checkVmdkSubformat(ctx, name);
      checkOvf2(ctx);
      checkDevices(ctx, {
        refusedTypes: { 35: "sound cards are not supported by vSphere OVF import" },
        refusedSubtypes: [
          { type: 5, pattern: /^PIIX[34]$/i, why: "VirtualBox IDE controller subtype, not found by vSphere" },
          { type: 20, pattern: /^AHCI$/, why: "VirtualBox SATA subtype; vSphere expects vmware.sata.ahci" },
        ],
        foreignSections: [
          { pattern: /virtualbox/i, why: "VirtualBox-only section, ignored or refused by vSphere" },
        ],
      });
      checkCompression(ctx, name);
      await checkVmdkComplete(ctx);
      checkRequiredProperties(ctx);
      checkTransport(ctx);
      await checkQcow2(ctx, name);
    },
  };
}
