// `pvbox install`: virt-install's command line for one new Debian PV guest: its disk, its xl.cfg, started as `pvbox create` starts it, optionally with its console attached.
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';
import { findDomain } from '../toolstack/registry.js';
import { checkInstall, installGuest, osVariant, parseDiskOption, parseMemoryOption, parseNetworkOption, parseVcpusOption } from '../toolstack/install.js';
import { consoleCommand } from './console.js';
import { xlCommand } from './xl.js';

export const INSTALL_USAGE = `  install --name NAME [--memory MiB] [--vcpus 1] --disk size=GiB[,path=FILE] [--os debian12] [--network bridge=BR[,mac=MAC]] [-c|--noautoconsole]
      virt-install for PV guests: Debian installed on a new disk (FILE, default
      $PVBOX_IMAGEDIR or /var/lib/pvbox/images/NAME.img) that boots by itself (pygrub), an xl.cfg
      in $PVBOX_CONFDIR or /etc/pvbox/NAME.cfg, and the guest started; -c attaches its console
      (the default on a terminal). Also takes --ram, --os-variant, --osinfo, --graphics none, --paravirt.
`;

/** The one option of a kind virt-install allows several of, where pvbox takes one. */
function single(values: string[] | undefined, option: string): string | undefined {
  if (values && values.length > 1) throw new UsageError(`${option}: pvbox install takes one ${option} for now`);
  return values?.[0];
}

export async function installCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      name: { type: 'string', short: 'n' }, memory: { type: 'string' }, ram: { type: 'string', short: 'r' }, vcpus: { type: 'string' },
      disk: { type: 'string', multiple: true }, os: { type: 'string' }, 'os-variant': { type: 'string' }, osinfo: { type: 'string' },
      network: { type: 'string', short: 'w', multiple: true }, console: { type: 'boolean', short: 'c' }, noautoconsole: { type: 'boolean' },
      autoconsole: { type: 'string' }, graphics: { type: 'string' }, paravirt: { type: 'boolean', short: 'p' }, quiet: { type: 'boolean', short: 'q' },
    },
  });
  if (positionals.length) throw new UsageError(`install: unexpected argument '${positionals[0]}'`);
  if (!values.name) throw new UsageError('install: --name NAME is needed');
  if (values.memory !== undefined && values.ram !== undefined) throw new UsageError('install: --memory and --ram are the same option; give one');
  const memoryText = values.memory ?? values.ram;
  const osTexts = [values.os, values['os-variant'], values.osinfo].filter((v) => v !== undefined);
  if (osTexts.length > 1) throw new UsageError('install: --os, --os-variant and --osinfo are the same option; give one');
  const diskText = single(values.disk, '--disk');
  if (diskText === undefined) throw new UsageError('install: --disk size=GiB is needed (e.g. --disk size=4)');
  const networkText = single(values.network, '--network');
  if (values.graphics !== undefined && values.graphics !== 'none') throw new UsageError(`--graphics ${values.graphics}: pvbox has no framebuffer; the console is text (--graphics none)`);
  if (values.autoconsole !== undefined && !['text', 'none'].includes(values.autoconsole)) throw new UsageError(`--autoconsole ${values.autoconsole}: text or none`);
  if (values.console && (values.noautoconsole || values.autoconsole === 'none')) throw new UsageError('install: --console and --noautoconsole contradict each other');
  // virt-install connects to the console unless told not to; without a terminal pvbox asks for -c.
  const attach = values.console || values.autoconsole === 'text' || (!values.noautoconsole && values.autoconsole !== 'none' && !!process.stdin.isTTY && !!process.stdout.isTTY);

  const vif = networkText === undefined ? undefined : parseNetworkOption(networkText);
  const req = await checkInstall({
    name: values.name,
    ...(memoryText !== undefined ? { memoryMiB: parseMemoryOption(memoryText) } : {}),
    vcpus: values.vcpus === undefined ? 1 : parseVcpusOption(values.vcpus),
    os: osVariant(osTexts[0] ?? 'debian12'),
    disk: parseDiskOption(diskText),
    ...(vif ? { vif } : {}),
  });
  const quiet = !!values.quiet;
  const { undo } = await installGuest(req, { quiet });
  // Started exactly as `pvbox create <cfg>` starts a guest; a guest that cannot start leaves no disk or config behind.
  try {
    await xlCommand('create', [req.configPath]);
  } catch (e) {
    await undo();
    throw e;
  }
  if (!quiet) {
    const domid = findDomain(req.name).domid;
    process.stderr.write(`pvbox: '${req.name}' installed (${req.os.name} on ${req.disk.path}, config ${req.configPath}) and started as domain ${domid}\n`);
    if (!attach) process.stderr.write(`pvbox: 'pvbox console ${req.name}' attaches its console; after a shutdown 'pvbox create ${req.configPath}' starts it again\n`);
  }
  return attach ? consoleCommand(req.name) : 0;
}
