import { formatBytes } from '../../lambdas/shared/format';

/**
 * Progress on stderr for the long commands: phase lines, and a download meter (bytes done of the
 * total, percentage, rate). At a terminal the meter rewrites one line; elsewhere (`--progress` in
 * a pipe or a log) it prints a line a second. Silent unless enabled: stdout stays data only.
 */
export interface Progress {
  /** A phase line. */
  line(text: string): void;
  /** `done` bytes of `total`, for `label`. */
  meter(label: string, done: number, total: number | undefined): void;
}

export function stderrProgress(enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = stream.isTTY === true;
  const started = performance.now();
  let meterShown = false;
  let lastPrinted = 0;
  const endMeter = (): void => {
    if (meterShown && tty) stream.write('\n');
    meterShown = false;
  };
  return {
    line(text) {
      if (!enabled) return;
      endMeter();
      stream.write(`${text}\n`);
    },
    meter(label, done, total) {
      if (!enabled) return;
      const now = performance.now();
      const finished = total !== undefined && done >= total;
      if (!finished && now - lastPrinted < (tty ? 200 : 1000)) return;
      lastPrinted = now;
      const text = formatMeter(label, done, total, (now - started) / 1000);
      if (tty) stream.write(`\r${text}\u001b[K`);
      else stream.write(`${text}\n`);
      meterShown = true;
      if (finished) endMeter();
    },
  };
}

/** "download: 12.0 MiB of 40.0 MiB (30%), 20.1 MiB/s"; without a total: "backup: 1.2 GiB, 48.0 MiB/s". */
export function formatMeter(label: string, done: number, total: number | undefined, seconds: number): string {
  const rate = `${formatBytes(seconds > 0 ? done / seconds : 0)}/s`;
  if (total === undefined || total <= 0) return `${label}: ${formatBytes(done)}, ${rate}`;
  return `${label}: ${formatBytes(done)} of ${formatBytes(total)} (${Math.min(100, Math.floor((100 * done) / total))}%), ${rate}`;
}
