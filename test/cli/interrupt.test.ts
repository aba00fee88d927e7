import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHECK_WITH, commandTempDir, READ_ONLY_COMMANDS } from '../../bin/cli/interrupt';
import type { OperatorError } from '../../lambdas/shared/errors';

/** The pid of a process that has already exited. */
function deadPid(): number {
  return Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }));
}

describe('commandTempDir', () => {
  let parent: string;

  beforeEach(() => {
    parent = fs.mkdtempSync(path.join(os.tmpdir(), 'interrupt-test-'));
  });

  afterEach(() => {
    fs.rmSync(parent, { recursive: true, force: true });
  });

  it('removes the temp directory a killed run left (its process is gone), keeps a running one\'s and anything else, and says which', () => {
    // Arrange: what kill -9 leaves (a whole downloaded backup), a live run's directory, and a stranger
    const host = os.hostname().replace(/[^A-Za-z0-9.]/g, '_');
    const killed = path.join(parent, `atmr-dr-${host}-${deadPid()}-aB3dE9`);
    const running = path.join(parent, `atmr-dr-${host}-${process.pid}-Zz9yX8`);
    const stranger = path.join(parent, 'atmr-dr-resolve-Q8XV0l');
    for (const dir of [killed, running, stranger]) {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'atmr_backup.dump'), 'x'.repeat(1000));
    }

    // Act
    const temp = commandTempDir(parent);

    // Assert
    expect(temp.swept).toEqual([killed]);
    expect(fs.existsSync(killed)).toBe(false);
    expect(fs.existsSync(running) && fs.existsSync(stranger)).toBe(true);
    expect(path.dirname(temp.path)).toBe(parent);
    expect(path.basename(temp.path)).toMatch(new RegExp(`^atmr-dr-${host.replace(/\./g, '\\.')}-${process.pid}-`));
    temp.remove();
    expect(fs.existsSync(temp.path)).toBe(false);
  });

  it('refuses a TMPDIR that does not exist with one line naming it and the fix, exit 2', () => {
    let error: OperatorError | undefined;
    try {
      commandTempDir(path.join(parent, 'missing'));
    } catch (e) {
      error = e as OperatorError;
    }

    expect(error?.exitCode).toBe(2);
    expect(error?.message).toBe(
      `cannot create the download directory in TMPDIR ${path.join(parent, 'missing')} (ENOENT: no such directory): the backup is downloaded there; export TMPDIR=<an existing, writable directory with room for the backup> and retry; nothing was done`,
    );
  });
});

/** Command lines of the CLI's own tree (test/cli/commands-harness.ts, in a child process: commander is ESM-only). */
function cliCommands(...flags: string[]): string[] {
  const root = path.join(__dirname, '..', '..');
  const child = spawnSync(path.join(root, 'node_modules', '.bin', 'tsx'), ['test/cli/commands-harness.ts', ...flags], { cwd: root, encoding: 'utf8' });
  return JSON.parse(child.stdout) as string[];
}

describe('the stop line of a command that writes (stopWhileRunning)', () => {
  // A writing command stopped where it stands says what may have taken effect and where to check
  // it; the ones that take the signals over (backup, restore...) clean up and say so themselves.
  const all = cliCommands();
  const takingSignals = cliCommands('--taking-stop-signals');
  const writing = all.filter((command) => !READ_ONLY_COMMANDS.includes(command) && !takingSignals.includes(command));

  it('names where to check, for every command that writes and ends where it stands', () => {
    expect(writing.length).toBeGreaterThan(0);
    expect(writing.filter((command) => CHECK_WITH[command.split(' ')[0]] === undefined)).toEqual([]);
  });

  it('has no entry for a first word that no such command has', () => {
    const firstWords = new Set(writing.map((command) => command.split(' ')[0]));

    expect(Object.keys(CHECK_WITH).filter((word) => !firstWords.has(word))).toEqual([]);
  });
});
