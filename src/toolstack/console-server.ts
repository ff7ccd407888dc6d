// Attaching to a running guest's console from another terminal (xenconsoled's pty + `xl console`): each pvbox run serves its console on a Unix socket in the run directory.
import { chmodSync, existsSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

/** Where pvbox keeps per-domain sockets: $PVBOX_RUNDIR, or /run/pvbox. */
export function runDir(env: NodeJS.ProcessEnv = process.env): string { return env.PVBOX_RUNDIR ?? '/run/pvbox'; }
/** console-<domid>-<name> for the primary console, console-<domid>-<name>@<n> for device/console/n. */
export function consoleSocketPath(domid: number, name: string, num = 0, env: NodeJS.ProcessEnv = process.env): string {
  return join(runDir(env), `console-${domid}-${name}${num ? `@${num}` : ''}`);
}

/** The console socket of a running domain, by name or domid. */
export function findConsoleSocket(target: string, num = 0, env: NodeJS.ProcessEnv = process.env): string | undefined {
  let entries: string[];
  try { entries = readdirSync(runDir(env)); } catch { return undefined; }
  for (const e of entries) {
    const m = /^console-(\d+)-([^@]+)(?:@(\d+))?$/.exec(e);
    if (m && (m[2] === target || m[1] === target) && Number(m[3] ?? 0) === num) return join(runDir(env), e);
  }
  return undefined;
}

/** Whether something still answers on a socket path (a live domain, not a leftover). */
export function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** The domain side: every attached client sees the console output and may type into it. */
export class ConsoleServer {
  private readonly clients = new Set<Socket>();
  private constructor(readonly path: string, private readonly server: Server) {}

  /** `replay`: what a new client is shown first (a detached domain's recent output, as xenconsoled's buffer). */
  static async listen(path: string, onInput: (bytes: Uint8Array) => void, replay?: () => Uint8Array): Promise<ConsoleServer> {
    mkdirSync(join(path, '..'), { recursive: true, mode: 0o755 });
    if (existsSync(path)) unlinkSync(path); // a leftover of a pvbox that died (live ones were refused by name)
    const server = createServer();
    const cs = new ConsoleServer(path, server);
    server.on('connection', (s) => {
      cs.clients.add(s);
      const recent = replay?.();
      if (recent?.length) s.write(recent);
      s.on('data', (b) => onInput(b));
      s.on('close', () => cs.clients.delete(s));
      s.on('error', () => cs.clients.delete(s));
    });
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(path, () => resolve()); });
    chmodSync(path, 0o600);
    return cs;
  }

  broadcast(bytes: Uint8Array): void {
    for (const c of this.clients) {
      // A client that does not read is dropped rather than buffered without bound.
      if (c.writableLength > 1 << 20) { c.destroy(); continue; }
      c.write(bytes);
    }
  }

  close(): void {
    for (const c of this.clients) c.end();
    this.server.close();
    try { unlinkSync(this.path); } catch { /* gone */ }
  }
}
