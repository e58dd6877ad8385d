import {
  checkCollection,
  checkDevices,
  checkManifest,
  checkQcow2,
  checkSizes,
  checkVmdkComplete,
} from "./checks.js";
import type { TargetProfile } from "./types.js";

/** VirtualBox (VBoxManage import / the import wizard). */
export function virtualboxProfile(version: string | undefined): TargetProfile {
  const label = version ? `virtualbox-${version}` : "virtualbox";
  return {
    target: "virtualbox",
    version,
    label,
    async run(ctx) {
      await checkManifest(ctx, { targetLabel: "VirtualBox" });
      await checkSizes(ctx);
      checkDevices(ctx, {
        foreignSections: [
          { pattern: /^vmware\.vmci$/, why: "VMware VMCI device; VirtualBox drops it on import" },
        ],
      });
      await checkVmdkComplete(ctx);
      checkCollection(ctx, "VirtualBox");
      await checkQcow2(ctx, "VirtualBox");
    },
  };
}
