// Each domain process answers management requests (block-attach, block-detach…) on a Unix socket in the run directory, one JSON object per line each way: the per-domain half of what xl asks libxl to do.
import { chmodSync, existsSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { HostError, UsageError } from '../errors.js';
import { runDir } from './console-server.js';

export type ControlRequest = { op: string; [k: string]: unknown };
export type ControlReply = { ok: true; [k: string]: unknown } | { ok: false; error: string };

const MAX_LINE = 64 * 1024;

export function controlSocketPath(domid: number, name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(runDir(env), `control-${domid}-${name}`);
}

/** The control socket of a running domain, by name or domid. */
export function findControlSocket(target: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  let entries: string[];
  try { entries = readdirSync(runDir(env)); } catch { return undefined; }
  for (const e of entries) {
    const m = /^control-(\d+)-(.+)$/.exec(e);
    if (m && (m[2] === target || m[1] === target)) return join(runDir(env), e);
  }
  return undefined;
}

/**
 * One JSON object per line each way on a stream socket: each request object with a string `op`
 * is answered, in order of completion, by what `handle` resolves to (or its error as
 * {ok:false}). Malformed lines and over-long requests get an error line, never a crash.
 */
export function serveJsonLines(s: Socket, handle: (req: ControlRequest) => Promise<object>): void {
  let buf = '';
  s.setEncoding('utf8');
  s.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_LINE) { s.end(`${JSON.stringify({ ok: false, error: 'request too long' })}\n`); return; }
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let req: ControlRequest;
      try {
        req = JSON.parse(line);
        if (typeof req !== 'object' || req === null || typeof req.op !== 'string') throw new Error('no op');
      } catch { s.write(`${JSON.stringify({ ok: false, error: 'malformed request' })}\n`); continue; }
      handle(req).then((r) => { if (!s.destroyed) s.write(`${JSON.stringify(r)}\n`); },
        (e) => { if (!s.destroyed) s.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`); });
    }
  });
  s.on('error', () => {});
}

export class ControlServer {
  private constructor(readonly path: string, private readonly server: Server) {}

  /** Serve `handle` on `path` (root only: the socket is 0600). */
  static async listen(path: string, handle: (req: ControlRequest) => Promise<ControlReply>): Promise<ControlServer> {
    mkdirSync(join(path, '..'), { recursive: true, mode: 0o755 });
    if (existsSync(path)) unlinkSync(path); // a leftover of a pvbox that died
    const server = createServer((s) => serveJsonLines(s, handle));
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(path, () => resolve()); });
    chmodSync(path, 0o600);
    return new ControlServer(path, server);
  }

  close(): void {
    this.server.close();
    try { unlinkSync(this.path); } catch { /* gone */ }
  }
}

/** One JSON request on a JSON-lines socket and its one-line answer; the errors name who did not answer. */
export function jsonLineRequest(path: string, req: object, timeoutMs: number,
  errors: { timeout: () => Error; malformed: () => Error; unreachable: (code: string) => Error }): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); reject(errors.timeout()); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`${JSON.stringify(req)}\n`));
    s.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      s.end();
      try { resolve(JSON.parse(buf.slice(0, nl))); } catch { reject(errors.malformed()); }
    });
    s.on('error', (e) => { clearTimeout(timer); reject(errors.unreachable((e as NodeJS.ErrnoException).code ?? e.message)); });
  });
}

/** Send one request to a running domain (by name or id) and wait for its answer. */
export function controlRequest(target: string, req: ControlRequest, timeoutMs = 60_000): Promise<ControlReply> {
  const path = findControlSocket(target);
  if (!path) return Promise.reject(new UsageError(`no running domain '${target}'`));
  return jsonLineRequest(path, req, timeoutMs, {
    timeout: () => new HostError(`domain '${target}' did not answer within ${timeoutMs / 1000} s`),
    malformed: () => new HostError(`domain '${target}' sent a malformed answer`),
    unreachable: (code) => new UsageError(`no running domain '${target}' (${code})`),
  });
}
