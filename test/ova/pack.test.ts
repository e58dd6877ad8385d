import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { verifyPackage } from "../../src/ovf/ova.js";
import { packOva, signPackage, unpackOva, writeManifest } from "../../src/ovf/pack.js";
import { listTar, TarReader, TarWriter } from "../../src/ovf/tar.js";
import { BIN, ovfkit } from "../helpers/cli.js";
import { CORPUS_OVF, hasCorpus, sha256File } from "../helpers/corpus.js";
import { tempDir } from "../helpers/tmp.js";
import { run, skipReason } from "../helpers/tools.js";

const dir = tempDir("ovfkit-pack-");
const noTar = skipReason("tar");
const noOpenssl = skipReason("openssl");

/** A small hand-made appliance: descriptor + two files, sizes declared. */
function makeAppliance(name: string, disk = Buffer.alloc(3 * 1024 * 1024 + 123, 0x5a)): string {
  const folder = join(dir, name);
  mkdirSync(folder, { recursive: true });
  const iso = Buffer.from("config\n");
  writeFileSync(join(folder, "disk1.vmdk"), disk);
  writeFileSync(join(folder, "config.iso"), iso);
  writeFileSync(
    join(folder, `${name}.ovf`),
    `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:href="disk1.vmdk" ovf:id="file1" ovf:size="${disk.length}"/>
    <File ovf:href="config.iso" ovf:id="file2" ovf:size="${iso.length}"/>
  </References>
  <DiskSection>
    <Info>disks</Info>
    <Disk ovf:capacity="16" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1"/>
  </DiskSection>
  <VirtualSystem ovf:id="${name}">
    <Info>a test appliance</Info>
  </VirtualSystem>
</Envelope>
`,
  );
  return join(folder, `${name}.ovf`);
}

describe("pack", () => {
  it("writes descriptor, manifest, then References order; verify passes; GNU tar extracts the same bytes", {
    skip: Boolean(noTar),
  }, async () => {
    const ovf = makeAppliance("app");
    const ova = join(dir, "app.ova");
    await packOva(ovf, ova, { manifest: "SHA256" });
    const summary = await listTar(ova, { ova: true });
    expect(summary.members.map((m) => m.name)).toEqual(["app.ovf", "app.mf", "disk1.vmdk", "config.iso"]);
    expect((await verifyPackage(ova)).findings).toEqual([]);
    const listing = run("tar", ["tvf", ova]);
    expect(listing.status).toBe(0);
    expect(listing.stdout.split("\n")[0]).toMatch(/^-rw-r--r-- root\/root .* app\.ovf$/);
    const out = join(dir, "gnu-extract");
    mkdirSync(out);
    expect(run("tar", ["xf", ova, "-C", out]).status).toBe(0);
    expect(await sha256File(join(out, "disk1.vmdk"))).toBe(await sha256File(join(dir, "app", "disk1.vmdk")));
    const mf = readFileSync(join(out, "app.mf"), "utf8");
    // sha256sum agrees with every manifest line.
    for (const line of mf.trim().split("\n")) {
      const [, name, digest] = /^SHA256\((.+)\)= ([0-9a-f]{64})$/.exec(line)!;
      expect(run("sha256sum", [join(out, name!)]).stdout.split(" ")[0]).toBe(digest);
    }
  });

  it("--reproducible: two packs of the same input are byte-identical (SOURCE_DATE_EPOCH honoured)", async () => {
    const ovf = makeAppliance("repro");
    process.env.SOURCE_DATE_EPOCH = "1700000000";
    try {
      await packOva(ovf, join(dir, "r1.ova"), { reproducible: true });
      await packOva(ovf, join(dir, "r2.ova"), { reproducible: true });
    } finally {
      delete process.env.SOURCE_DATE_EPOCH;
    }
    expect(await sha256File(join(dir, "r1.ova"))).toBe(await sha256File(join(dir, "r2.ova")));
    const summary = await listTar(join(dir, "r1.ova"));
    expect(summary.members.every((m) => m.mtime === 1_700_000_000 && m.uid === 0 && m.mode === 0o644)).toBe(
      true,
    );
  });

  it("every corpus OVA: unpack → pack --reproducible twice is byte-identical, or a typed refusal says why", {
    skip: !hasCorpus,
  }, async () => {
    /** What each corpus OVA does (PROVENANCE.md says what it is). */
    const expected: Record<string, string> = {
      "glance/glance/tests/var/testserver.ova": "identical",
      "glance/glance/tests/var/testserver-no-disk.ova": "OVF_FILE_MISSING", // its disk is not in the tar
      "glance/glance/tests/var/testserver-no-ovf.ova": "no descriptor",
      "glance/glance/tests/var/testserver-bad-ovf.ova": "OVF_XML_MALFORMED",
      "glance/glance/tests/var/testserver-not-tar.ova": "OVA_NOT_TAR",
      "ganeti/test/data/ovfdata/wrong_ova.ova": "OVA_NOT_TAR",
      "ganeti/test/data/ovfdata/ova.ova": "OVA_COMPRESSED", // gzip-compressed tar
      "ganeti/test/data/ovfdata/no_ovf.ova": "OVA_COMPRESSED",
      "govmomi/vapi/library/testdata/ttylinux-pc_i486-16.1.ova": "OVF_FILE_SIZE_MISMATCH", // VMDK truncated in the corpus
    };
    for (const [path, outcome] of Object.entries(expected)) {
      const folder = join(dir, `corpus-${path.replace(/\W+/g, "-")}`);
      const got = await (async (): Promise<string> => {
        const { files } = await unpackOva(join(CORPUS_OVF, path), folder, { verify: false });
        const descriptor = files.find((f) => f.endsWith(".ovf"));
        if (!descriptor) return "no descriptor";
        await packOva(descriptor, `${folder}-1.ova`, { reproducible: true });
        await packOva(descriptor, `${folder}-2.ova`, { reproducible: true });
        expect((await verifyPackage(`${folder}-1.ova`)).ok).toBe(true);
        return (await sha256File(`${folder}-1.ova`)) === (await sha256File(`${folder}-2.ova`))
          ? "identical"
          : "DIFFERENT";
      })().catch((error: { code?: string }) => error.code ?? String(error));
      expect(got, path).toBe(outcome);
    }
  });

  it("corpus OVF folder with a manifest (COT input.ovf) packs and verifies clean", {
    skip: !hasCorpus,
  }, async () => {
    const ova = join(dir, "cot-input.ova");
    await packOva(join(CORPUS_OVF, "cot/COT/tests/input.ovf"), ova, { manifest: "SHA1", reproducible: true });
    const report = await verifyPackage(ova);
    expect(report.findings).toEqual([]);
    expect(report.members.map((m) => m.name)).toEqual([
      "input.ovf",
      "input.mf",
      "input.vmdk",
      "input.iso",
      "sample_cfg.txt",
    ]);
  });

  it("signs while packing; openssl dgst verifies our signature; tampering is caught", {
    skip: Boolean(noOpenssl),
  }, async () => {
    expect(
      run(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-keyout",
          "k.pem",
          "-out",
          "c.pem",
          "-days",
          "2",
          "-subj",
          "/CN=pack",
        ],
        { cwd: dir },
      ).status,
    ).toBe(0);
    const ovf = makeAppliance("signed");
    const ova = join(dir, "signed.ova");
    const key = readFileSync(join(dir, "k.pem"), "utf8");
    const cert = readFileSync(join(dir, "c.pem"), "utf8");
    await packOva(ovf, ova, { sign: { privateKey: key, certificate: cert } });
    const report = await verifyPackage(ova);
    expect(report.members.map((m) => m.name).slice(0, 3)).toEqual(["signed.ovf", "signed.mf", "signed.cert"]);
    expect(report.findings.map((f) => f.code)).toEqual(["CERT_SELF_SIGNED"]);
    expect(report.ok).toBe(true);
    const out = join(dir, "signed-x");
    await unpackOva(ova, out);
    const certLine = readFileSync(join(out, "signed.cert"), "utf8").split("\n")[0]!;
    writeFileSync(join(dir, "sig.bin"), Buffer.from(certLine.split("= ")[1]!, "hex"));
    run("openssl", ["x509", "-in", "c.pem", "-pubkey", "-noout", "-out", "pub.pem"], { cwd: dir });
    const verdict = run(
      "openssl",
      ["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.bin", join(out, "signed.mf")],
      { cwd: dir },
    );
    expect(verdict.stdout.trim()).toBe("Verified OK");
    // Edit the manifest in the OVF folder and the signature no longer holds.
    writeFileSync(
      join(out, "signed.mf"),
      `${readFileSync(join(out, "signed.mf"), "utf8")}`.replace(/.$/s, "\n\n"),
    );
    const tampered = await verifyPackage(join(out, "signed.ovf"));
    expect(tampered.findings.map((f) => f.code)).toContain("CERT_SIGNATURE_INVALID");
    // sign re-signs an existing OVA in place (and via the CLI).
    const resigned = join(dir, "resigned.ova");
    await packOva(ovf, resigned, {});
    await signPackage(resigned, { privateKey: key, certificate: cert });
    expect((await verifyPackage(resigned)).ok).toBe(true);
    const cli = ovfkit([
      "sign",
      resigned,
      "--key",
      join(dir, "k.pem"),
      "--cert",
      join(dir, "c.pem"),
      "-o",
      join(dir, "cli-signed.ova"),
    ]);
    expect(cli.status, cli.stderr).toBe(0);
    expect(ovfkit(["verify", join(dir, "cli-signed.ova")]).status).toBe(0);
  });

  it("splits with ovf:chunkSize on request; the chunks verify and sum to ovf:size", async () => {
    const ovf = makeAppliance("chunky");
    const ova = join(dir, "chunky.ova");
    await packOva(ovf, ova, { chunkSize: 1024 * 1024 });
    const names = (await listTar(ova)).members.map((m) => m.name);
    expect(names).toEqual([
      "chunky.ovf",
      "chunky.mf",
      "disk1.vmdk.000000000",
      "disk1.vmdk.000000001",
      "disk1.vmdk.000000002",
      "disk1.vmdk.000000003",
      "config.iso",
    ]);
    const report = await verifyPackage(ova);
    expect(report.findings).toEqual([]);
    const folder = join(dir, "chunky-x");
    await unpackOva(ova, folder);
    expect(readFileSync(join(folder, "chunky.ovf"), "utf8")).toMatch(/ovf:chunkSize="1048576"/);
    expect((await verifyPackage(join(folder, "chunky.ovf"))).findings).toEqual([]);
  });

  it("an interrupted pack leaves no partial output", async () => {
    const ovf = makeAppliance("interrupted");
    const ova = join(dir, "interrupted.ova");
    await expect(
      packOva(ovf, ova, {
        onProgress: (done) => {
          if (done > 1024 * 1024) throw new Error("cancelled by the user");
        },
      }),
    ).rejects.toThrow();
    expect(existsSync(ova)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes("interrupted.ova"))).toEqual([]);
  });

  it("SIGTERM during a CLI pack leaves nothing behind", async () => {
    const ovf = makeAppliance("killed", Buffer.alloc(256 * 1024 * 1024));
    const ova = join(dir, "killed.ova");
    const child = spawn(process.execPath, [BIN, "pack", ovf, "-o", ova], { stdio: "ignore" });
    // Wait until the temporary output exists, then interrupt.
    for (let i = 0; i < 400 && !readdirSync(dir).some((n) => n.startsWith(".killed.ova.")); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    expect(existsSync(ova)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes("killed.ova"))).toEqual([]);
  });

  it("refuses a descriptor whose ovf:size is wrong, and hrefs leaving the folder", async () => {
    const ovf = makeAppliance("badsize");
    writeFileSync(join(dir, "badsize", "config.iso"), "changed!!\n");
    await expect(packOva(ovf, join(dir, "badsize.ova"))).rejects.toMatchObject({
      code: "OVF_FILE_SIZE_MISMATCH",
    });
    const evil = join(dir, "badsize", "evil.ovf");
    writeFileSync(
      evil,
      readFileSync(ovf, "utf8").replace('ovf:href="config.iso"', 'ovf:href="../../etc/passwd"'),
    );
    await expect(packOva(evil, join(dir, "evil.ova"))).rejects.toMatchObject({ code: "OVF_HREF_UNSAFE" });
    expect(existsSync(join(dir, "badsize.ova"))).toBe(false);
  });
});

describe("verify layouts other tools write", () => {
  it("a manifest after the files is verified in the same single pass (all three digests computed)", async () => {
    const ovf = makeAppliance("late");
    const folder = join(dir, "late");
    await writeManifest(ovf, "create", { algorithm: "SHA512" });
    const ova = join(dir, "late.ova");
    const writer = await TarWriter.create(ova);
    for (const name of ["late.ovf", "disk1.vmdk", "config.iso", "late.mf"]) {
      const data = readFileSync(join(folder, name));
      await writer.add({ name, size: data.length, mtime: 0 }, [data]);
    }
    await writer.finish();
    const report = await verifyPackage(ova);
    expect(report.ok).toBe(true);
    expect(report.findings.map((f) => f.code)).toEqual(["OVA_MANIFEST_ORDER"]);
    // Corrupt the disk: the late manifest still catches it.
    const disk = (await listTar(ova)).members.find((m) => m.name === "disk1.vmdk")!;
    const bytes = readFileSync(ova);
    bytes[disk.dataOffset + 100] ^= 1;
    writeFileSync(ova, bytes);
    expect((await verifyPackage(ova)).findings.map((f) => f.code)).toEqual([
      "MANIFEST_DIGEST_MISMATCH",
      "OVA_MANIFEST_ORDER",
    ]);
  });

  it("a descriptor that is not the first member is a warning, an error with --strict", async () => {
    makeAppliance("notfirst");
    const folder = join(dir, "notfirst");
    const ova = join(dir, "notfirst.ova");
    const writer = await TarWriter.create(ova);
    for (const name of ["config.iso", "notfirst.ovf", "disk1.vmdk"]) {
      const data = readFileSync(join(folder, name));
      await writer.add({ name, size: data.length, mtime: 0 }, [data]);
    }
    await writer.finish();
    const lenient = await verifyPackage(ova);
    expect(lenient.findings.find((f) => f.code === "OVA_DESCRIPTOR_NOT_FIRST")?.severity).toBe("warning");
    const strict = await verifyPackage(ova, { strict: true });
    expect(strict.findings.find((f) => f.code === "OVA_DESCRIPTOR_NOT_FIRST")?.severity).toBe("error");
    expect(strict.ok).toBe(false);
  });
});

describe("unpack", () => {
  it("refuses to overwrite, refuses a bad digest (leaving nothing), and --no-verify extracts anyway", async () => {
    const ovf = makeAppliance("victim");
    const ova = join(dir, "victim.ova");
    await packOva(ovf, ova);
    const target = join(dir, "victim-x");
    await unpackOva(ova, target);
    await expect(unpackOva(ova, target)).rejects.toMatchObject({ code: "OUTPUT_EXISTS" });
    // Corrupt one data byte inside the disk member: the manifest no longer matches.
    const bad = join(dir, "victim-bad.ova");
    copyFileSync(ova, bad);
    const reader = await TarReader.open(bad);
    let diskOffset = 0;
    for await (const m of reader.members()) if (m.name === "disk1.vmdk") diskOffset = m.dataOffset;
    await reader.close();
    const bytes = readFileSync(bad);
    bytes[diskOffset + 10] ^= 0xff;
    writeFileSync(bad, bytes);
    const badTarget = join(dir, "victim-bad-x");
    await expect(unpackOva(bad, badTarget)).rejects.toMatchObject({ code: "MANIFEST_DIGEST_MISMATCH" });
    expect(readdirSync(badTarget)).toEqual([]);
    const cli = ovfkit(["unpack", "--no-verify", bad, "-d", badTarget]);
    expect(cli.status, cli.stderr).toBe(0);
    expect(readdirSync(badTarget).sort()).toEqual(["config.iso", "disk1.vmdk", "victim.mf", "victim.ovf"]);
  });

  it("refuses a hostile member and extracts nothing", { skip: Boolean(noTar) }, async () => {
    const src = join(dir, "hostile-src");
    mkdirSync(src);
    writeFileSync(join(src, "a.ovf"), "<Envelope/>");
    const ova = join(dir, "hostile.ova");
    run("tar", ["cf", ova, "-P", "-C", src, "../hostile-src/a.ovf"]);
    const target = join(dir, "hostile-x");
    const cli = ovfkit(["unpack", ova, "-d", target]);
    expect(cli.status).toBe(1);
    expect(cli.stderr).toMatch(/OVA_PATH_TRAVERSAL/);
    expect(readdirSync(target)).toEqual([]);
    expect(existsSync(join(dir, "a.ovf"))).toBe(false);
  });
});

describe("manifest create|update", () => {
  it("creates, refuses to recreate, and update keeps per-line algorithms and flags a stale .cert", async () => {
    const ovf = makeAppliance("mf");
    const created = await writeManifest(ovf, "create", { algorithm: "SHA1" });
    expect(created.entries.map((e) => `${e.algorithm}:${e.name}`)).toEqual([
      "SHA1:mf.ovf",
      "SHA1:disk1.vmdk",
      "SHA1:config.iso",
    ]);
    expect((await verifyPackage(ovf)).findings).toEqual([]);
    await expect(writeManifest(ovf, "create")).rejects.toMatchObject({ code: "OUTPUT_EXISTS" });
    writeFileSync(join(dir, "mf", "config.iso"), "CONFIG\n");
    expect((await verifyPackage(ovf)).findings.map((f) => f.code)).toEqual(["MANIFEST_DIGEST_MISMATCH"]);
    const cli = ovfkit(["manifest", "update", ovf]);
    expect(cli.status, cli.stderr).toBe(0);
    expect(readFileSync(join(dir, "mf", "mf.mf"), "utf8")).toMatch(/^SHA1\(mf\.ovf\)= /);
    expect((await verifyPackage(ovf)).ok).toBe(true);
  });
});
