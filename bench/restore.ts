/**
 * npm run bench:restore
 *
 * On each database shape of bench/shapes.ts at each size of BENCH_MB (default 160 and 480 MB), side by side in one run,
 * alternating order, BENCH_ROUNDS rounds (default 2), best of each kept:
 *   reference: `CREATE DATABASE`, then raw `pg_restore --no-owner --exit-on-error -j <cores>` of the dump
 *              from a local file (an operator's restore by hand)
 *   atmr-dr:   `atmr-dr restore <manifest> --target-db X --json` (bin/atmr-dr.cjs, as `npx atmr-dr`
 *              runs it) from the bucket (s3rver in its own process, sharing this machine's cores):
 *              parallel ranged download + sha256, `pg_restore` pre-data, then data and post-data
 *              `-j <cores>`, into a staging database,
 *              row counts, swap
 * Target: atmr-dr / reference <= 1.40. The timeline (download, load, check, swap, process start)
 * says how much of the gap is the download. The RTO is extrapolated, against the runbook's 30
 * minutes, to two sizes the config names: the largest database a restore-test function can download
 * (its ephemeral storage), and the RDS instance's allocated storage (detection.rdsAllocatedStorageGiB),
 * the largest the production database can grow to. Per shape measured at two sizes or more, from a
 * line fitted over the sizes (fixed seconds + seconds per GiB, bench/fit.ts), for atmr-dr's RTO and
 * the reference; per cell, also proportionally (size / measured throughput), which scales the fixed
 * costs with the data and so over-estimates a large database's RTO.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { runBackup } from '../lambdas/backup/backup';
import { DEFAULT_SPACE_FACTOR } from '../lambdas/restore/download';
import { createS3Client } from '../lambdas/shared/aws';
import { pathWithPostgresBinaries, postgresBinDir, psql, startPostgres, stopPostgres } from '../test/support/postgres';
import { startLocalS3Process } from '../test/support/s3';
import { fitLine, type LineFit } from './fit';
import { BENCH_SIZES_MB, SHAPES, generateShape } from './shapes';

const RTO_OBJECTIVE_SECONDS = 1800;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const ROOT = path.join(__dirname, '..');
const LAUNCHER = path.join(ROOT, 'bin', 'atmr-dr.cjs');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** One measured cell of a shape, for the fit over the sizes. */
interface Measured {
  mb: number;
  dbGiB: number;
  dumpToDb: number;
  rtoSeconds: number;
  referenceSeconds: number;
}

interface RestoreJson {
  rtoSeconds: number;
  rowsRestored: number;
  tablesRestored: number;
  timings: { downloadSeconds: number; restoreSeconds: number; verifySeconds: number; swapSeconds: number };
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

/** The largest dump a configured restore-test function can hold (ephemeral storage / space factor). */
function largestConfiguredDumpMiB(): { mib: number; from: string } {
  const cdk = JSON.parse(fs.readFileSync(path.join(ROOT, 'cdk.json'), 'utf8')) as { context: { environments: Record<string, { restoreTest?: { ephemeralStorageMiB?: number } }> } };
  let best = { mib: 4096, from: 'restoreTest.ephemeralStorageMiB default' };
  for (const [env, config] of Object.entries(cdk.context.environments ?? {})) {
    const mib = config.restoreTest?.ephemeralStorageMiB;
    if (mib !== undefined && mib > best.mib) best = { mib, from: `environments.${env}.restoreTest.ephemeralStorageMiB` };
  }
  return { mib: best.mib / DEFAULT_SPACE_FACTOR, from: best.from };
}

/**
 * The largest database the config names for the worst day: the RDS instance's allocated storage
 * (detection.rdsAllocatedStorageGiB, the largest of any environment), the disk the config gives it.
 * The restore-test function's disk bounds only what the monthly test can restore; the CLI's restore
 * on the worst day takes the production database whole.
 */
function largestConfiguredDatabaseGiB(): { gib: number; from: string } | undefined {
  const cdk = JSON.parse(fs.readFileSync(path.join(ROOT, 'cdk.json'), 'utf8')) as { context: { environments: Record<string, { detection?: { rdsAllocatedStorageGiB?: number } }> } };
  let best: { gib: number; from: string } | undefined;
  for (const [env, config] of Object.entries(cdk.context.environments ?? {})) {
    const gib = config.detection?.rdsAllocatedStorageGiB;
    if (gib !== undefined && gib > (best?.gib ?? 0)) best = { gib, from: `environments.${env}.detection.rdsAllocatedStorageGiB` };
  }
  return best;
}

const percentOfObjective = (seconds: number): string =>
  `${((100 * seconds) / RTO_OBJECTIVE_SECONDS).toFixed(0)}% of the ${RTO_OBJECTIVE_SECONDS} s objective (${seconds <= RTO_OBJECTIVE_SECONDS ? 'OK' : 'OVER'})`;

const describeFit = (fit: LineFit): string => (fit.ok ? `${fit.fixed.toFixed(2)} + ${fit.slope.toFixed(2)}/GiB` : 'unusable');

/**
 * Per shape, the atmr-dr RTO and the reference's seconds fitted against the database's size, and
 * the RTO extrapolated with the fit: the fixed costs counted once, not scaled with the data.
 */
function fitted(
  shape: string,
  cells: readonly Measured[],
  largest: { mib: number; from: string },
  largestDatabase: { gib: number; from: string } | undefined,
): { report: string; row: string[] } {
  const sizes = cells.map((c) => c.mb).join(', ');
  const rto = fitLine(cells.map((c) => ({ x: c.dbGiB, y: c.rtoSeconds })));
  const reference = fitLine(cells.map((c) => ({ x: c.dbGiB, y: c.referenceSeconds })));
  const heading = `\n### ${shape}: RTO fitted over the sizes (${sizes} MB; least squares, seconds = fixed + per GiB x GiB)\n\n`;
  if (new Set(cells.map((c) => c.mb)).size < 2) {
    return {
      report: `${heading}the fit needs two sizes or more (e.g. BENCH_MB=160,480): only the proportional extrapolation above, which over-estimates a large database's RTO`,
      row: [shape, sizes, 'needs 2 sizes', 'needs 2 sizes', '-', '-', '-'],
    };
  }
  // The database/dump size ratio of the largest size measured, the nearest to a large database's.
  const largestCell = cells.reduce((a, b) => (b.dbGiB > a.dbGiB ? b : a));
  const dumpDbGiB = (largest.mib * largestCell.dumpToDb) / 1024;
  const at = (gib: number): number | undefined => (rto.ok ? rto.fixed + rto.slope * gib : undefined);
  const slopeRatio = rto.ok && reference.ok ? rto.slope / reference.slope : undefined;
  const rows: string[][] = [
    ['measure', 'seconds', 'note'],
    ['atmr-dr RTO (JSON rtoSeconds of the best run): fixed', rto.ok ? rto.fixed.toFixed(2) : '-', rto.ok ? '' : rto.reason],
    ['atmr-dr RTO: per GiB of database', rto.ok ? rto.slope.toFixed(2) : '-', ''],
    ['reference (createdb + pg_restore): fixed', reference.ok ? reference.fixed.toFixed(2) : '-', reference.ok ? '' : reference.reason],
    ['reference: per GiB of database', reference.ok ? reference.slope.toFixed(2) : '-', ''],
    ['slope ratio (atmr-dr per GiB / reference per GiB)', slopeRatio === undefined ? '-' : `${slopeRatio.toFixed(2)}x`, slopeRatio === undefined ? 'a fit is unusable' : 'what the ratio tends to on a large database'],
  ];
  const targets: { label: string; gib: number }[] = [
    { label: `fitted RTO at ${dumpDbGiB.toFixed(1)} GiB (dump ${(largest.mib / 1024).toFixed(1)} GiB: ${largest.from} / ${DEFAULT_SPACE_FACTOR})`, gib: dumpDbGiB },
    ...(largestDatabase === undefined ? [] : [{ label: `fitted RTO at a ${largestDatabase.gib} GiB database (${largestDatabase.from})`, gib: largestDatabase.gib }]),
  ];
  for (const target of targets) {
    const seconds = at(target.gib);
    rows.push([target.label, seconds === undefined ? '-' : seconds.toFixed(0), seconds === undefined ? 'no RTO: the atmr-dr fit is unusable' : percentOfObjective(seconds)]);
  }
  const pctAt = (gib: number | undefined): string => {
    const seconds = gib === undefined ? undefined : at(gib);
    return seconds === undefined ? 'unusable' : `${((100 * seconds) / RTO_OBJECTIVE_SECONDS).toFixed(0)}%`;
  };
  return {
    report: heading + table(rows),
    row: [
      shape,
      sizes,
      describeFit(rto),
      describeFit(reference),
      slopeRatio === undefined ? '-' : `${slopeRatio.toFixed(2)}x`,
      pctAt(dumpDbGiB),
      largestDatabase === undefined ? '-' : pctAt(largestDatabase.gib),
    ],
  };
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const line = (row: string[]): string => `| ${row.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  return [line(rows[0]), line(widths.map((w) => '-'.repeat(w))), ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<void> {
  const cores = os.availableParallelism();
  const cluster = await startPostgres({ extraSettings: ['-c shared_buffers=256MB', '-c max_wal_size=4GB'] });
  const s3Server = await startLocalS3Process('atmr-dr-bench-restore');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-bench-restore-'));
  const s3 = createS3Client(s3Server.env);
  const pgEnv = { ...cluster.env, PATH: pathWithPostgresBinaries() };
  const largest = largestConfiguredDumpMiB();
  const largestDatabase = largestConfiguredDatabaseGiB();
  const report: string[] = [];
  const summary: string[][] = [['shape', 'MB', 'reference s', 'atmr-dr s', 'ratio (target <= 1.40)', 'download', 'process start', 'proportional RTO / objective', 'proportional RTO at RDS storage']];
  const measured = new Map<string, Measured[]>();
  try {
    // The bundle of the current sources (what `npx atmr-dr` runs), built once before any timing.
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
    await runChild(process.execPath, [LAUNCHER, '--help'], {});
    for (const [mb, shape] of BENCH_SIZES_MB.flatMap((size) => SHAPES.map((s) => [size, s] as const))) {
      const source = shape.name.replace('-', '_');
      process.stderr.write(`[${shape.name}, ${mb} MB] generating...\n`);
      const dbBytes = generateShape(cluster, source, shape, mb);
      const backup = await runBackup(
        { s3, bucket: s3Server.bucket, connection: { host: cluster.host, port: cluster.port, user: cluster.user, database: source } },
        { tier: 'daily', formats: ['custom'] },
      );
      const object = backup.manifest.objects[0];
      const localDump = path.join(work, `${source}.dump`);
      await pipeline((await s3.send(new GetObjectCommand({ Bucket: s3Server.bucket, Key: object.key }))).Body as Readable, fs.createWriteStream(localDump));

      // The reference creates its empty database inside its timer, as an operator restoring by hand
      // must (`createdb`, then `pg_restore -d`): atmr-dr's time holds its own CREATE DATABASE of the
      // staging database, and a reference without it was 0.05-0.18 s faster than any restore can be.
      const reference = (): number => {
        psql(cluster, 'postgres', 'CHECKPOINT');
        const start = performance.now();
        psql({ env: pgEnv }, 'postgres', 'CREATE DATABASE reference');
        execFileSync('pg_restore', ['--no-owner', '--exit-on-error', '-j', String(cores), '-d', 'reference', localDump], { env: { ...process.env, ...pgEnv }, stdio: 'inherit' });
        const seconds = (performance.now() - start) / 1000;
        psql(cluster, 'postgres', 'DROP DATABASE reference');
        return seconds;
      };
      const atmrDr = async (): Promise<{ seconds: number; result: RestoreJson }> => {
        psql(cluster, 'postgres', 'CHECKPOINT');
        const start = performance.now();
        const run = await runChild(process.execPath, [LAUNCHER, 'restore', backup.manifestKey, '--target-db', 'restored', '--json'], { ...s3Server.env, ...pgEnv });
        const seconds = (performance.now() - start) / 1000;
        if (run.code !== 0) throw new Error(`atmr-dr restore failed: ${run.stderr}`);
        psql(cluster, 'postgres', 'DROP DATABASE restored');
        return { seconds, result: JSON.parse(run.stdout) as RestoreJson };
      };

      const refRuns: number[] = [];
      const cliRuns: { seconds: number; result: RestoreJson }[] = [];
      for (let round = 1; round <= ROUNDS; round += 1) {
        process.stderr.write(`[${shape.name}, ${mb} MB] round ${round}/${ROUNDS}\n`);
        // Alternate the order so that neither side always runs on a warmer or busier machine.
        if (round % 2 === 1) refRuns.push(reference());
        cliRuns.push(await atmrDr());
        if (round % 2 === 0) refRuns.push(reference());
      }
      const ref = Math.min(...refRuns);
      const best = cliRuns.reduce((a, b) => (b.seconds < a.seconds ? b : a));
      const t = best.result.timings;
      const gap = best.seconds - ref;
      const startup = best.seconds - best.result.rtoSeconds;
      // What the RTO holds besides the four timed steps: the manifest GET, the guards' queries, the sessions.
      const resolve = best.result.rtoSeconds - t.downloadSeconds - t.restoreSeconds - t.verifySeconds - t.swapSeconds;
      const ratio = best.seconds / ref;
      const paired = cliRuns.map((run, i) => run.seconds / refRuns[i]);
      // Proportional: throughput of the whole restore (database bytes restored per RTO second) -> the
      // largest configured size. It scales the fixed costs with the data: the fit over the sizes
      // (after the cells) counts them once.
      const dumpToDb = dbBytes / object.bytes;
      const largestDbMiB = largest.mib * dumpToDb;
      const rto = (largestDbMiB * MiB) / (dbBytes / best.result.rtoSeconds);
      const rtoAtStorage = largestDatabase === undefined ? undefined : (largestDatabase.gib * 1024 * MiB) / (dbBytes / best.result.rtoSeconds);
      const pct = (part: number): string => (gap > 0 ? `${((100 * part) / gap).toFixed(0)}% of the gap` : '-');
      report.push(
        `\n### ${shape.name}, ~${mb} MB: ${shape.description}\n` +
          `database ${(dbBytes / MiB).toFixed(0)} MiB, ${best.result.tablesRestored} tables, ${best.result.rowsRestored} rows; dump (custom, -Z1) ${(object.bytes / MiB).toFixed(1)} MiB; ${cores} cores; best of ${ROUNDS} rounds\n\n` +
          table([
            ['measure', 'seconds', 'ratio / note'],
            [`reference: createdb + pg_restore -j ${cores}, local file`, ref.toFixed(2), `rounds ${refRuns.map((v) => v.toFixed(2)).join(', ')}`],
            ['atmr-dr restore from the bucket (CLI wall time)', best.seconds.toFixed(2), `${ratio.toFixed(2)}x (target <= 1.40: ${ratio <= 1.4 ? 'OK' : 'OVER'}); same-round ${paired.map((v) => v.toFixed(2)).join(', ')}`],
            ['  timeline: process start and exit (CLI wall time - RTO)', startup.toFixed(2), pct(startup)],
            ['  timeline: resolve the manifest, guards, connections', resolve.toFixed(2), pct(resolve)],
            ['  timeline: download + sha256 (ranged GETs)', t.downloadSeconds.toFixed(2), pct(t.downloadSeconds)],
            [`  timeline: load, pg_restore pre-data, then -j ${cores} into staging`, t.restoreSeconds.toFixed(2), `${(t.restoreSeconds / ref).toFixed(2)}x the reference`],
            ['  timeline: row counts vs manifest', t.verifySeconds.toFixed(2), pct(t.verifySeconds)],
            ['  timeline: swap (rename)', t.swapSeconds.toFixed(2), ''],
            [
              `proportional RTO at ${(largestDbMiB / 1024).toFixed(1)} GiB (dump ${(largest.mib / 1024).toFixed(1)} GiB: ${largest.from} / ${DEFAULT_SPACE_FACTOR})`,
              rto.toFixed(0),
              `${percentOfObjective(rto)}; fixed costs scaled with the data`,
            ],
            ...(rtoAtStorage === undefined || largestDatabase === undefined
              ? []
              : [
                  [
                    `proportional RTO at a ${largestDatabase.gib} GiB database (${largestDatabase.from}, a database filling its configured disk)`,
                    rtoAtStorage.toFixed(0),
                    `${percentOfObjective(rtoAtStorage)}; fixed costs scaled with the data`,
                  ],
                ]),
          ]),
      );
      measured.set(shape.name, [...(measured.get(shape.name) ?? []), { mb, dbGiB: dbBytes / GiB, dumpToDb, rtoSeconds: best.result.rtoSeconds, referenceSeconds: ref }]);
      summary.push([shape.name, `${mb}`, ref.toFixed(2), best.seconds.toFixed(2), `${ratio.toFixed(2)}x ${ratio <= 1.4 ? 'OK' : 'OVER'}`, pct(t.downloadSeconds), pct(startup), `${((100 * rto) / RTO_OBJECTIVE_SECONDS).toFixed(0)}%`, rtoAtStorage === undefined ? '-' : `${((100 * rtoAtStorage) / RTO_OBJECTIVE_SECONDS).toFixed(0)}%`]);
      psql(cluster, 'postgres', `DROP DATABASE ${source}`);
      fs.rmSync(localDump, { force: true });
    }
    console.log(`bench:restore (${os.cpus()[0]?.model ?? 'cpu'}, ${cores} cores, PostgreSQL ${psql(cluster, 'postgres', 'SHOW server_version')}; pg_restore from ${postgresBinDir()}, as the runner image's binaries, not Debian's pg_wrapper)`);
    console.log(report.join('\n'));
    const fits = SHAPES.map((shape) => fitted(shape.name, measured.get(shape.name) ?? [], largest, largestDatabase));
    console.log(fits.map((f) => f.report).join('\n'));
    console.log(`\n### summary (best of ${ROUNDS} rounds each; download and process start as shares of the gap)\n\n${table(summary)}`);
    console.log(
      `\nProportional: size / measured throughput, which scales the fixed costs with the data (an over-estimate when they are positive). Fitted: fixed + per GiB x GiB over the sizes.\n\n` +
        table([['shape', 'sizes MB', 'atmr-dr RTO fixed s + s/GiB', 'reference fixed s + s/GiB', 'slope ratio (large database)', 'fitted RTO at largest restore-test dump', 'fitted RTO at RDS storage'], ...fits.map((f) => f.row)]),
    );
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
