import { formatBytes, formatSeconds } from '../../lambdas/shared/format';

/**
 * Progress on stderr for the long commands: phase lines, and a status such as a download meter
 * (bytes done of the total, percentage, rate). At a terminal the status rewrites one line;
 * elsewhere (`--progress` in a pipe or a log) each status is a line of its own. Silent unless
 * enabled: stdout stays data only.
 */
export interface Progress {
  /** A phase line. */
  line(text: string): void;
  /** `done` bytes of `total`, for `label`, at most a line a second off a terminal. */
  meter(label: string, done: number, total: number | undefined): void;
  /** A status that replaces the previous one; the caller paces it. */
  status(text: string): void;
  /** Ends a status line left open at a terminal, before the result or an error is printed. */
  end(): void;
}

export function stderrProgress(enabled: boolean, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = stream.isTTY === true;
  const started = performance.now();
  let statusShown = false;
  let lastPrinted = 0;
  const endStatus = (): void => {
    if (statusShown && tty) stream.write('\n');
    statusShown = false;
  };
  const status = (text: string): void => {
    if (tty) stream.write(`\r${text}\u001b[K`);
    else stream.write(`${text}\n`);
    statusShown = true;
  };
  return {
    line(text) {
      if (!enabled) return;
      endStatus();
      stream.write(`${text}\n`);
    },
    meter(label, done, total) {
      if (!enabled) return;
      const now = performance.now();
      const finished = total !== undefined && done >= total;
      if (!finished && now - lastPrinted < (tty ? 200 : 1000)) return;
      lastPrinted = now;
      status(formatMeter(label, done, total, (now - started) / 1000));
      if (finished) endStatus();
    },
    status(text) {
      if (enabled) status(text);
    },
    end: endStatus,
  };
}

/** "download: 12.0 MiB of 40.0 MiB (30%), 20.1 MiB/s"; without a total: "backup: 1.2 GiB, 48.0 MiB/s". */
export function formatMeter(label: string, done: number, total: number | undefined, seconds: number): string {
  const rate = `${formatBytes(seconds > 0 ? done / seconds : 0)}/s`;
  if (total === undefined || total <= 0) return `${label}: ${formatBytes(done)}, ${rate}`;
  return `${label}: ${formatBytes(done)} of ${formatBytes(total)} (${Math.min(100, Math.floor((100 * done) / total))}%), ${rate}`;
}

/**
 * "load: pg_restore into <staging>, 1 min 20 s": the load's phase and the time since it began, when
 * it begins, every `intervalMs` and when it ends (the function returned), from a timer: pg_restore
 * says nothing until it ends, and a read of the server to show more could itself wait.
 */
export function loadStatus(progress: Progress, now = (): number => performance.now(), intervalMs = 1000): (phase: string) => () => void {
  return (phase) => {
    const started = now();
    const show = (): void => progress.status(`load: ${phase}, ${formatSeconds(Math.floor((now() - started) / 1000))}`);
    show();
    const timer = setInterval(show, intervalMs);
    return () => {
      clearInterval(timer);
      show();
    };
  };
}
