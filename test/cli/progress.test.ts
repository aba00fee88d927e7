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
  it('shows the staging database size and the seconds since the first size came in, not since the restore began', () => {
    // Arrange: a clock that the test moves; the load's first size arrives at t = 50 s
    const statuses: string[] = [];
    const progress = { line: () => undefined, meter: () => undefined, status: (text: string) => statuses.push(text), end: () => undefined };
    let now = 50_000;
    const onSize = loadStatus(progress, () => now);

    // Act
    onSize(1024 * 1024);
    now += 35_400;
    onSize(1.5 * 1024 * 1024 * 1024);

    // Assert
    expect(statuses).toEqual(['load: 1.0 MiB in the staging database, 0 s', 'load: 1.5 GiB in the staging database, 35 s']);
  });
});
