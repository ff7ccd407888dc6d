// `pvbox image`: a bootable Debian root disk (ext4, built by debootstrap and cached) copied to --out, ready for `pvbox run --disk ... --extra root=/dev/xvda`.
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';
import { checkOutPath, copyRootDisk, DEFAULT_SUITE, ensureRootDisk, parseSize } from '../images/rootfs.js';

export const IMAGE_USAGE = `  image [--out PATH] [--size 2G] [--suite bookworm] [--packages a,b] [--force] [--rebuild]
      write a bootable Debian root disk (ext4 on /dev/xvda; root logged in on hvc0) to PATH
      (default ./SUITE-root.img); boot it with --disk 'vdev=xvda, access=rw, target=PATH'
      --extra root=/dev/xvda. Built once with debootstrap (as root) into the cache; later
      copies take seconds. --force replaces PATH; --rebuild ignores the cached build.
`;

export async function imageCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      out: { type: 'string' }, size: { type: 'string' }, suite: { type: 'string' }, packages: { type: 'string' },
      force: { type: 'boolean' }, rebuild: { type: 'boolean' }, quiet: { type: 'boolean' },
    },
  });
  if (positionals.length) throw new UsageError(`image: unexpected argument '${positionals[0]}'`);
  if (values.out === '') throw new UsageError('--out: expected a path');
  const suite = values.suite ?? DEFAULT_SUITE;
  const packages = (values.packages ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  const sizeBytes = values.size === undefined ? undefined : parseSize(values.size);
  const out = values.out ?? `${suite}-root.img`;
  await checkOutPath(out, !!values.force);
  const started = Date.now();
  const disk = await ensureRootDisk({ suite, packages, sizeBytes, rebuild: !!values.rebuild, quiet: !!values.quiet });
  await copyRootDisk(disk, out, { force: !!values.force, quiet: !!values.quiet });
  if (!values.quiet) {
    const r = disk.record;
    process.stderr.write(`pvbox: Debian ${r.suite} root disk (${Object.keys(r.installed).length} packages, modules of ${r.kernelVersion}) in ${out} after ${((Date.now() - started) / 1000).toFixed(1)} s; boot it with\n` +
      `  pvbox run --disk 'format=raw, vdev=xvda, access=rw, target=${out}' --extra root=/dev/xvda\n`);
  }
  process.stdout.write(`${out}\n`);
  return 0;
}
