/**
 * `npm run bench:backup`: the backup pipeline against its physical reference, side by side in one run.
 *
 *  (1) raw `pg_dump -Fc` (default level) to a local file  vs  `atmr-dr backup` (both formats, upload to
 *      s3rver, manifest)                                     target ratio <= 1.0
 *  (2) raw `pg_dump -Fc -Z<our level>` to a local file    vs  `atmr-dr backup --formats custom`
 *                                                            target ratio <= 1.15
 *  (3) peak RSS of the backup's whole process tree (the CLI and every descendant, sampled from /proc)
 *                                                            target <= 200 MiB
 *
 * Starts its own PostgreSQL cluster and s3rver, generates a database of at least 500 MB, runs the
 * pairs alternately BENCH_ROUNDS times (default 2) and keeps each measurement's best wall time.
 *
 * The CLI is measured twice: as an operator runs it from the repository (TypeScript through tsx),
 * and as the runner image runs the same code (one esbuild bundle on plain node, no compiler loaded).
 */
import { buildSync } from 'esbuild';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_COMPRESSION_LEVEL } from '../lambdas/backup/backup';
import { psql, startPostgres, stopPostgres, type PostgresCluster } from '../test/support/postgres';
import { startLocalS3 } from '../test/support/s3';

const ROOT = path.join(__dirname, '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const CLI = path.join(ROOT, 'bin', 'atmr-dr.ts');
const DATABASE = 'bench';
const MIN_DATABASE_BYTES = 500 * 1024 * 1024;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const RIDES = Number(process.env.BENCH_RIDES ?? 1_600_000);
const MiB = 1024 * 1024;

/** A realistic mix: text, numeric, jsonb, timestamps, enums as text, with indexes. */
const GENERATE_SQL = `
CREATE TABLE customers (
  id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, phone text, city text NOT NULL,
  created_at timestamptz NOT NULL, preferences jsonb NOT NULL);
INSERT INTO customers
SELECT i, 'Client ' || i || ' ' || (ARRAY['Dupont','Martin','Bernard','Müller','Rossi','Favre'])[1 + i % 6],
       'client' || i || '@example.ch', '+41 79 ' || lpad((i * 7919 % 10000000)::text, 7, '0'),
       (ARRAY['Genève','Lausanne','Zürich','Bern','Basel','Sion','Fribourg'])[1 + i % 7],
       timestamptz '2020-01-01' + (i % 1800) * interval '1 day' + (i % 86400) * interval '1 second',
       jsonb_build_object('lang', (ARRAY['fr','de','it','en'])[1 + i % 4], 'newsletter', i % 3 = 0, 'seat', (ARRAY['front','back'])[1 + i % 2])
FROM generate_series(1, 200000) AS i;

CREATE TABLE rides (
  id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers (id), status text NOT NULL,
  pickup_address text NOT NULL, dropoff_address text NOT NULL, distance_km numeric(8,2) NOT NULL,
  fare_chf numeric(10,2) NOT NULL, requested_at timestamptz NOT NULL, completed_at timestamptz,
  route jsonb NOT NULL, driver_note text);
INSERT INTO rides
SELECT i, 1 + (i * 31) % 200000,
       (ARRAY['requested','assigned','in_progress','done','cancelled'])[1 + i % 5],
       (i * 13 % 250) || ' rue ' || (ARRAY['du Rhône','de Lausanne','des Alpes','du Marché','de la Gare'])[1 + i % 5] || ', ' || (1200 + i % 90),
       (i * 17 % 300) || ' avenue ' || (ARRAY['de France','Léopold-Robert','du Léman','de Rumine'])[1 + i % 4] || ', ' || (1000 + i % 120),
       round((random() * 40)::numeric, 2), round((8 + random() * 120)::numeric, 2),
       timestamptz '2024-01-01' + i * interval '11 seconds',
       CASE WHEN i % 5 = 3 THEN timestamptz '2024-01-01' + i * interval '11 seconds' + (600 + i % 3000) * interval '1 second' END,
       jsonb_build_object('eta_s', 300 + i % 1200, 'points', jsonb_build_array(
         jsonb_build_array(round((46.2 + random() / 10)::numeric, 5), round((6.1 + random() / 10)::numeric, 5)),
         jsonb_build_array(round((46.5 + random() / 10)::numeric, 5), round((6.6 + random() / 10)::numeric, 5))),
         'surge', round((1 + random())::numeric, 2)),
       CASE WHEN i % 4 = 0 THEN md5(i::text) || ' ' || repeat('merci ', i % 5) END
FROM generate_series(1, ${RIDES}) AS i;
CREATE INDEX rides_customer ON rides (customer_id);
CREATE INDEX rides_requested_at ON rides (requested_at);
CREATE INDEX customers_city ON customers (city);
VACUUM ANALYZE;`;

interface Measured {
  readonly seconds: number;
  readonly peakTreeRssBytes?: number;
  /** The same tree without its root process (the tsx launcher when the CLI runs as `tsx bin/atmr-dr.ts`). */
  readonly peakWithoutLauncherBytes?: number;
  readonly s3rverCpuSeconds?: number;
  readonly outputBytes?: number;
}

/** Runs a command to completion, sampling the RSS of its whole process tree every 50 ms. */
async function measure(command: string, args: string[], env: NodeJS.ProcessEnv, stdoutFile?: string): Promise<Measured> {
  const started = process.hrtime.bigint();
  const out = stdoutFile ? fs.openSync(stdoutFile, 'w') : 'pipe';
  const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', out, 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdout?.resume();
  let peak = 0;
  let peakWithoutLauncher = 0;
  const cpuBefore = process.cpuUsage();
  const sampler = setInterval(() => {
    if (!child.pid) return;
    const tree = treeRss(child.pid);
    peak = Math.max(peak, tree.total);
    peakWithoutLauncher = Math.max(peakWithoutLauncher, tree.total - tree.root);
  }, 50);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearInterval(sampler);
  // s3rver runs in this process: its CPU during the run is this process's CPU (sampling is negligible).
  const cpu = process.cpuUsage(cpuBefore);
  if (typeof out === 'number') fs.closeSync(out);
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${code}): ${stderr.trim()}`);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    seconds,
    peakTreeRssBytes: peak,
    peakWithoutLauncherBytes: peakWithoutLauncher,
    s3rverCpuSeconds: (cpu.user + cpu.system) / 1e6,
    outputBytes: stdoutFile ? fs.statSync(stdoutFile).size : undefined,
  };
}

/** Sum of VmRSS of `pid` and all its descendants, from /proc; `root` is the root process's own. */
function treeRss(rootPid: number): { total: number; root: number } {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // the process ended meanwhile
    }
  }
  let total = 0;
  let root = 0;
  const stack = [rootPid];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) total += Number(match[1]) * 1024;
      if (match && pid === rootPid) root = Number(match[1]) * 1024;
    } catch {
      // ended meanwhile
    }
    stack.push(...(children.get(pid) ?? []));
  }
  return { total, root };
}

function best(values: Measured[]): Measured {
  return values.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

async function main(): Promise<void> {
  const level = DEFAULT_COMPRESSION_LEVEL;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-bench-backup-'));
  console.log(`starting PostgreSQL and s3rver; generating the database (${RIDES} rides)...`);
  const cluster: PostgresCluster = await startPostgres({ extraSettings: ['-c shared_buffers=256MB', '-c max_wal_size=4GB'] });
  const s3 = await startLocalS3('atmr-dr-bench');
  try {
    psql(cluster, 'postgres', `CREATE DATABASE ${DATABASE};`);
    const t0 = Date.now();
    psql(cluster, DATABASE, GENERATE_SQL);
    const dbBytes = Number(psql(cluster, DATABASE, `SELECT pg_database_size('${DATABASE}')`));
    console.log(`database ${DATABASE}: ${(dbBytes / MiB).toFixed(0)} MiB, generated in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    if (dbBytes < MIN_DATABASE_BYTES) throw new Error(`the generated database is ${dbBytes} bytes, below the 500 MB the bench requires: raise BENCH_RIDES`);

    const pgEnv = { ...process.env, ...cluster.env, PGDATABASE: DATABASE };
    const cliEnv = { ...pgEnv, ...s3.env };
    // Warm the caches so that the first measurement is not penalised.
    await measure('pg_dump', ['-Fc', '-f', path.join(workDir, 'warm.dump')], pgEnv);

    // The same bundling as the runner image's build stage (lambdas/backup/Dockerfile).
    const bundle = path.join(workDir, 'atmr-dr.cjs');
    buildSync({ entryPoints: [CLI], bundle: true, platform: 'node', target: 'node22', format: 'cjs', minify: true, outfile: bundle, external: ['pg-native'], logLevel: 'error' });

    const raw: Measured[] = [];
    const rawOurLevel: Measured[] = [];
    const both: Measured[] = [];
    const customOnly: Measured[] = [];
    const bothBundled: Measured[] = [];
    const customBundled: Measured[] = [];
    for (let round = 1; round <= ROUNDS; round += 1) {
      console.log(`round ${round}/${ROUNDS}...`);
      raw.push(await measure('pg_dump', ['-Fc'], pgEnv, path.join(workDir, 'raw.dump')));
      both.push(await measure(TSX, [CLI, 'backup', '--tier', 'hourly'], cliEnv));
      bothBundled.push(await measure(process.execPath, [bundle, 'backup', '--tier', 'hourly'], cliEnv));
      rawOurLevel.push(await measure('pg_dump', ['-Fc', `-Z${level}`], pgEnv, path.join(workDir, 'raw-level.dump')));
      customOnly.push(await measure(TSX, [CLI, 'backup', '--tier', 'daily', '--formats', 'custom'], cliEnv));
      customBundled.push(await measure(process.execPath, [bundle, 'backup', '--tier', 'daily', '--formats', 'custom'], cliEnv));
    }

    const r = best(raw);
    const b = best(both);
    const rl = best(rawOurLevel);
    const c = best(customOnly);
    const bb = best(bothBundled);
    const cb = best(customBundled);
    const runs = [...both, ...customOnly];
    const peak = Math.max(...runs.map((m) => m.peakTreeRssBytes ?? 0));
    const peakNoLauncher = Math.max(...runs.map((m) => m.peakWithoutLauncherBytes ?? 0));
    const peakBundled = Math.max(...[...bothBundled, ...customBundled].map((m) => m.peakTreeRssBytes ?? 0));
    const rows: [string, string, string, string, string][] = [
      ['measurement', 'reference', 'atmr-dr', 'ratio', 'target'],
      [
        '(1) pg_dump -Fc (default level) -> file  vs  backup, both formats -> s3rver + manifest',
        `${r.seconds.toFixed(1)} s`,
        `${b.seconds.toFixed(1)} s`,
        (b.seconds / r.seconds).toFixed(2),
        '<= 1.00',
      ],
      [
        `(2) pg_dump -Fc -Z${level} -> file  vs  backup --formats custom -> s3rver + manifest`,
        `${rl.seconds.toFixed(1)} s`,
        `${c.seconds.toFixed(1)} s`,
        (c.seconds / rl.seconds).toFixed(2),
        '<= 1.15',
      ],
      ['(3) peak RSS of the backup process tree (tsx launcher + CLI node + pg_dump + pg_restore)', '-', `${(peak / MiB).toFixed(0)} MiB`, '-', '<= 200 MiB'],
      ['    the same tree without the tsx launcher process', '-', `${(peakNoLauncher / MiB).toFixed(0)} MiB`, '-', '<= 200 MiB'],
      ['(1b) as (1), the CLI bundled as in the runner image (node + one .cjs)', `${r.seconds.toFixed(1)} s`, `${bb.seconds.toFixed(1)} s`, (bb.seconds / r.seconds).toFixed(2), '<= 1.00'],
      [`(2b) as (2), the CLI bundled as in the runner image`, `${rl.seconds.toFixed(1)} s`, `${cb.seconds.toFixed(1)} s`, (cb.seconds / rl.seconds).toFixed(2), '<= 1.15'],
      ['(3b) peak RSS of the bundled runner process tree (node + pg_dump + pg_restore)', '-', `${(peakBundled / MiB).toFixed(0)} MiB`, '-', '<= 200 MiB'],
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    console.log('');
    console.log(`database ${(dbBytes / MiB).toFixed(0)} MiB; compression level ${level}; best of ${ROUNDS} rounds; ${os.cpus().length} CPUs`);
    for (const row of rows) console.log(`| ${row.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`);
    console.log('');
    console.log(`sizes: raw -Fc default ${((r.outputBytes ?? 0) / MiB).toFixed(0)} MiB, raw -Fc -Z${level} ${((rl.outputBytes ?? 0) / MiB).toFixed(0)} MiB`);
    console.log(`all rounds (s): raw ${raw.map((m) => m.seconds.toFixed(1)).join(', ')}; both ${both.map((m) => m.seconds.toFixed(1)).join(', ')}; raw -Z${level} ${rawOurLevel.map((m) => m.seconds.toFixed(1)).join(', ')}; custom ${customOnly.map((m) => m.seconds.toFixed(1)).join(', ')}`);
    console.log(`s3rver CPU during the runs (s, in this process): both ${both.map((m) => (m.s3rverCpuSeconds ?? 0).toFixed(1)).join(', ')}; custom ${customOnly.map((m) => (m.s3rverCpuSeconds ?? 0).toFixed(1)).join(', ')}`);
    console.log(`peak RSS per run (MiB): both ${both.map((m) => ((m.peakTreeRssBytes ?? 0) / MiB).toFixed(0)).join(', ')}; custom ${customOnly.map((m) => ((m.peakTreeRssBytes ?? 0) / MiB).toFixed(0)).join(', ')}`);
  } finally {
    await s3.stop();
    stopPostgres(cluster);
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
