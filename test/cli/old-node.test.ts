import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The launcher (package.json "bin") run by a Node older than the project's: the system Node of this
 * machine (20), as an operator gets with `node bin/atmr-dr.cjs` or a shell whose first node is not
 * the project's own.
 */
const LAUNCHER = path.join(__dirname, '..', '..', 'bin', 'atmr-dr.cjs');

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
  it('prints one line naming the Node version and the fix, nothing else (no AWS SDK warning), and exits 2', () => {
    // Arrange: this test proves nothing without an older Node, so its absence fails it.
    const old = olderNode();
    if (old === undefined) throw new Error('no Node older than 22 on this machine (PATH, /usr/bin, /usr/local/bin): install one (apt-get install nodejs) to run this test');

    // Act: a command that loads the AWS SDK (the bucket lookup) when the launcher lets it run.
    const run = spawnSync(old.file, [LAUNCHER, 'backups', 'list'], {
      encoding: 'utf8',
      // Local only: a closed port answers the lookup of the deployed stacks.
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
    expect(run.stderr).toBe(`atmr-dr: Node ${old.version} is too old: use Node 22 or newer (npx atmr-dr runs the project's own Node 22)\n`);
    expect(run.stdout).toBe('');
    expect(run.status).toBe(2);
  });
});
