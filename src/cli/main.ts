// The pvbox command line: parses arguments and dispatches to a verb; every PvboxError becomes one line on stderr and a non-zero exit.
import { parseArgs } from 'node:util';
import { PvboxError, UsageError } from '../errors.js';
import { run } from './run.js';
import { xenstoredCommand } from '../xenstore/daemon.js';
import { consoleCommand } from './console.js';
import { IMAGE_USAGE, imageCommand } from './image.js';
import { INSTALL_USAGE, installCommand } from './install.js';
import { blockAttach, blockDetach } from './block.js';
import { networkAttach, networkDetach } from './network.js';
import { restoreCommand, saveCommand } from './save.js';
import { parseDiskSpec } from '../backends/vbd/disk-spec.js';
import { parseVifSpecs } from '../backends/vif/vif-spec.js';
import { XL_VERBS, xlCommand, xmVerb } from './xl.js';
import { DOMAIN_PROCESS_VERB, domainProcessMain } from '../toolstack/domain-process.js';

const USAGE = `usage: pvbox <command> [options]

commands:
  run [--kernel FILE] [--ramdisk FILE] [--extra ARGS] [--memory MiB] [--name NAME] [--consoles N] [--disk SPEC]... [--vif SPEC]... [--trace] [--stats]
      boot a Xen PV guest and attach its console (Ctrl-] ends the session).
      Without --kernel, boots the default Debian 12 guest (built on first use).
  save <domain> <file>
      suspend a running guest and write its memory and state to FILE; the domain is then gone.
  restore [-c] <file>
      start a new domain from a saved guest; -c attaches its console.
  block-attach <domain> <disk spec>
      give a running guest another disk (xl disk syntax, e.g. 'format=raw, vdev=xvdb, access=rw, target=/img').
  block-detach <domain> <vdev>
      take a disk away from a running guest (the guest lets go of it first).
  network-attach <domain> <vif spec>
      give a running guest another NIC (xl vif syntax, e.g. 'bridge=xenbr0, mac=00:16:3e:01:02:03').
  network-detach <domain> <devid|mac>
      take a NIC away from a running guest (the guest lets go of it first).
  console <domain> [--num N]
      attach this terminal to a running guest's console (by name or domain id); Ctrl-] detaches
      and the guest keeps running.
  create [-c] <xl.cfg> [key=value...]    start a guest from an xl.cfg(5) file, detached (-c: attach its console)
  list | info | dmesg [-c] | uptime | top | domid <name> | domname <id>
  shutdown [-w] [-a] | reboot | destroy | pause | unpause | rename <domain> [new name]
  mem-set | mem-max <domain> <size[bkmgt]>;  vcpu-set <domain> <n>
      xl's verbs and output formats for detached guests; 'pvbox xm <verb>' takes xm's spellings.
  daemon [--foreground]
      the management API (JSON lines on $PVBOX_RUNDIR/pvbox.sock): list, create, and the verbs above.
${IMAGE_USAGE}${INSTALL_USAGE}  xenstored [--socket PATH] [--foreground] [--log FILE]
      serve XenStore to Domain-0 clients (xenstore-utils, pyxs) on a Unix socket, by default
      where libxenstore looks ($XENSTORED_PATH, else /run/xenstored/socket). Without
      --foreground it detaches, logs to FILE (/var/log/pvbox/xenstored.log) and prints its pid.
`;

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === '-h' || verb === '--help' || verb === 'help') { process.stdout.write(USAGE); return verb ? 0 : 1; }
  switch (verb) {
    case 'run': {
      const { values, positionals } = parseArgs({
        args: rest, allowPositionals: true, strict: true,
        options: {
          kernel: { type: 'string' }, ramdisk: { type: 'string' }, extra: { type: 'string' }, memory: { type: 'string' },
          name: { type: 'string' }, trace: { type: 'boolean' }, stats: { type: 'boolean' }, consoles: { type: 'string' }, disk: { type: 'string', multiple: true },
          vif: { type: 'string', multiple: true },
        },
      });
      if (positionals.length) throw new UsageError(`run: unexpected argument '${positionals[0]}'`);
      const memory = values.memory === undefined ? 512 : Number(values.memory);
      if (!Number.isInteger(memory) || memory <= 0 || memory > 1 << 20) throw new UsageError(`--memory '${values.memory}': expected a size in MiB, e.g. 512`);
      const consoles = values.consoles === undefined ? 0 : Number(values.consoles);
      if (!Number.isInteger(consoles) || consoles < 0 || consoles > 8) throw new UsageError(`--consoles '${values.consoles}': 0-8 secondary consoles`);
      const disks = (values.disk ?? []).map(parseDiskSpec);
      if (new Set(disks.map((d) => d.devid)).size !== disks.length) throw new UsageError('--disk: two disks with the same vdev');
      const vifs = parseVifSpecs(values.vif ?? []);
      const name = values.name ?? 'pvbox-guest';
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new UsageError(`--name '${name}': use letters, digits, '.', '_' and '-' (at most 64)`);
      return run({ kernel: values.kernel, ramdisk: values.ramdisk, extra: values.extra, memory, trace: !!values.trace, stats: !!values.stats, name, consoles, disks, vifs });
    }
    case 'save': {
      const { positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options: {} });
      if (positionals.length !== 2) throw new UsageError('usage: pvbox save <domain> <file>');
      return saveCommand(positionals[0]!, positionals[1]!);
    }
    case 'restore': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options: { console: { type: 'boolean', short: 'c' } } });
      if (positionals.length !== 1) throw new UsageError('usage: pvbox restore [-c] <file>');
      return restoreCommand(positionals[0]!, !!values.console);
    }
    case 'block-attach': case 'block-detach': {
      const { positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options: {} });
      if (positionals.length !== 2) throw new UsageError(verb === 'block-attach' ? 'usage: pvbox block-attach <domain> <disk spec>' : 'usage: pvbox block-detach <domain> <vdev>');
      return verb === 'block-attach' ? blockAttach(positionals[0]!, positionals[1]!) : blockDetach(positionals[0]!, positionals[1]!);
    }
    case 'network-attach': case 'network-detach': {
      const { positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options: {} });
      if (verb === 'network-attach' ? positionals.length < 2 : positionals.length !== 2) throw new UsageError(verb === 'network-attach' ? 'usage: pvbox network-attach <domain> <vif spec>' : 'usage: pvbox network-detach <domain> <devid|mac>');
      return verb === 'network-attach' ? networkAttach(positionals[0]!, positionals.slice(1)) : networkDetach(positionals[0]!, positionals[1]!);
    }
    case 'console': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options: { num: { type: 'string' } } });
      if (positionals.length !== 1) throw new UsageError('usage: pvbox console <domain name or id> [--num N]');
      const num = values.num === undefined ? 0 : Number(values.num);
      if (!Number.isInteger(num) || num < 0 || num > 8) throw new UsageError(`--num '${values.num}': a console number 0-8`);
      return consoleCommand(positionals[0]!, num);
    }
    case 'xenstored': {
      const { values, positionals } = parseArgs({
        args: rest, allowPositionals: true, strict: true,
        options: { socket: { type: 'string' }, foreground: { type: 'boolean' }, log: { type: 'string' } },
      });
      if (positionals.length) throw new UsageError(`xenstored: unexpected argument '${positionals[0]}'`);
      if (values.socket === '') throw new UsageError('--socket: expected a path');
      return xenstoredCommand({ socket: values.socket, foreground: !!values.foreground, logFile: values.log });
    }
    case DOMAIN_PROCESS_VERB: return domainProcessMain();
    case 'image':
      return imageCommand(rest);
    case 'install':
      return installCommand(rest);
    case 'xm': {
      const xm = xmVerb(rest[0]);
      return XL_VERBS.has(xm) ? xlCommand(xm, rest.slice(1)) : main([xm, ...rest.slice(1)]);
    }
    default:
      if (XL_VERBS.has(verb) || verb === 'daemon') return xlCommand(verb, rest);
      throw new UsageError(`unknown command '${verb}' (try pvbox --help)`);
  }
}

export async function cli(argv: string[]): Promise<never> {
  let code: number;
  try {
    code = await main(argv);
  } catch (e) {
    if (e instanceof PvboxError) process.stderr.write(`pvbox: ${e.message}\n`);
    else if (e instanceof TypeError && (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) process.stderr.write(`pvbox: ${e.message}\n`);
    else process.stderr.write(`pvbox: internal error: ${(e as Error).stack ?? e}\n`);
    code = 1;
  }
  process.exit(code);
}
