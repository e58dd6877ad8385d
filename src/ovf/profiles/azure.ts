import { checkAzureVhd, checkCollection, checkQcow2, checkSizes, checkVmdkComplete } from "./checks.js";
import type { TargetProfile } from "./types.js";

/** Azure managed disks / images: one fixed VHD per disk, uploaded as a page blob. */
export function azureProfile(version: string | undefined): TargetProfile {
  const label = version ? `azure-${version}` : "azure";
  return {
    target: "azure",
    version,
    label,
    async run(ctx) {
      await checkSizes(ctx);
      await checkAzureVhd(ctx);
      await checkVmdkComplete(ctx);
      checkCollection(ctx, "Azure");
      await checkQcow2(ctx, "Azure");
    },
  };
}
