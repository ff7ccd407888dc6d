// Attaching to a running guest's console from another terminal (xenconsoled's pty + `xl console`): each pvbox run serves its console on a Unix socket in the run directory.
import { chmodSync, existsSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

/** Where pvbox keeps per-domain sockets: $PVBOX_RUNDIR, or /run/pvbox. */
export function runDir(env: NodeJS.ProcessEnv = process.env): string { return env.PVBOX_RUNDIR ?? '/run/pvbox'; }
export function consoleSocketPath(domid: number, name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(runDir(env), `console-${domid}-${name}`);
}

/** The console socket of a running domain, by name or domid. */
export function findConsoleSocket(target: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  let entries: string[];
  try { entries = readdirSync(runDir(env)); } catch { return undefined; }
  for (const e of entries) {
    const m = /^console-(\d+)-(.+)$/.exec(e);
    if (m && (m[2] === target || m[1] === target)) return join(runDir(env), e);
  }
  return undefined;
}

/** The domain side: every attached client sees the console output and may type into it. */
export class ConsoleServer {
  private readonly clients = new Set<Socket>();
  private constructor(readonly path: string, private readonly server: Server) {}

  static async listen(path: string, onInput: (bytes: Uint8Array) => void): Promise<ConsoleServer> {
    mkdirSync(join(path, '..'), { recursive: true, mode: 0o755 });
    if (existsSync(path)) unlinkSync(path); // a leftover of a pvbox that died: domids and names are unique while alive
    const server = createServer();
    const cs = new ConsoleServer(path, server);
    server.on('connection', (s) => {
      cs.clients.add(s);
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
