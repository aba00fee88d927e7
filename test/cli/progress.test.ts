import { stderrProgress } from '../../bin/cli/progress';

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
