import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * The launcher (package.json "bin") run by a Node older than the project's: the system Node of this
 * machine (20), as an operator gets with `node bin/atmr-dr.cjs` or a shell whose first node is not
 * the project's own.
 */
const LAUNCHER = path.join(__dirname, '..', '..', 'bin', 'atmr-dr.cjs');

const NO_OLDER_NODE = 'no Node older than 22 on this machine (PATH, /usr/bin, /usr/local/bin): install one (apt-get install nodejs) to run this test';

/** The first node binary outside node_modules (on PATH, then the usual system places) whose major is below 22. */
function olderNode(): { file: string; version: string } | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/usr/local/bin', '/bin'];
  for (const dir of dirs.filter((d) => d !== '' && !d.includes('node_modules'))) {
    const file = path.join(dir, 'node');
    if (!fs.existsSync(file)) continue;
    const version = execFileSync(file, ['--version'], { encoding: 'utf8' }).trim();
    if (Number(/^v(\d+)\./.exec(version)?.[1]) < 22) return { file, version };
  }
  return undefined;
}

describe('the launcher on a Node older than 22', () => {
  it('runs the command: --help from another directory prints the usage, exit 0, nothing on stderr', () => {
    // Arrange: this test proves nothing without an older Node, so its absence fails it.
    const old = olderNode();
    if (old === undefined) throw new Error(NO_OLDER_NODE);

    // Act: the CLI as installed, run from outside the project
    const run = spawnSync(old.file, [LAUNCHER, '--help'], { encoding: 'utf8', cwd: os.tmpdir(), env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' } });

    // Assert
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^Usage: atmr-dr /);
    expect(run.status).toBe(0);
  });

  it("prints the command's one line without the AWS SDK's 9-line Node version warning", () => {
    // Arrange
    const old = olderNode();
    if (old === undefined) throw new Error(NO_OLDER_NODE);

    // Act: a command that loads the AWS SDK (the bucket lookup, which fails on a closed port)
    const run = spawnSync(old.file, [LAUNCHER, 'backups', 'list'], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        AWS_REGION: 'eu-west-3',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        AWS_ENDPOINT_URL_CLOUDFORMATION: 'http://127.0.0.1:9',
      },
    });

    // Assert
    expect(run.stderr).not.toMatch(/NodeVersionSupportWarning/);
    expect(run.stderr).toMatch(/^atmr-dr: [^\n]+\n$/);
    expect(run.stdout).toBe('');
    expect(run.status).not.toBe(0);
  });
});
