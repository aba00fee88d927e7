/**
 * npx tsx bench/cli-start.ts
 *
 * Start time of the operator CLI (bin/atmr-dr.cjs running the bundle, as `npx atmr-dr` runs it) on
 * the commands of the worst day, against `node -e 0` (a bare Node start) side by side, interleaved,
 * CLI_START_RUNS runs of each (default 15) after one warm-up run that fills V8's compile cache:
 *   - offline cases that load a command's modules and end with one line, no network: a missing
 *     argument, the command's help, a missing setting;
 *   - a real `restore` of a tiny database (a local PostgreSQL cluster and s3rver), whose
 *     "process start and exit" (CLI wall time - the restore's own RTO clock) is the CLI's fixed
 *     cost in every restore.
 * CLI_START_BASELINE=<git ref> also builds that commit's bundle (git archive into a temp
 * directory, this checkout's node_modules) and times it in the same rounds: before/after on the
 * same machine under the same load. The current bundle is rebuilt first (`npm run build`).
 * CLI_START_ONLY=<regular expression> times only the cases whose name matches (e.g. "real").
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runBackup } from '../lambdas/backup/backup';
import { createS3Client } from '../lambdas/shared/aws';
import { operatorEnv } from '../test/support/operator-env';
import { psql, startPostgres, stopPostgres } from '../test/support/postgres';
import { startLocalS3Process } from '../test/support/s3';

const ROOT = path.join(__dirname, '..');
const RUNS = Number(process.env.CLI_START_RUNS ?? 15);
const BASELINE = process.env.CLI_START_BASELINE;
/** Only the cases whose name matches this regular expression (e.g. "real" for the restore alone). */
const ONLY = new RegExp(process.env.CLI_START_ONLY ?? '');

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time from spawn to exit. */
  readonly seconds: number;
  /** User + system CPU time of the child (GNU time), which other work on a shared machine disturbs less than the wall time. */
  readonly cpuSeconds: number;
}

/** GNU time writes the child's CPU time here; the child's own stderr stays its own. */
const TIME_FILE = path.join(os.tmpdir(), `atmr-dr-bench-cli-start-${process.pid}.time`);

function runChild(args: string[], env: NodeJS.ProcessEnv, cwd = ROOT): Promise<Run> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn('/usr/bin/time', ['-f', '%U %S', '-o', TIME_FILE, process.execPath, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - start) / 1000;
      const [user, system] = fs.readFileSync(TIME_FILE, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
      resolve({ code, stdout, stderr, seconds, cpuSeconds: user + system });
    });
  });
}

/** A CLI build to time: its launcher (bin/atmr-dr.cjs next to its dist/). */
interface Build {
  readonly name: string;
  readonly launcher: string;
}

/** The bundle of `ref`, built apart from this checkout (same node_modules, same esbuild command). */
function buildBaseline(ref: string, dir: string): Build {
  const sha = execFileSync('git', ['rev-parse', '--short', ref], { cwd: ROOT, encoding: 'utf8' }).trim();
  execFileSync('sh', ['-c', `git archive ${sha} bin lambdas lib package.json cdk.json tsconfig.json | tar -x -C "${dir}"`], { cwd: ROOT });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  const script = (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { scripts: { build: string } }).scripts.build;
  execFileSync('sh', ['-c', script.replace(/^esbuild /, `"${path.join(ROOT, 'node_modules', '.bin', 'esbuild')}" `)], { cwd: dir, stdio: 'inherit' });
  return { name: `baseline ${sha}`, launcher: path.join(dir, 'bin', 'atmr-dr.cjs') };
}

interface Case {
  readonly name: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** The exit code and the start of the one line or the output the case must end with: a case that fails otherwise times nothing. */
  readonly expect: { readonly code: number; readonly output: RegExp };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const line = (row: string[]): string => `| ${row.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  return [line(rows[0]), line(widths.map((w) => '-'.repeat(w))), ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-bench-cli-start-'));
  const cluster = await startPostgres();
  const s3Server = await startLocalS3Process('atmr-dr-bench-cli-start');
  try {
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
    const builds: Build[] = [{ name: 'current', launcher: path.join(ROOT, 'bin', 'atmr-dr.cjs') }];
    if (BASELINE) builds.unshift(buildBaseline(BASELINE, fs.mkdtempSync(path.join(work, 'baseline-'))));

    // A tiny database and its backup in the local bucket, for the real restore.
    psql(cluster, 'postgres', 'CREATE DATABASE tiny');
    psql(cluster, 'tiny', 'CREATE TABLE booking (id int PRIMARY KEY, at timestamptz NOT NULL); INSERT INTO booking SELECT i, now() FROM generate_series(1, 1000) i;');
    const backup = await runBackup(
      { s3: createS3Client(s3Server.env), bucket: s3Server.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: 'tiny' } },
      { tier: 'daily', formats: ['custom'] },
    );

    // No bucket, no database, no credentials: each offline case stops at its first missing piece.
    // (Not "no region": the CLI then takes cdk.json's, and would look the bucket up in AWS.)
    const offline = operatorEnv({ AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_CONFIG_FILE: '/nonexistent', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent' });
    const withBucket = operatorEnv({ BACKUP_BUCKET: 'atmr-dr-backups' });
    const online = operatorEnv({ ...s3Server.env, ...cluster.env });
    const allCases: Case[] = [
      { name: 'restore (no argument: usage line)', args: ['restore'], env: offline, expect: { code: 2, output: /^atmr-dr: restore needs the backup/ } },
      { name: 'restore --help', args: ['restore', '--help'], env: offline, expect: { code: 0, output: /^Usage: atmr-dr restore/ } },
      { name: 'restore latest --target-db x (no PGHOST)', args: ['restore', 'latest', '--target-db', 'x'], env: withBucket, expect: { code: 2, output: /^atmr-dr: no database host/ } },
      { name: 'restore-test (no PGHOST)', args: ['restore-test'], env: withBucket, expect: { code: 2, output: /^atmr-dr: no database host/ } },
      { name: 'backup --help', args: ['backup', '--help'], env: offline, expect: { code: 0, output: /^Usage: atmr-dr backup/ } },
      { name: 'backup (no --tier)', args: ['backup'], env: offline, expect: { code: 2, output: /^atmr-dr: backup: required option not given: --tier/ } },
      { name: 'backups list (no bucket, no credentials)', args: ['backups', 'list'], env: offline, expect: { code: 2, output: /^atmr-dr: no AWS credentials found; .*--bucket NAME or BACKUP_BUCKET/ } },
      { name: 'backups list (local bucket)', args: ['backups', 'list'], env: online, expect: { code: 0, output: /^MANIFEST / } },
      { name: '--version', args: ['--version'], env: offline, expect: { code: 0, output: /^\d+\.\d+\.\d+/ } },
      {
        name: "restore <tiny backup> --target-db restored --json (real)",
        args: ['restore', backup.manifestKey, '--target-db', 'restored', '--json'],
        env: online,
        expect: { code: 0, output: /^\{/ },
      },
    ];
    const cases = allCases.filter((c) => ONLY.test(c.name));
    const realRestore = cases.findIndex((c) => c.name.includes('(real)'));

    const reference: Run[] = [];
    const runs = builds.map(() => cases.map((): Run[] => []));
    const runCase = async (b: number, c: number): Promise<Run> => {
      const run = await runChild([builds[b].launcher, ...cases[c].args], cases[c].env);
      const output = run.stdout || run.stderr;
      if (run.code !== cases[c].expect.code || !cases[c].expect.output.test(output)) {
        throw new Error(`${builds[b].name}: ${cases[c].name}: exit ${run.code}, ${JSON.stringify(output.slice(0, 300))}`);
      }
      if (c === realRestore) psql(cluster, 'postgres', 'DROP DATABASE restored');
      return run;
    };
    // Warm-up: V8's compile cache is filled by the first run of each build.
    for (let b = 0; b < builds.length; b += 1) for (let c = 0; c < cases.length; c += 1) await runCase(b, c);
    for (let round = 1; round <= RUNS; round += 1) {
      process.stderr.write(`\rround ${round}/${RUNS}`);
      reference.push(await runChild(['-e', '0'], offline));
      for (let c = 0; c < cases.length; c += 1) {
        // Alternate the builds' order so that neither always runs on a warmer or busier machine.
        const order = round % 2 === 0 ? builds.map((_, i) => i) : builds.map((_, i) => builds.length - 1 - i);
        for (const b of order) runs[b][c].push(await runCase(b, c));
      }
    }
    process.stderr.write('\n');

    const ms = (s: number): string => (s * 1000).toFixed(0);
    const refWall = median(reference.map((r) => r.seconds));
    const header = ['command', ...builds.flatMap((b) => [`${b.name}: wall median ms`, 'wall min ms', 'CPU median ms', 'wall / node -e 0'])];
    if (builds.length === 2) header.push('current / baseline: wall median', 'CPU median');
    const rows: string[][] = [header];
    const pushRow = (name: string, series: { wall: number[]; cpu: number[] }[]): void => {
      const row = [name, ...series.flatMap((s) => [ms(median(s.wall)), ms(Math.min(...s.wall)), s.cpu.length ? ms(median(s.cpu)) : '-', (median(s.wall) / refWall).toFixed(2)])];
      if (series.length === 2) row.push((median(series[1].wall) / median(series[0].wall)).toFixed(2), series[0].cpu.length ? (median(series[1].cpu) / median(series[0].cpu)).toFixed(2) : '-');
      rows.push(row);
    };
    const ofRuns = (list: Run[]) => ({ wall: list.map((r) => r.seconds), cpu: list.map((r) => r.cpuSeconds) });
    pushRow('node -e 0 (reference: a bare Node start)', builds.map(() => ofRuns(reference)));
    cases.forEach((c, i) => pushRow(c.name, runs.map((r) => ofRuns(r[i]))));
    // The restore's fixed cost outside its own clock: Node's start, the bundle, the modules, the
    // settings and the S3 client before the RTO starts; the output and the exit after it ends.
    if (realRestore >= 0) {
      pushRow(
        '  real restore: process start and exit (wall - RTO)',
        runs.map((r) => ({ wall: r[realRestore].map((run) => run.seconds - (JSON.parse(run.stdout) as { rtoSeconds: number }).rtoSeconds), cpu: [] })),
      );
    }
    console.log(
      `bench cli-start (node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}, ${os.availableParallelism()} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}): ` +
        `${RUNS} runs of each after a warm-up; wall time from spawn to exit, CPU time user + system (GNU time, 10 ms steps)\n`,
    );
    console.log(table(rows));
  } finally {
    await s3Server.stop();
    stopPostgres(cluster);
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(TIME_FILE, { force: true });
  }
}

main().catch((error: unknown) => {
  console.error(`bench cli-start failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
