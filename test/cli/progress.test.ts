import { loadStatus, stderrProgress } from '../../bin/cli/progress';

/** A stream that records what is written, at a terminal or not. */
function recorder(isTTY: boolean): { stream: NodeJS.WriteStream; written: () => string } {
  let text = '';
  const stream = {
    isTTY,
    write: (chunk: string) => {
      text += chunk;
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { stream, written: () => text };
}

describe('stderrProgress', () => {
  it('at a terminal, a status rewrites one line and the phase line after it starts on a line of its own', () => {
    // Arrange
    const { stream, written } = recorder(true);
    const progress = stderrProgress(true, stream);

    // Act
    progress.status('backup: 1.0 MiB dumped');
    progress.status('backup: 2.0 MiB dumped');
    progress.line('upload: publishing the manifest');

    // Assert
    expect(written()).toBe('\rbackup: 1.0 MiB dumped\u001b[K\rbackup: 2.0 MiB dumped\u001b[K\nupload: publishing the manifest\n');
  });

  it('end() closes a status line left open at a terminal, once, so that the next output starts on its own line', () => {
    // Arrange
    const { stream, written } = recorder(true);
    const progress = stderrProgress(true, stream);
    progress.status('backup: 2.0 MiB dumped');

    // Act
    progress.end();
    progress.end();

    // Assert
    expect(written()).toBe('\rbackup: 2.0 MiB dumped\u001b[K\n');
  });

  it('off a terminal (--progress in a log) each status is a line, and disabled it writes nothing', () => {
    // Arrange
    const log = recorder(false);
    const quiet = recorder(true);

    // Act
    for (const progress of [stderrProgress(true, log.stream), stderrProgress(false, quiet.stream)]) {
      progress.status('backup: 1.0 MiB dumped');
      progress.line('upload: publishing the manifest');
      progress.end();
    }

    // Assert
    expect(log.written()).toBe('backup: 1.0 MiB dumped\nupload: publishing the manifest\n');
    expect(quiet.written()).toBe('');
  });
});

describe('loadStatus', () => {
  afterEach(() => jest.useRealTimers());

  it('shows the load\'s phase and the time since it began, every second from a timer, and once more when it ends; nothing after', () => {
    // Arrange: a clock and timers the test moves; the load begins at t = 50 s
    jest.useFakeTimers();
    const statuses: string[] = [];
    const progress = { line: () => undefined, meter: () => undefined, status: (text: string) => statuses.push(text), end: () => undefined };
    let now = 50_000;
    const onLoad = loadStatus(progress, () => now);

    // Act
    const ended = onLoad('pg_restore into shop_restore_1a2b3c4d_mx3a1b2c3d');
    for (let second = 0; second < 80; second += 1) {
      now += 1_000;
      jest.advanceTimersByTime(1_000);
    }
    now += 400;
    ended();
    now += 5_000;
    jest.advanceTimersByTime(5_000);

    // Assert
    expect(statuses[0]).toBe('load: pg_restore into shop_restore_1a2b3c4d_mx3a1b2c3d, 0 s');
    expect(statuses.slice(1, 3)).toEqual(['load: pg_restore into shop_restore_1a2b3c4d_mx3a1b2c3d, 1 s', 'load: pg_restore into shop_restore_1a2b3c4d_mx3a1b2c3d, 2 s']);
    expect(statuses).toHaveLength(1 + 80 + 1);
    expect(statuses.at(-1)).toBe('load: pg_restore into shop_restore_1a2b3c4d_mx3a1b2c3d, 1 min 20 s');
  });
});
