import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

interface Registered {
  readonly registered: string[];
  readonly loaded: string[];
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

  it('starts a restore without the config schemas, the CloudFormation client or the backup pipeline', () => {
    const result = registeredFor(['restore', 'latest', '--target-db', 'x']);

    // The harness sees what it claims to: the restore itself is loaded.
    expect(result.loaded).toContain(path.join('lambdas', 'restore', 'restore.ts'));
    // Loaded on demand only: the config when a name must come from cdk.json, CloudFormation when it
    // must come from a stack's outputs, the backup pipeline by restore-test.
    expect(result.loaded).not.toContain(path.join('lib', 'config.ts'));
    expect(result.loaded.filter((file) => file.includes('client-cloudformation'))).toEqual([]);
    expect(result.loaded).not.toContain(path.join('lambdas', 'backup', 'backup.ts'));
  });

  it('loads node-postgres only when a command connects (restore, backups verify): not at the start', () => {
    // Paths are relative to the repository: node_modules/pg/lib/....
    const pg = (loaded: string[]) => loaded.filter((file) => file.startsWith(path.join('node_modules', 'pg') + path.sep));

    const restore = registeredFor(['restore', 'latest', '--target-db', 'x']);
    const verify = registeredFor(['backups', 'verify', 'latest']);

    expect(restore.loaded).toContain(path.join('lambdas', 'shared', 'pg-connection.ts'));
    expect(pg(restore.loaded)).toEqual([]);
    expect(pg(verify.loaded)).toEqual([]);
  });

  it.each([[['--help']], [['--version']], [[]], [['make-coffee']], [['help', 'restore']]])('registers every command for %j', (args) => {
    const result = registeredFor(args);

    expect(result.registered).toEqual(result.all);
    expect(result.all).toEqual(expect.arrayContaining(['backup', 'backups', 'restore', 'restore-test', 'killswitch', 'rollback', 'db', 'scale', 'osrm', 'recover', 'incident']));
  });
});
