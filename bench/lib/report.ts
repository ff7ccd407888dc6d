// Output helpers the bench scripts share: a child's exit status in words and a column table.
import type { ExitInfo } from './console-process.js';

export function statusText(e: ExitInfo | undefined): string {
  if (!e) return 'still running';
  if (e.signal) return `killed by ${e.signal}`;
  return `exit status ${e.code}`;
}

/**
 * Lays out rows as columns: the first column left-aligned, the others right-aligned. A row with
 * one cell is a heading: printed as it is, not counted in the widths.
 */
export function table(rows: string[][], indent = '  '): string {
  const widths: number[] = [];
  for (const r of rows) if (r.length > 1) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, [...c].length); });
  return rows
    .map((r) => indent + (r.length === 1 ? r[0]! : r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ').trimEnd()))
    .join('\n');
}
