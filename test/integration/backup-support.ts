import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client } from 'pg';
import { testCluster } from '../support/cluster';
import type { InstalledCopy } from '../support/installed-copy';
import { psql } from '../support/postgres';
import { DIGEST_SQL } from './backup-fixture';

/** Helpers of the backup integration tests: the CLI as a child process, bucket inspection, digests. */

export const REPO_ROOT = path.join(__dirname, '..', '..');
const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx');
const CLI = path.join(REPO_ROOT, 'bin', 'atmr-dr.ts');

/** A minimal, explicit environment: nothing leaks from the test runner's own PG or AWS variables. */
export function baseEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8', AWS_EC2_METADATA_DISABLED: 'true' };
  for (const [name, value] of Object.entries(extra)) if (value !== undefined) env[name] = value;
  return env;
}

/**
 * Runs the CLI to completion. Asynchronous on purpose: s3rver runs in this test process, so a
 * synchronous spawn would block the very server the CLI talks to.
 */
export async function runCli(args: string[], env: NodeJS.ProcessEnv, install?: InstalledCopy): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return startCli(args, env, install).result;
}

export interface CliRun {
  /** The tsx process (the node process of an installed copy's bundle). */
  readonly pid: number;
  readonly result: Promise<{ status: number | null; stdout: string; stderr: string }>;
  /** What the CLI has written to stdout so far. */
  stdout(): string;
  /** What the CLI has written to stderr so far. */
  stderr(): string;
  /**
   * Sends `signal` to the CLI's own node process (tsx's child), as a terminal's Ctrl-C reaches it.
   * Not through tsx: tsx relays a signal, then SIGKILLs its child unless the child acknowledges it
   * within 30 ms, which a loaded machine can miss (exit 130 with no line at all).
   */
  signalCli(signal: NodeJS.Signals): void;
}

/** The CLI of this checkout under tsx, or, with `install`, an operator's install of the bundle with its own cdk.json. */
export function startCli(args: string[], env: NodeJS.ProcessEnv, install?: InstalledCopy): CliRun {
  const child = install
    ? spawn(process.execPath, [install.bundle, ...args], { cwd: install.root, env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(TSX, [CLI, ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  // A hung CLI fails its test instead of the whole run.
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 150_000);
  const result = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (status) => {
      clearTimeout(watchdog);
      resolve({ status, stdout, stderr });
    }),
  );
  return { pid: child.pid ?? -1, result, stdout: () => stdout, stderr: () => stderr, signalCli: (signal) => process.kill(install ? (child.pid ?? -1) : cliProcessOf(child.pid ?? -1), signal) };
}

/** The pid of the node process tsx runs the CLI in (Linux /proc: the children of each of tsx's threads). */
function cliProcessOf(tsxPid: number): number {
  const children = fs
    .readdirSync(`/proc/${tsxPid}/task`)
    .flatMap((task) => fs.readFileSync(`/proc/${tsxPid}/task/${task}/children`, 'utf8').split(' '))
    .filter((pid) => pid !== '')
    .map(Number);
  const cli = children.filter((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(CLI));
  if (cli.length !== 1) throw new Error(`expected one CLI process under tsx ${tsxPid}, found ${cli.length} among [${children.join(', ')}]`);
  return cli[0];
}

/** The stderr lines an operator reads (Node's own deprecation/version warnings are not ours). */
export function operatorLines(stderr: string): string[] {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  const start = lines.findIndex((l) => l.startsWith('atmr-dr: '));
  return start >= 0 ? lines.slice(start) : lines;
}

export async function listKeys(s3: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((o) => o.Key ?? ''));
    token = page.NextContinuationToken;
  } while (token);
  return keys.sort();
}

export async function getBytes(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

export async function getJson(s3: S3Client, bucket: string, key: string): Promise<unknown> {
  return JSON.parse((await getBytes(s3, bucket, key)).toString('utf8')) as unknown;
}

/** Pointer contents, or null when absent: compared before and after a failed run. */
export async function pointers(s3: S3Client, bucket: string): Promise<Record<string, string | null>> {
  const keys = ['latest.json', 'latest/hourly.json', 'latest/daily.json', 'latest/weekly.json', 'latest/monthly.json'];
  const present = new Set(await listKeys(s3, bucket, 'latest'));
  const out: Record<string, string | null> = {};
  for (const key of keys) out[key] = present.has(key) ? (await getBytes(s3, bucket, key)).toString('utf8') : null;
  return out;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function createDatabase(name: string, sql?: string): void {
  psql(testCluster(), 'postgres', `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8';`);
  if (sql) psql(testCluster(), name, sql);
}

export function dropDatabase(name: string): void {
  psql(testCluster(), 'postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE);`);
}

/** A session a backup run opened (its own, pg_dump's), as pg_stat_activity shows it. */
export interface RunBackend {
  pid: number;
  /** wait_event_type: 'Lock' while it queues behind another session's lock. */
  wait: string | null;
  inTransaction: boolean;
  query: string;
}

/** The sessions backup runs have open on `database` (application_name atmr-dr), seen through `watcher`. */
export async function runBackends(watcher: Client, database: string): Promise<RunBackend[]> {
  return (
    await watcher.query<RunBackend>(
      `SELECT pid, wait_event_type AS wait, xact_start IS NOT NULL AS "inTransaction", query
         FROM pg_stat_activity WHERE datname = $1 AND application_name = 'atmr-dr'`,
      [database],
    )
  ).rows;
}

/** Every table, sequence, large object and catalog object of a database, as comparable lines. */
export function contentDigest(database: string): string[] {
  return psql(testCluster(), database, DIGEST_SQL).split('\n').filter((l) => l !== '');
}

/** libpq + S3 environment for the CLI against the test cluster and one s3rver. */
export function cliEnv(database: string, s3Env: Record<string, string>, overrides: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const cluster = testCluster();
  return baseEnv({ ...cluster.env, PGDATABASE: database, ...s3Env, ...overrides });
}

export function writeTempFile(dir: string, name: string, data: Buffer | string, mode?: number): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data, mode === undefined ? undefined : { mode });
  return file;
}
