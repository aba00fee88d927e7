import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

interface Registered {
  readonly registered: string[];
  readonly all: string[];
  readonly concerns: { table: string[]; registered: string[] }[];
}

/** The commands the CLI registers for a command line (test/cli/concerns-harness.ts, in a child process). */
function registeredFor(args: string[]): Registered {
  const run = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['test/cli/concerns-harness.ts', ...args], { cwd: ROOT, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`concerns harness failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as Registered;
}

jest.setTimeout(60_000);

describe('the CLI loads only the concern of the command it runs', () => {
  it('registers only the concern named on the command line, and each module registers exactly the commands the table names', () => {
    const result = registeredFor(['restore', 'latest', '--target-db', 'x']);

    expect(result.registered).toEqual(['restore', 'restore-test']);
    for (const concern of result.concerns) expect(concern.registered).toEqual(concern.table);
  });

  it.each([[['--help']], [['--version']], [[]], [['make-coffee']], [['help', 'restore']]])('registers every command for %j', (args) => {
    const result = registeredFor(args);

    expect(result.registered).toEqual(result.all);
    expect(result.all).toEqual(expect.arrayContaining(['backup', 'backups', 'restore', 'restore-test', 'killswitch', 'rollback', 'db', 'scale', 'osrm', 'recover', 'incident']));
  });
});
