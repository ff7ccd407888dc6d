// Progress lines on stderr for slow image-building steps: a rewriting bar on a TTY, plain lines otherwise.

export interface ProgressTask {
  /** Reports `done` out of `total` units (bytes, files, ...); total 0 means unknown. */
  update(done: number, total?: number): void;
  /** Finishes the task line, optionally with a short note (e.g. a size). */
  end(note?: string): void;
  /** Finishes the task line with a failure note. */
  fail(note?: string): void;
}

interface Sink {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const BAR_WIDTH = 24;

function fmtBytes(n: number): string {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(0)} KiB`;
  return `${n} B`;
}

function fmtSecs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Prints numbered steps ("pvbox: [2/5] downloading ...") to stderr. On a TTY
 * the current step's line is rewritten in place with a bar; elsewhere each
 * step prints one line when it starts and one when it ends. A quiet reporter
 * prints nothing.
 */
export class Progress {
  private step = 0;
  private readonly tty: boolean;

  constructor(
    private readonly quiet: boolean,
    private readonly totalSteps = 0,
    private readonly sink: Sink = process.stderr,
    private readonly prefix = 'pvbox: ',
  ) {
    this.tty = !!sink.isTTY;
  }

  /** A one-off informational line (not a numbered step). */
  note(text: string): void {
    if (!this.quiet) this.sink.write(`${this.prefix}${text}\n`);
  }

  /** Counts a numbered step that needs no work (e.g. a file already cached), in one line. */
  skip(label: string): void {
    this.step++;
    if (!this.quiet) this.sink.write(`${this.prefix}${this.counter()}${label}\n`);
  }

  private counter(): string {
    return this.totalSteps > 0 ? `[${Math.min(this.step, this.totalSteps)}/${this.totalSteps}] ` : '';
  }

  /**
   * Starts a step; numbered unless `numbered` is false. `unit` 'bytes'
   * formats counts as sizes.
   */
  task(label: string, unit: 'bytes' | 'items' = 'bytes', numbered = true): ProgressTask {
    if (numbered) this.step++;
    const counter = numbered ? this.counter() : '';
    const head = `${this.prefix}${counter}${label}`;
    const started = Date.now();
    const quiet = this.quiet;
    const tty = this.tty;
    const sink = this.sink;
    let lastDraw = 0;
    let lastPct = -1;
    let closed = false;
    const fmt = (n: number) => (unit === 'bytes' ? fmtBytes(n) : String(n));
    const draw = (line: string) => {
      const cols = sink.columns && sink.columns > 20 ? sink.columns - 1 : 0;
      sink.write(`\r\x1b[K${cols && line.length > cols ? line.slice(0, cols) : line}`);
    };
    if (!quiet) {
      if (tty) draw(`${head} ...`);
      else sink.write(`${head} ...\n`);
    }
    const finish = (status: string) => {
      if (closed || quiet) {
        closed = true;
        return;
      }
      closed = true;
      const line = `${head} ${status} (${fmtSecs(Date.now() - started)})`;
      if (tty) {
        draw(line);
        sink.write('\n');
      } else {
        sink.write(`${line}\n`);
      }
    };
    return {
      update(done: number, total = 0) {
        if (quiet || closed) return;
        const now = Date.now();
        if (tty) {
          if (now - lastDraw < 80 && (total === 0 || done < total)) return;
          lastDraw = now;
          if (total > 0) {
            const frac = Math.max(0, Math.min(1, done / total));
            const fill = Math.round(frac * BAR_WIDTH);
            draw(`${head} [${'#'.repeat(fill)}${' '.repeat(BAR_WIDTH - fill)}] ${String(Math.floor(frac * 100)).padStart(3)}% ${fmt(done)}/${fmt(total)}`);
          } else {
            draw(`${head} ... ${fmt(done)}`);
          }
        } else if (total > 0) {
          // Plain output: one line per quarter, so logs stay short.
          const pct = Math.floor((Math.max(0, Math.min(1, done / total)) * 100) / 25) * 25;
          if (pct > lastPct && pct > 0 && pct < 100 && now - started >= 1000) {
            lastPct = pct;
            sink.write(`${head} ${pct}% ${fmt(done)}/${fmt(total)}\n`);
          }
        }
      },
      end(note?: string) {
        finish(note ? `done, ${note}` : 'done');
      },
      fail(note?: string) {
        finish(note ? `FAILED: ${note}` : 'FAILED');
      },
    };
  }
}

export { fmtBytes };
