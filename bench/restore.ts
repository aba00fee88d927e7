/**
 * npm run bench:restore
 *
 * On one generated database of at least 500 MB (BENCH_RESTORE_MIN_MB to change it), in one run:
 *   reference: raw `pg_restore --no-owner --exit-on-error -j <cores>` of the dump from a local file
 *   atmr-dr:   `atmr-dr restore <manifest> --target-db X` (child process, bin/atmr-dr.cjs running the bundle
 *              of `npm run build`, as `npx atmr-dr` runs it) from the bucket (s3rver, in its own process): download + sha256/size check,
 *              overlapped with the schema and data load into a staging database (the biggest table
 *              through one COPY session per core), then indexes and constraints (-j <cores>),
 *              row-count check, swap
 * Target: atmr-dr / reference <= 1.15; the RTO of that database against the runbook's 30 minutes.
 * The backup itself is made by the real write path (runBackup, custom format only).
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { DEFAULT_COMPRESSION_LEVEL, runBackup } from '../lambdas/backup/backup';
import { createS3Client } from '../lambdas/shared/aws';
import { startPostgres, stopPostgres, psql, PostgresCluster } from '../test/support/postgres';
import { startLocalS3Process } from '../test/support/s3';

const MIN_MB = Number(process.env.BENCH_RESTORE_MIN_MB ?? 500);
const RTO_OBJECTIVE_SECONDS = 1800;
const ROOT = path.join(__dirname, '..');

function seconds(since: number): number {
  return (performance.now() - since) / 1000;
}

function databaseMb(cluster: PostgresCluster, db: string): number {
  return Number(psql(cluster, db, `SELECT pg_database_size('${db}') / 1048576`));
}

/** ATMR-like data: companies, bookings (jsonb, text, timestamps, indexes), an audit log. */
function generate(cluster: PostgresCluster, db: string): void {
  psql(
    cluster,
    db,
    `CREATE TABLE company (id int PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
     INSERT INTO company SELECT i, 'Transports ' || md5(i::text) FROM generate_series(1, 5000) i;
     CREATE TABLE booking (
       id bigserial PRIMARY KEY, company_id int NOT NULL REFERENCES company (id), status text NOT NULL,
       pickup text NOT NULL, dropoff text NOT NULL, payload jsonb NOT NULL, price_cents int NOT NULL,
       created_at timestamptz NOT NULL);
     CREATE TABLE audit_log (id bigserial PRIMARY KEY, booking_id bigint NOT NULL, message text NOT NULL, at timestamptz NOT NULL);`,
  );
  let batch = 0;
  while (databaseMb(cluster, db) < MIN_MB) {
    const from = batch * 500_000 + 1;
    psql(
      cluster,
      db,
      `INSERT INTO booking (company_id, status, pickup, dropoff, payload, price_cents, created_at)
       SELECT 1 + i % 5000, (ARRAY['requested','assigned','done','cancelled'])[1 + i % 4],
              'Rue ' || md5(i::text), 'Avenue ' || md5((i * 7)::text),
              jsonb_build_object('i', i, 'km', i % 97, 'notes', repeat(chr(97 + i % 26), 40 + i % 60)),
              (i * 37) % 20000, '2026-01-01'::timestamptz + i * interval '1 minute'
       FROM generate_series(${from}, ${from + 499_999}) i;
       INSERT INTO audit_log (booking_id, message, at)
       SELECT i, 'status changed ' || md5(i::text), '2026-01-01'::timestamptz + i * interval '1 minute'
       FROM generate_series(${from}, ${from + 499_999}, 2) i;`,
    );
    batch += 1;
    process.stderr.write(`  generated ${batch * 500_000} bookings, ${databaseMb(cluster, db)} MB\n`);
  }
  psql(cluster, db, 'CREATE INDEX booking_company_created ON booking (company_id, created_at); CREATE INDEX audit_booking ON audit_log (booking_id); VACUUM ANALYZE;');
}

function runChild(file: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

async function main(): Promise<void> {
  const cores = os.availableParallelism();
  // Room for a whole restore's WAL between checkpoints, as on a sized RDS instance: no forced
  // checkpoint lands inside one measurement and not the other.
  const cluster = await startPostgres({ extraSettings: ['-c shared_buffers=256MB', '-c max_wal_size=4GB'] });
  const s3Server = await startLocalS3Process('atmr-dr-bench-restore');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-bench-restore-'));
  try {
    const s3 = createS3Client(s3Server.env);
    const source = 'atmr';
    psql(cluster, 'postgres', `CREATE DATABASE ${source}`);
    process.stderr.write(`generating a >= ${MIN_MB} MB database...\n`);
    generate(cluster, source);
    const sourceMb = databaseMb(cluster, source);

    process.stderr.write('backing up with runBackup (custom format) to s3rver...\n');
    const backup = await runBackup(
      { s3, bucket: s3Server.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: source } },
      { tier: 'daily', formats: ['custom'] },
    );
    const object = backup.manifest.objects[0];
    const localDump = path.join(work, 'reference.dump');
    const body = (await s3.send(new GetObjectCommand({ Bucket: s3Server.bucket, Key: object.key }))).Body as Readable;
    await pipeline(body, fs.createWriteStream(localDump));
    const pgEnv = { ...cluster.env };

    // The operator entry (`npx atmr-dr`): the bundle of the current sources, built before timing.
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
    const launcher = path.join(ROOT, 'bin', 'atmr-dr.cjs');
    await runChild(process.execPath, [launcher, '--help'], {});
    const cliEnv = { ...s3Server.env, ...pgEnv, PGDATABASE: source };
    type RestoreJson = { rtoSeconds: number; rowsRestored: number; tablesRestored: number; timings: Record<string, number> };
    const restoreWith = async (file: string, args: string[]): Promise<{ seconds: number; result: RestoreJson }> => {
      psql(cluster, 'postgres', 'CHECKPOINT');
      const start = performance.now();
      const run = await runChild(file, [...args, 'restore', backup.manifestKey, '--target-db', 'restored', '--json'], cliEnv);
      const elapsed = seconds(start);
      if (run.code !== 0) throw new Error(`atmr-dr restore failed: ${run.stderr}`);
      psql(cluster, 'postgres', 'DROP DATABASE restored');
      return { seconds: elapsed, result: JSON.parse(run.stdout) as RestoreJson };
    };
    const reference = (): number => {
      psql(cluster, 'postgres', 'CREATE DATABASE reference');
      psql(cluster, 'postgres', 'CHECKPOINT');
      const start = performance.now();
      execFileSync('pg_restore', ['--no-owner', '--exit-on-error', '-j', String(cores), '-d', 'reference', localDump], { env: { ...process.env, ...pgEnv }, stdio: 'inherit' });
      const elapsed = seconds(start);
      psql(cluster, 'postgres', 'DROP DATABASE reference');
      return elapsed;
    };

    // Alternate the order each round so that neither side always runs on a warmer or busier server.
    const referenceRuns: number[] = [];
    const cliRuns: { seconds: number; result: RestoreJson }[] = [];
    for (let round = 1; round <= ROUNDS; round += 1) {
      process.stderr.write(`round ${round}/${ROUNDS}: pg_restore -j ${cores} from a local file, atmr-dr restore from the bucket...\n`);
      if (round % 2 === 1) referenceRuns.push(reference());
      cliRuns.push(await restoreWith(process.execPath, [launcher]));
      if (round % 2 === 0) referenceRuns.push(reference());
    }
    const referenceSeconds = Math.min(...referenceRuns);
    const fastest = <T extends { seconds: number }>(runs: T[]): T => runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const best = fastest(cliRuns);
    const result = best.result;

    const ratio = best.seconds / referenceSeconds;
    // Each round's atmr-dr run against that round's reference: the spread this machine adds.
    const paired = cliRuns.map((run, i) => run.seconds / referenceRuns[i]).sort((a, b) => a - b);
    const median = paired[Math.floor((paired.length - 1) / 2)];
    const coreRatio = result.rtoSeconds / referenceSeconds;
    const rows: [string, string][] = [
      ['database (pg_database_size)', `${sourceMb} MB, ${result.tablesRestored} tables, ${result.rowsRestored} rows`],
      [`dump object (custom, -Z ${DEFAULT_COMPRESSION_LEVEL})`, `${(object.bytes / 1048576).toFixed(1)} MB`],
      ['rounds (best of each kept)', `${ROUNDS}: reference ${referenceRuns.map((v) => v.toFixed(2)).join(', ')}; atmr-dr ${cliRuns.map((r) => r.seconds.toFixed(2)).join(', ')}`],
      [`reference: pg_restore -j ${cores}, local file`, `${referenceSeconds.toFixed(2)} s`],
      ['atmr-dr restore (CLI, wall, process start to exit)', `${best.seconds.toFixed(2)} s`],
      ['  download + sha256 (overlaps the schema and data load)', `${result.timings.downloadSeconds.toFixed(2)} s`],
      [`  restore: schema + data streamed, then indexes/constraints -j ${cores}`, `${result.timings.restoreSeconds.toFixed(2)} s`],
      ['  row-count check (beside the last post-data step)', `${result.timings.verifySeconds.toFixed(2)} s`],
      ['  swap (rename)', `${result.timings.swapSeconds.toFixed(2)} s`],
      ['ratio atmr-dr CLI / reference (target <= 1.15)', `${ratio.toFixed(3)} ${ratio <= 1.15 ? 'OK' : 'OVER'}`],
      ['  same-round ratios (min / median / max)', `${paired[0].toFixed(3)} / ${median.toFixed(3)} / ${paired[paired.length - 1].toFixed(3)}`],
      ['ratio restore core (RTO) / reference', `${coreRatio.toFixed(3)} (the restore core, without process start)`],
      [`RTO (restore core) vs runbook ${RTO_OBJECTIVE_SECONDS} s`, `${result.rtoSeconds.toFixed(2)} s (${((100 * result.rtoSeconds) / RTO_OBJECTIVE_SECONDS).toFixed(1)} % of the objective)`],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    console.log(`\nbench:restore (${os.cpus()[0]?.model ?? 'cpu'}, ${cores} cores, PostgreSQL ${psql(cluster, 'postgres', 'SHOW server_version')})`);
    console.log(`| ${'measure'.padEnd(width)} | value |`);
    console.log(`| ${'-'.repeat(width)} | ----- |`);
    for (const [k, v] of rows) console.log(`| ${k.padEnd(width)} | ${v} |`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    await s3Server.stop();
    stopPostgres(cluster);
  }
}

main().catch((error: unknown) => {
  console.error(`bench:restore failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
