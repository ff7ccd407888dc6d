// A child process whose stdout is a guest console: records output with arrival times, waits for patterns, types input, and is killed when the bench exits or is interrupted.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Match {
  match: RegExpExecArray;
  /** Offset in `out` just after the match. */
  end: number;
  /** performance.now() when the chunk completing the match arrived. */
  at: number;
}

const live = new Set<ConsoleProcess>();
let handlersInstalled = false;

/** Kills every live child at once (SIGKILL); used on exit and on signals. */
export function killAll(): void {
  for (const p of live) p.killNow();
}

/** Kills live children and exits on SIGINT, SIGTERM and SIGHUP, and kills them at exit. Idempotent. */
export function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAll);
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.on(sig, () => {
      const n = live.size;
      killAll();
      process.stderr.write(`\n${sig}: stopped${n ? ` (killed ${n} child process${n === 1 ? '' : 'es'})` : ''}\n`);
      process.exit(code);
    });
  }
}

export class ConsoleProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** performance.now() just before spawn(). */
  readonly t0: number;
  out = '';
  err = '';
  exitInfo: ExitInfo | undefined;
  /** performance.now() at exit. */
  exitAt: number | undefined;
  readonly exited: Promise<ExitInfo>;
  private waiters: { re: RegExp; from: number; done: (m: Match | undefined) => void }[] = [];

  constructor(readonly command: string, readonly args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
    installHandlers();
    this.t0 = performance.now();
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: opts.cwd, env: opts.env });
    live.add(this);
    this.child.stdout.setEncoding('latin1');
    this.child.stderr.setEncoding('utf8');
    this.child.stdin.on('error', () => {}); // EPIPE once the child is gone
    this.child.stdout.on('data', (s: string) => { this.out += s; this.check(performance.now()); });
    this.child.stderr.on('data', (s: string) => { this.err += s; });
    this.exited = new Promise((resolve) => {
      let spawnError: Error | undefined;
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exitInfo) return;
        this.exitAt = performance.now();
        this.exitInfo = { code: spawnError && code === null ? 127 : code, signal };
        live.delete(this);
        for (const w of this.waiters.splice(0)) w.done(undefined);
        resolve(this.exitInfo);
      };
      this.child.on('error', (e) => {
        spawnError = e;
        this.err += `${command}: ${e.message}\n`;
        if (this.child.pid === undefined) finish(null, null); // never started
      });
      // 'close' comes after all output has been read, so a READY line written just before exit is not lost.
      this.child.on('close', finish);
    });
  }

  get running(): boolean { return this.exitInfo === undefined; }

  private check(now: number): void {
    this.waiters = this.waiters.filter((w) => {
      w.re.lastIndex = w.from;
      const m = w.re.exec(this.out);
      if (!m) return true;
      w.done({ match: m, end: m.index + m[0].length, at: now });
      return false;
    });
  }

  /** Resolves when `re` (made global/sticky-free; searched from `from`) matches the console output, or undefined on timeout or exit. */
  waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<Match | undefined> {
    const g = new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`);
    g.lastIndex = from;
    const m = g.exec(this.out);
    if (m) return Promise.resolve({ match: m, end: m.index + m[0].length, at: performance.now() });
    if (!this.running) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.waiters = this.waiters.filter((w) => w !== waiter); resolve(undefined); }, timeoutMs);
      const waiter = { re: g, from, done: (r: Match | undefined) => { clearTimeout(timer); resolve(r); } };
      this.waiters.push(waiter);
    });
  }

  /** Resolves with the exit status, or undefined if the child is still running after `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<ExitInfo | undefined> {
    if (this.exitInfo) return this.exitInfo;
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([this.exited, new Promise<undefined>((res) => { timer = setTimeout(() => res(undefined), timeoutMs); })]);
    clearTimeout(timer);
    return r;
  }

  type(text: string): void {
    if (this.running && this.child.stdin.writable) this.child.stdin.write(text);
  }

  killNow(): void {
    if (this.running) this.child.kill('SIGKILL');
  }

  /** SIGTERM, then SIGKILL if it has not gone after `graceMs`. */
  async stop(graceMs = 3000): Promise<ExitInfo> {
    if (!this.running) return this.exitInfo!;
    this.child.kill('SIGTERM');
    if (await this.waitExit(graceMs)) return this.exitInfo!;
    this.child.kill('SIGKILL');
    return this.exited;
  }

  /** The last `n` characters of console output and stderr, for error reports (control sequences made visible). */
  tail(n = 2000): string {
    const clean = (s: string) => s.slice(-n).replace(/\r/g, '').replace(/\x1b/g, '^[');
    return `--- console (last ${n} chars) ---\n${clean(this.out)}\n--- stderr (last ${n} chars) ---\n${clean(this.err)}`;
  }
}
