/** "1.5 KiB", "5.0 GiB", "512 B": sizes for operators (binary units). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** "1 table", "2 tables": a count with its noun, for the lines an operator reads. */
export function countOf(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** Seconds to the millisecond, for reports: 0.096 rather than 0.09633967699999997. */
export function roundSeconds(seconds: number): number {
  return Math.round(seconds * 1000) / 1000;
}
