import { defineRules } from "../rules/types.js";

/**
 * Target-profile rules: what each importer is documented or reported to
 * reject. Ids follow the check numbers of notes/targets.md (OVF-TGT-001 is
 * check 1), and every rule carries the public evidence it encodes.
 */
export const TARGET_RULES = defineRules({
  tarLayout: {
    id: "OVF-TGT-001",
    layer: "profile",
    severity: "error",
    title:
      "OVA tar layout: the .ovf must be the first member, no PAX/GNU long-name headers, plain member names, then .mf/.cert",
    fix: "repack with the descriptor first, in ustar/GNU format without PAX headers (ovfkit pack does)",
    targets: ["vsphere", "aws"],
    source:
      "notes/targets.md #1/#7: kubev2v/migration-planner#147, vmware/open-vmdk#65, oVirt/ovirt-engine#601, coreos/coreos-assembler#3787",
  },
  manifestGrammar: {
    id: "OVF-TGT-002",
    layer: "profile",
    severity: "error",
    title:
      "manifest lines must be exactly ALG(name)= hex with SHA1/SHA256/SHA512, list the .ovf and only package files",
    fix: "regenerate the manifest as 'SHA256(file)= hex' lines (ovfkit pack), one per package file, descriptor included",
    targets: ["vsphere", "virtualbox", "ovirt"],
    source:
      "notes/targets.md #2: home-assistant/operating-system#826 (sha256sum --tag), #3654 (OpenSSL 3 SHA2-256), GNS3/gns3-vm#96 (missing .ovf entry)",
  },
  manifestAlgorithm: {
    id: "OVF-TGT-003",
    layer: "profile",
    severity: "error",
    title: "the manifest's digest algorithm is not accepted by the target version",
    fix: "regenerate the manifest with an accepted algorithm (SHA1 for vSphere <= 6.0; SHA1/SHA256 for virt-v2v)",
    targets: ["vsphere", "ovirt"],
    source:
      "notes/targets.md #3/#5: turnkeylinux/tracker#827, MISP/MISP#3947, virt-v2v input/OVA.ml (SHA1|SHA256 only)",
  },
  fileSize: {
    id: "OVF-TGT-004",
    layer: "profile",
    severity: "error",
    title:
      "Disk ovf:capacity must cover the disk file's virtual size (File ovf:size vs the real size: OVF-REF-009, always on)",
    fix: "set ovf:capacity to at least the disk's virtual size (in bytes, or with capacityAllocationUnits)",
    targets: ["vsphere", "virtualbox", "aws", "azure", "ovirt"],
    source:
      "notes/targets.md #4/#8: coreos/fedora-coreos-tracker#391, hashicorp/packer#8995, vmware/vic-product#1008 ('Wrong file size specified in OVF descriptor')",
  },
  hardwareVersion: {
    id: "OVF-TGT-005",
    layer: "profile",
    severity: "error",
    title: "VirtualSystemType must name a VMware hardware version (vmx-NN) the target ESXi supports",
    fix: "lower VirtualSystemType to the target's vmx-NN (or list several: 'vmx-13 vmx-19')",
    targets: ["vsphere"],
    source:
      "notes/targets.md #5/#9/#10: bitnami/vms#1555, librenms/packer-builds#36, nextcloud/vm#556, owncloud-archive/vm#53 ('Unsupported hardware family')",
  },
  vmdkSubformat: {
    id: "OVF-TGT-006",
    layer: "profile",
    severity: "error",
    title: "disks must be streamOptimized VMDK, sparse header version 3, compressed with markers",
    fix: "convert the disk: ovfkit convert -O vmdk -o subformat=streamOptimized (writes VMware's canonical v3 layout)",
    targets: ["vsphere", "aws"],
    source:
      "notes/targets.md #6: glennmatthews/cot#65 (sparse VMDK version too old), flatcar/scripts#540, govmomi vmdk/import.go, AWS VM Import docs, istoreos/istoreos#75",
  },
  azureVhd: {
    id: "OVF-TGT-007",
    layer: "profile",
    severity: "error",
    title:
      "Azure takes fixed VHDs only: type 2, 'conectix' footer with a valid checksum, size a whole number of MiB, 20 MiB..32 TiB",
    fix: "convert: ovfkit convert -O vpc -o subformat=fixed,force_size=on after rounding the size up to a MiB",
    targets: ["azure"],
    source:
      "notes/targets.md #7/#12/#13: Azure/azure-xplat-cli#1784, microsoft/AzureStorageExplorer#3029, microsoft/azure-linux-image-tools#364",
  },
  ovf2OnVmware: {
    id: "OVF-TGT-008",
    layer: "profile",
    severity: "error",
    title: "OVF 2.x (envelope/2 namespace, StorageItem, EthernetPortItem) is refused by VMware importers",
    fix: "export OVF 1.x: rewrite StorageItem/EthernetPortItem as rasd Items in the envelope/1 namespace",
    targets: ["vsphere"],
    source:
      "notes/targets.md #8/#10: BlackArch/blackarch#1937, librenms/packer-builds#31 ('Unsupported element StorageItem')",
  },
  unsupportedDevice: {
    id: "OVF-TGT-009",
    layer: "profile",
    severity: "error",
    title: "a device or controller subtype the target does not support",
    fix: "remove the device, or change its ResourceSubType to one the target knows",
    targets: ["vsphere", "virtualbox", "ovirt"],
    source:
      "notes/targets.md #9/#10/#23: Graylog2/graylog2-server#5594 (sound), inverse-inc/packetfence#5522 (PIIX4), coreos/fedora-coreos-tracker#391 (VirtualSCSI), glennmatthews/cot#80",
  },
  compressed: {
    id: "OVF-TGT-010",
    layer: "profile",
    severity: "error",
    title: "gzip-compressed disks (ovf:compression) or a compressed .ova are refused",
    fix: "store disks uncompressed (streamOptimized VMDK is compressed inside) and the .ova as a plain tar",
    targets: ["vsphere", "aws"],
    source: "notes/targets.md #10/#11: EMCECS/ECS-CommunityEdition#329, virt-v2v input/OVA.ml",
  },
  awsLimits: {
    id: "OVF-TGT-011",
    layer: "profile",
    severity: "error",
    title: "AWS VM Import limits: at most 21 disks, each under 16 TiB, no SEsparse, x86 64-bit",
    fix: "split the appliance or shrink disks under the limit; use a 64-bit x86 guest",
    targets: ["aws"],
    source:
      "notes/targets.md #11/#14: AWS VM Import/Export limitations, REMnux/remnux-cli#156, hashicorp/packer-plugin-amazon#457",
  },
  vmdkComplete: {
    id: "OVF-TGT-012",
    layer: "profile",
    severity: "error",
    title: "a VMDK is a descriptor whose extents (or delta parent) are missing from the package",
    fix: "ship a self-contained disk: convert to streamOptimized VMDK (one file) before packing",
    targets: ["vsphere", "virtualbox", "aws", "azure", "ovirt"],
    source:
      "notes/targets.md #12/#15: GoogleCloudPlatform/compute-image-tools#1074, hashicorp/packer#7857, virt-v2v errors",
  },
  requiredProperty: {
    id: "OVF-TGT-015",
    layer: "profile",
    severity: "warning",
    title:
      "a required, user-configurable ProductSection property has no default value (deployment blocks on it)",
    fix: 'give the property an ovf:value default or mark it ovf:required="false"',
    targets: ["vsphere"],
    source: "notes/targets.md #15/#22: coreos/fedora-coreos-tracker#391",
  },
  transport: {
    id: "OVF-TGT-018",
    layer: "profile",
    severity: "warning",
    title: "ProductSection properties are declared but the VirtualHardwareSection names no ovf:transport",
    fix: 'add ovf:transport="com.vmware.guestInfo iso" to VirtualHardwareSection so the guest receives the properties',
    targets: ["vsphere"],
    source: "notes/targets.md #18: vmware/open-vmdk README (ovf-env transports)",
  },
  collection: {
    id: "OVF-TGT-021",
    layer: "profile",
    severity: "error",
    title: "VirtualSystemCollection (multi-VM package) is not supported by the target",
    fix: "export each VM as its own package",
    targets: ["virtualbox", "aws", "azure"],
    source: "notes/targets.md #21: glennmatthews/cot#71; AWS/Azure import one VM per image",
  },
  qcow2: {
    id: "OVF-TGT-022",
    layer: "profile",
    severity: "error",
    title: "qcow2 disks in an OVA are only understood by oVirt",
    fix: "convert the disk to streamOptimized VMDK for non-oVirt targets",
    targets: ["vsphere", "virtualbox", "aws", "azure"],
    source: "notes/targets.md #22: oVirt/ovirt-site#828, #855",
  },
});
