// `pvbox daemon`: the management API (Unix socket, one JSON object per line each way) over the domain registry — list, create from an xl.cfg, and every per-domain verb forwarded to that domain's process. It holds no state of its own (the guests describe themselves in the run directory), so a restarted daemon sees every running guest again (the role of xapi/libvirtd beside xl's per-domain processes).
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostError } from '../errors.js';
import { runDir, socketIsLive } from './console-server.js';
import { controlRequest, type ControlReply, jsonLineRequest, serveJsonLines } from './control-server.js';
import { spawnDomainProcess } from './domain-process.js';
import { findDomain, listDomains, logDir } from './registry.js';
import { readXlConfigFile } from './xl-cfg.js';
import { domainSpecFromXl } from './xl-domain.js';

const PVBOX_BIN = fileURLToPath(new URL('../../bin/pvbox.js', import.meta.url));
/** Verbs the daemon passes to a domain's own process unchanged. */
const FORWARDED = new Set(['status', 'pause', 'unpause', 'shutdown', 'destroy', 'mem-set', 'mem-max', 'rename', 'block-attach', 'block-detach', 'network-attach', 'network-detach', 'save']);

export function daemonSocketPath(env: NodeJS.ProcessEnv = process.env): string { return join(runDir(env), 'pvbox.sock'); }
export function daemonPidPath(env: NodeJS.ProcessEnv = process.env): string { return join(runDir(env), 'pvbox-daemon.pid'); }

type Request = { op?: unknown; domain?: unknown; config?: unknown; overrides?: unknown; [k: string]: unknown };

/** One request of the management API. */
export async function handleApiRequest(req: Request): Promise<ControlReply> {
  try {
    if (req.op === 'list') return { ok: true, domains: listDomains() };
    if (req.op === 'create') {
      if (typeof req.config !== 'string') return { ok: false, error: 'create: config (a path to an xl.cfg) is required' };
      const overrides = Array.isArray(req.overrides) ? req.overrides.map(String) : [];
      const { spec, warnings } = await domainSpecFromXl(readXlConfigFile(req.config, overrides));
      const domid = await spawnDomainProcess(spec);
      return { ok: true, domid, warnings };
    }
    if (typeof req.op === 'string' && FORWARDED.has(req.op)) {
      if (typeof req.domain !== 'string' && typeof req.domain !== 'number') return { ok: false, error: `${req.op}: domain (a name or id) is required` };
      const d = findDomain(String(req.domain));
      const { domain: _domain, ...rest } = req;
      return await controlRequest(String(d.domid), { ...rest, op: req.op });
    }
    return { ok: false, error: `unknown request '${String(req.op)}'` };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/** Serve the API until SIGTERM/SIGINT (the guests keep running: they are not the daemon's children). */
export async function serveDaemon(path = daemonSocketPath()): Promise<number> {
  mkdirSync(runDir(), { recursive: true, mode: 0o755 });
  if (existsSync(path)) {
    if (await socketIsLive(path)) throw new HostError(`a pvbox daemon already answers on ${path}`);
    unlinkSync(path);
  }
  const server = createServer((s) => serveJsonLines(s, handleApiRequest));
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(path, () => resolve()); });
  chmodSync(path, 0o600);
  writeFileSync(daemonPidPath(), `${process.pid}\n`);
  process.stderr.write(`pvbox daemon: serving ${path}; ${listDomains().length} running domains found in ${runDir()}\n`);
  await new Promise<void>((resolve) => { process.once('SIGTERM', resolve); process.once('SIGINT', resolve); });
  server.close();
  for (const p of [path, daemonPidPath()]) { try { unlinkSync(p); } catch { /* gone */ } }
  return 0;
}

/** Start the daemon detached unless one answers already (the CLI's "on demand"); resolves when it serves. */
export async function ensureDaemon(path = daemonSocketPath()): Promise<void> {
  if (existsSync(path) && await socketIsLive(path)) return;
  mkdirSync(logDir(), { recursive: true, mode: 0o755 });
  const fd = openSync(join(logDir(), 'daemon.log'), 'a', 0o600);
  const child = spawn(process.execPath, [PVBOX_BIN, 'daemon', '--foreground'], { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  for (let i = 0; i < 200; i++) {
    if (existsSync(path) && await socketIsLive(path)) return;
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new HostError(`the pvbox daemon did not start (see ${join(logDir(), 'daemon.log')})`);
}

/** One request to the daemon; a daemon that is not running is a one-line error. */
export function daemonRequest(req: Request, path = daemonSocketPath(), timeoutMs = 120_000): Promise<ControlReply> {
  return jsonLineRequest(path, req, timeoutMs, {
    timeout: () => new HostError(`the pvbox daemon did not answer within ${timeoutMs / 1000} s`),
    malformed: () => new HostError('the pvbox daemon sent a malformed answer'),
    unreachable: (code) => new HostError(`the pvbox daemon is not running (${path}: ${code}); start it with 'pvbox daemon'`),
  });
}
