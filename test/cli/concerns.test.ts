import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { refusals } from './parse-refusals';

const ROOT = path.join(__dirname, '..', '..');

interface Registered {
  readonly registered: string[];
  readonly loaded: string[];
  /** With `run`: the modules evaluated once the command line ran. */
  readonly ran?: string[];
  readonly all: string[];
  readonly concerns: { table: string[]; registered: string[] }[];
}

/**
 * The commands the CLI registers for a command line (test/cli/concerns-harness.ts, in a child
 * process); with `run`, the harness also runs the command line in that environment (see `offline`).
 */
function registeredFor(args: string[], run?: NodeJS.ProcessEnv): Registered {
  const env = run ? { ...process.env, ...run, HARNESS_RUN: '1' } : process.env;
  const child = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['test/cli/concerns-harness.ts', ...args], { cwd: ROOT, encoding: 'utf8', env });
  if (child.status !== 0) throw new Error(`concerns harness failed: ${child.stderr}`);
  return JSON.parse(child.stdout) as Registered;
}

/** None of the runner's AWS or PG* settings (undefined drops them from the child's environment): command lines end before any network. */
function offline(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { BACKUP_BUCKET: undefined, AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined, AWS_PROFILE: undefined, PGHOST: undefined, PGDATABASE: undefined, ...extra };
}

jest.setTimeout(60_000);

describe('the CLI loads only the concern of the command it runs', () => {
  it('registers only the concern named on the command line, and each module registers exactly the commands the table names', () => {
    const result = registeredFor(['restore', 'latest', '--target-db', 'x']);

    expect(result.registered).toEqual(['restore', 'restore-test']);
    for (const concern of result.concerns) expect(concern.registered).toEqual(concern.table);
  });

  it('starts a restore without the config schemas, the CloudFormation client or the backup pipeline', () => {
    // Run until it stops at the missing PGHOST: the restore's own modules are loaded by then.
    const result = registeredFor(['restore', 'latest', '--target-db', 'x'], offline({ BACKUP_BUCKET: 'atmr-dr-backups' }));

    // The harness sees what it claims to: the restore's command module is loaded.
    expect(result.loaded).toContain(path.join('bin', 'cli', 'restore.ts'));
    expect(result.ran).toContain(path.join('lambdas', 'shared', 'pg-connection.ts'));
    // Loaded on demand only: the config when a name must come from cdk.json, CloudFormation when it
    // must come from a stack's outputs, the backup pipeline by restore-test.
    expect(result.loaded).not.toContain(path.join('lib', 'config.ts'));
    expect(result.loaded.filter((file) => file.includes('client-cloudformation'))).toEqual([]);
    expect(result.loaded).not.toContain(path.join('lambdas', 'backup', 'backup.ts'));
    expect(result.ran).not.toContain(path.join('lib', 'config.ts'));
    expect(result.ran!.filter((file) => file.includes('client-cloudformation'))).toEqual([]);
    expect(result.ran).not.toContain(path.join('lambdas', 'backup', 'backup.ts'));
  });

  it.each([[['--version']], [['-V']]])('answers %j without loading any concern module', (args) => {
    const result = registeredFor(args, offline());

    expect(result.registered).toEqual([]);
    // bin/cli/interrupt.ts is the entry point's own (its start-up signal handling), not a concern's.
    expect(result.loaded.filter((file) => /^bin\/cli\/(backup|backups|restore|killswitch|rollback|detection|recover|incident)\.ts$/.test(file))).toEqual([]);
  });

  it.each([[['restore']], [['restore', '--help']], [['restore-test', '--help']], [['backup']], [['backup', '--help']], [['backups', 'list', '--help']], [['backups', 'verify']]])(
    'answers %j (usage error or help) without evaluating the S3 SDK, zod or the restore and backup code',
    (args) => {
      const result = registeredFor(args, offline());
      const heavy = (files: string[]) =>
        files.filter((file) => /node_modules\/(@aws-sdk\/client-s3|zod)\//.test(file) || /^lambdas\/(restore\/(restore|catalog|verify)|backup\/backup|shared\/(aws|manifest|tiers|pg-connection))\.ts$/.test(file));

      // The harness sees what it claims to: the command's module is loaded.
      expect(result.loaded.some((file) => file.startsWith(path.join('bin', 'cli')))).toBe(true);
      expect(heavy(result.ran!)).toEqual([]);
    },
  );

  it('loads node-postgres only when a command connects (restore, backups verify): not at the start', () => {
    // Paths are relative to the repository: node_modules/pg/lib/....
    const pg = (loaded: string[]) => loaded.filter((file) => file.startsWith(path.join('node_modules', 'pg') + path.sep));

    // Run until it stops at the missing PGHOST: the connection's module is loaded by then, not pg.
    const restore = registeredFor(['restore', 'latest', '--target-db', 'x'], offline({ BACKUP_BUCKET: 'atmr-dr-backups' }));
    const verify = registeredFor(['backups', 'verify', 'latest']);

    expect(restore.ran).toContain(path.join('lambdas', 'shared', 'pg-connection.ts'));
    expect(pg(restore.ran!)).toEqual([]);
    expect(pg(verify.loaded)).toEqual([]);
  });

  it.each([[['--help']], [[]], [['make-coffee']], [['help', 'restore']]])('registers every command for %j', (args) => {
    const result = registeredFor(args);

    expect(result.registered).toEqual(result.all);
    expect(result.all).toEqual(expect.arrayContaining(['backup', 'backups', 'restore', 'restore-test', 'killswitch', 'rollback', 'db', 'scale', 'osrm', 'recover', 'incident']));
  });

  it('points `backup <word>` at `backups <word>` for every subcommand backups declares, one added to it too', () => {
    // A new subcommand of backups, declared the way bin/cli/backups.ts declares list and verify.
    const lines = refusals([['backup', 'list'], ['backup', 'verify'], ['backup', 'prune'], ['backup', 'frob']], { HARNESS_NEW_BACKUPS_SUBCOMMAND: 'prune' });

    expect(lines).toEqual([
      'backup takes a new backup and has no subcommand "list": npx --no atmr-dr backups list (see npx --no atmr-dr backups --help)',
      'backup takes a new backup and has no subcommand "verify": npx --no atmr-dr backups verify (see npx --no atmr-dr backups --help)',
      'backup takes a new backup and has no subcommand "prune": npx --no atmr-dr backups prune (see npx --no atmr-dr backups --help)',
      "too many arguments for 'backup'. Expected 0 arguments but got 1: frob. (see npx --no atmr-dr backup --help)",
    ]);
  });
});
