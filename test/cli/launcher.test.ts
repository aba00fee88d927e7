import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const LAUNCHER = path.join(ROOT, 'bin', 'atmr-dr.cjs');

jest.setTimeout(60_000);

// `npx atmr-dr` runs bin/atmr-dr.cjs: the CLI as one cached esbuild bundle, rebuilt when stale.
describe('bin/atmr-dr.cjs (the npx atmr-dr entry)', () => {
  let dir: string;
  let bundle: string;
  const run = (args: string[]) =>
    spawnSync(process.execPath, [LAUNCHER, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ATMR_DR_CLI_BUNDLE: bundle },
      encoding: 'utf8',
    });

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-launcher-'));
    bundle = path.join(dir, 'cache', 'atmr-dr.cjs');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('builds the bundle on first use and runs the same CLI as the sources', () => {
    const help = run(['--help']);

    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: atmr-dr/);
    expect(help.stdout).toMatch(/backup \[options\]/);
    expect(fs.existsSync(bundle)).toBe(true);
    const inputs = JSON.parse(fs.readFileSync(`${bundle}.inputs.json`, 'utf8')) as string[];
    expect(inputs).toContain('bin/atmr-dr.ts');
    expect(inputs).toContain('lambdas/backup/backup.ts');
  });

  it('passes exit codes and one-line errors through', () => {
    const bad = run(['backup', '--tier', 'yearly']);

    expect(bad.status).toBe(2);
    expect(bad.stderr.trim()).toBe('atmr-dr: invalid backup tier "yearly": use one of hourly, daily, weekly, monthly');
    expect(bad.stdout).toBe('');
  });

  it('reuses a fresh bundle, and rebuilds one older than a source file', () => {
    // Arrange: a fresh bundle
    run(['--help']);
    const fresh = fs.statSync(bundle).mtimeMs;

    // Act / Assert: fresh, so not rebuilt
    run(['--help']);
    expect(fs.statSync(bundle).mtimeMs).toBe(fresh);

    // Arrange: the bundle now predates its sources (as after editing a file)
    const past = new Date('2000-01-01T00:00:00Z');
    fs.utimesSync(bundle, past, past);

    // Act
    const rerun = run(['--help']);

    // Assert
    expect(rerun.status).toBe(0);
    expect(fs.statSync(bundle).mtimeMs).toBeGreaterThan(past.getTime());
  });

  it('fails with one line naming the fix when the bundle cannot be built', () => {
    // A cache path under a regular file cannot be created.
    const blocker = path.join(dir, 'not-a-directory');
    fs.writeFileSync(blocker, '');
    const broken = spawnSync(process.execPath, [LAUNCHER, '--help'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ATMR_DR_CLI_BUNDLE: path.join(blocker, 'atmr-dr.cjs') },
      encoding: 'utf8',
    });

    expect(broken.status).toBe(1);
    expect(broken.stderr.trim().split('\n')).toHaveLength(1);
    expect(broken.stderr).toMatch(/^atmr-dr: cannot build the CLI bundle \(.+\); run npm ci, or run npx tsx bin\/atmr-dr.ts$/m);
  });
});
