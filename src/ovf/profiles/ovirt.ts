import { checkDevices, checkManifest, checkSizes, checkVmdkComplete } from "./checks.js";
import type { TargetProfile } from "./types.js";

/** oVirt/RHV (and virt-v2v -i ova, which it uses for VMware OVAs). */
export function ovirtProfile(version: string | undefined): TargetProfile {
  const label = version ? `ovirt-${version}` : "ovirt";
  return {
    target: "ovirt",
    version,
    label,
    async run(ctx) {
      // virt-v2v's manifest regex allows any spacing but only SHA1 and SHA256 (input/OVA.ml)
      await checkManifest(ctx, {
        accepted: ["SHA1", "SHA256"],
        lenientSpacing: true,
        targetLabel: "oVirt/virt-v2v",
      });
      await checkSizes(ctx);
      checkDevices(ctx, {
        foreignSections: [{ pattern: /^vmware\.vmci$/, why: "VMware VMCI device; dropped by virt-v2v" }],
      });
      await checkVmdkComplete(ctx);
    },
  };
}
