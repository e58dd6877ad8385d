#!/bin/sh
# Rebuilds the runtime fixture images from their nasm sources:
#   fixtures/runtime/NAME.asm -> fixtures/runtime/NAME.img
# The images are committed with their sources; test/runtime/fixtures.test.ts
# checks that they are up to date. Needs nasm (Debian package `nasm`).
set -eu
cd "$(dirname "$0")/../fixtures/runtime"
for source in *.asm; do
  image="${source%.asm}.img"
  nasm -f bin -I ./ -o "$image" "$source"
  echo "built fixtures/runtime/$image"
done

# The tiny appliance as a streamOptimized VMDK (what OVA packages carry),
# written by ovfkit's own VMDK writer (needs dist/: node scripts/build.mjs).
cd ../..
if [ -f dist/cli.js ]; then
  rm -f fixtures/runtime/appliance.vmdk
  node bin/ovfkit convert -O vmdk -o subformat=streamOptimized fixtures/runtime/appliance.img fixtures/runtime/appliance.vmdk
  echo "built fixtures/runtime/appliance.vmdk"
else
  echo "skipped fixtures/runtime/appliance.vmdk: run node scripts/build.mjs first" >&2
fi
