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
 * Starts its own PostgreSQL cluster and s3rver (in its own process, as S3 is another machine in
 * production; it still shares this machine's cores), generates a database of at least 500 MB, runs
 * the pairs alternately BENCH_ROUNDS times (default 2) and keeps each measurement's best wall time.
 *
 * The CLI runs as `npx atmr-dr` runs it: bin/atmr-dr.cjs, which runs the esbuild bundle of `npm run
 * build` on plain node (the same bundling as the runner image). Each run also reports the machine's CPU time (all processes: the
 * PostgreSQL backend, pg_dump, the CLI, s3rver), whose half is the wall-time floor on 2 cores.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_COMPRESSION_LEVEL } from '../lambdas/backup/backup';
import { psql, startPostgres, stopPostgres, type PostgresCluster } from '../test/support/postgres';
import { startLocalS3Process, type LocalS3Process } from '../test/support/s3';

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'bin', 'atmr-dr.cjs');
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
  readonly peakTreeRssBytes: number;
  /** CPU seconds of every process on the machine during the run (from /proc/stat). */
  readonly machineCpuSeconds: number;
  readonly s3rverCpuSeconds: number;
  readonly outputBytes?: number;
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Busy CPU seconds of the whole machine so far (all cores: user, nice, system, irq, softirq, steal). */
function machineBusySeconds(): number {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = fields;
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS;
}

/** Runs a command to completion, sampling the RSS of its whole process tree every 50 ms. */
async function measure(s3: LocalS3Process, command: string, args: string[], env: NodeJS.ProcessEnv, stdoutFile?: string): Promise<Measured> {
  const s3Before = s3.cpuSeconds();
  const machineBefore = machineBusySeconds();
  const started = process.hrtime.bigint();
  const out = stdoutFile ? fs.openSync(stdoutFile, 'w') : 'pipe';
  const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', out, 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdout?.resume();
  let peak = 0;
  let sampler: TreeRssSampler | undefined;
  const ticker = setInterval(() => {
    if (!child.pid) return;
    sampler ??= new TreeRssSampler(child.pid);
    peak = Math.max(peak, sampler.sample());
  }, 50);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearInterval(ticker);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const machineCpuSeconds = machineBusySeconds() - machineBefore;
  if (typeof out === 'number') fs.closeSync(out);
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${code}): ${stderr.trim()}`);
  return {
    seconds,
    peakTreeRssBytes: peak,
    machineCpuSeconds,
    s3rverCpuSeconds: s3.cpuSeconds() - s3Before,
    outputBytes: stdoutFile ? fs.statSync(stdoutFile).size : undefined,
  };
}

/**
 * Samples the RSS of a process tree from /proc. Each pid's parent is read once, when the pid first
 * appears, and forgotten when it disappears (so a reused pid is read again): cheap next to the run,
 * and no assumption on pid order.
 */
class TreeRssSampler {
  private readonly parents = new Map<number, number>();

  constructor(private readonly rootPid: number) {}

  /** Sum of VmRSS of the root and all its descendants now. */
  sample(): number {
    const live = new Set(fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number));
    for (const pid of this.parents.keys()) if (!live.has(pid)) this.parents.delete(pid);
    const children = new Map<number, number[]>();
    for (const pid of live) {
      const ppid = this.parentOf(pid);
      if (ppid === undefined) continue;
      const list = children.get(ppid) ?? [];
      list.push(pid);
      children.set(ppid, list);
    }
    let total = 0;
    const stack = [this.rootPid];
    while (stack.length > 0) {
      const pid = stack.pop()!;
      try {
        const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (match) total += Number(match[1]) * 1024;
      } catch {
        // ended meanwhile
      }
      stack.push(...(children.get(pid) ?? []));
    }
    return total;
  }

  private parentOf(pid: number): number | undefined {
    const cached = this.parents.get(pid);
    if (cached !== undefined) return cached;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      this.parents.set(pid, ppid);
      return ppid;
    } catch {
      return undefined; // the process ended meanwhile
    }
  }
}

function best(values: Measured[]): Measured {
  return values.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

async function main(): Promise<void> {
  const level = DEFAULT_COMPRESSION_LEVEL;
  const cores = os.cpus().length;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-bench-backup-'));
  console.log(`starting PostgreSQL and s3rver; generating the database (${RIDES} rides)...`);
  const cluster: PostgresCluster = await startPostgres({ extraSettings: ['-c shared_buffers=256MB', '-c max_wal_size=4GB'] });
  const s3 = await startLocalS3Process('atmr-dr-bench');
  try {
    psql(cluster, 'postgres', `CREATE DATABASE ${DATABASE};`);
    const t0 = Date.now();
    psql(cluster, DATABASE, GENERATE_SQL);
    const dbBytes = Number(psql(cluster, DATABASE, `SELECT pg_database_size('${DATABASE}')`));
    console.log(`database ${DATABASE}: ${(dbBytes / MiB).toFixed(0)} MiB, generated in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    if (dbBytes < MIN_DATABASE_BYTES) throw new Error(`the generated database is ${dbBytes} bytes, below the 500 MB the bench requires: raise BENCH_RIDES`);

    const pgEnv = { ...process.env, ...cluster.env, PGDATABASE: DATABASE };
    const cliEnv = { ...pgEnv, ...s3.env };
    // The bundle of the current sources, then warm caches so that the first measurement is not penalised.
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
    await measure(s3, 'pg_dump', ['-Fc', '-f', path.join(workDir, 'warm.dump')], pgEnv);
    await measure(s3, process.execPath, [CLI, '--help'], cliEnv);

    const raw: Measured[] = [];
    const rawOurLevel: Measured[] = [];
    const both: Measured[] = [];
    const customOnly: Measured[] = [];
    for (let round = 1; round <= ROUNDS; round += 1) {
      console.log(`round ${round}/${ROUNDS}...`);
      raw.push(await measure(s3, 'pg_dump', ['-Fc'], pgEnv, path.join(workDir, 'raw.dump')));
      both.push(await measure(s3, process.execPath, [CLI, 'backup', '--tier', 'hourly'], cliEnv));
      rawOurLevel.push(await measure(s3, 'pg_dump', ['-Fc', `-Z${level}`], pgEnv, path.join(workDir, 'raw-level.dump')));
      customOnly.push(await measure(s3, process.execPath, [CLI, 'backup', '--tier', 'daily', '--formats', 'custom'], cliEnv));
    }

    const r = best(raw);
    const b = best(both);
    const rl = best(rawOurLevel);
    const c = best(customOnly);
    const peak = Math.max(...[...both, ...customOnly].map((m) => m.peakTreeRssBytes));
    const cpu = (m: Measured): string => `${m.machineCpuSeconds.toFixed(1)} (${((m.machineCpuSeconds / m.seconds / cores) * 100).toFixed(0)}%)`;
    const rows: string[][] = [
      ['measurement', 'reference', 'atmr-dr', 'ratio', 'target', 'machine CPU s (busy), ref / atmr-dr'],
      [
        '(1) pg_dump -Fc (default level) -> file  vs  backup, both formats -> s3rver + manifest',
        `${r.seconds.toFixed(2)} s`,
        `${b.seconds.toFixed(2)} s`,
        (b.seconds / r.seconds).toFixed(2),
        '<= 1.00',
        `${cpu(r)} / ${cpu(b)}`,
      ],
      [
        `(2) pg_dump -Fc -Z${level} -> file  vs  backup --formats custom -> s3rver + manifest`,
        `${rl.seconds.toFixed(2)} s`,
        `${c.seconds.toFixed(2)} s`,
        (c.seconds / rl.seconds).toFixed(2),
        '<= 1.15',
        `${cpu(rl)} / ${cpu(c)}`,
      ],
      ['(3) peak RSS of the backup process tree (node + pg_dump + pg_restore + igzip)', '-', `${(peak / MiB).toFixed(0)} MiB`, '-', '<= 200 MiB', ''],
    ];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    console.log('');
    console.log(`database ${(dbBytes / MiB).toFixed(0)} MiB; compression level ${level}; best of ${ROUNDS} rounds; ${cores} CPUs`);
    for (const row of rows) console.log(`| ${row.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`);
    console.log('');
    console.log(`sizes: raw -Fc default ${((r.outputBytes ?? 0) / MiB).toFixed(0)} MiB, raw -Fc -Z${level} ${((rl.outputBytes ?? 0) / MiB).toFixed(0)} MiB`);
    const list = (ms: Measured[], f: (m: Measured) => number, digits = 2): string => ms.map((m) => f(m).toFixed(digits)).join(', ');
    console.log(`all rounds (s): raw ${list(raw, (m) => m.seconds)}; both ${list(both, (m) => m.seconds)}; raw -Z${level} ${list(rawOurLevel, (m) => m.seconds)}; custom ${list(customOnly, (m) => m.seconds)}`);
    console.log(`s3rver CPU (s): both ${list(both, (m) => m.s3rverCpuSeconds)}; custom ${list(customOnly, (m) => m.s3rverCpuSeconds)}`);
    console.log(`peak RSS per run (MiB): both ${list(both, (m) => m.peakTreeRssBytes / MiB, 0)}; custom ${list(customOnly, (m) => m.peakTreeRssBytes / MiB, 0)}`);
    console.log(
      `wall-time floor on ${cores} cores (machine CPU / cores) for (2): ${(c.machineCpuSeconds / cores).toFixed(2)} s = ${(c.machineCpuSeconds / cores / rl.seconds).toFixed(2)} x the reference`,
    );
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
