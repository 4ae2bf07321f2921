/** How the bench prints figures: fixed digits, a dash for what was not measured, Markdown tables. */

export const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–');

/** CPU seconds as a share of the wall-clock seconds they were spent in. */
export const pct = (cpuS: number, wallS: number) => `${((cpuS / wallS) * 100).toFixed(0)}%`;

export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
