/**
 * `npm run bench:backup`: the backup pipeline against its references, side by side in one run, on
 * each database shape of bench/shapes.ts (BENCH_SHAPES, default all) at each size of BENCH_MB (default 160 and 480 MB):
 *
 *  (1) raw `pg_dump -Fc` (default level) to a local file  vs  `atmr-dr backup` (both formats, upload to
 *      s3rver, row counts, manifest)                         target ratio <= 1.00
 *  (2) a plain streaming uploader, `pg_dump -Fc -Z1 | upload` (lib-storage, no hash, no row counts,
 *      no manifest)  vs  `atmr-dr backup --formats custom`    target ratio <= 1.00
 *  (3) peak RSS of the backup's whole process tree (the CLI and every descendant, sampled from /proc)
 *
 * Starts its own PostgreSQL cluster and s3rver (in its own process, as S3 is another machine in
 * production; it still shares this machine's cores), runs the pairs alternately BENCH_ROUNDS times
 * (default 2) and keeps each measurement's best wall time. The CLI runs as `npx atmr-dr` runs it
 * (bin/atmr-dr.cjs, one esbuild bundle on plain node). Each run also reports the machine's CPU time
 * (all processes), whose half is the wall-time floor on 2 cores.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BACKUP_S3_CLIENT_OVERRIDES, DEFAULT_COMPRESSION_LEVEL, DEFAULT_PART_SIZE_BYTES, DEFAULT_QUEUE_SIZE } from '../lambdas/backup/backup';
import { resolvePlainCompressor } from '../lambdas/backup/compressor';
import { pathWithPostgresBinaries, postgresBinDir, psql, startPostgres, stopPostgres, type PostgresCluster } from '../test/support/postgres';
import { startLocalS3Process, type LocalS3Process } from '../test/support/s3';
import { BENCH_SIZES_MB, benchShapes, generateShape } from './shapes';

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'bin', 'atmr-dr.cjs');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const MiB = 1024 * 1024;

/**
 * The plain streaming uploader of (2): stdin to one object with lib-storage, the same part size,
 * queue and checksum setting as the backup's uploads (BACKUP_S3_CLIENT_OVERRIDES: a CRC32 on every
 * part, which a bucket with a default Object Lock retention requires of any uploader); nothing else.
 */
const UPLOADER = `
const { S3Client } = require('@aws-sdk/client-s3');
const { Upload } = require('@aws-sdk/lib-storage');
const s3 = new S3Client({ endpoint: process.env.AWS_ENDPOINT_URL_S3, forcePathStyle: true, requestChecksumCalculation: '${BACKUP_S3_CLIENT_OVERRIDES.requestChecksumCalculation}' });
new Upload({ client: s3, params: { Bucket: process.env.BACKUP_BUCKET, Key: process.env.UPLOAD_KEY, Body: process.stdin },
  partSize: ${DEFAULT_PART_SIZE_BYTES}, queueSize: ${DEFAULT_QUEUE_SIZE} }).done().catch((e) => { console.error(e.message); process.exit(1); });
`;

interface Measured {
  readonly seconds: number;
  readonly peakTreeRssBytes: number;
  /** CPU seconds of every process on the machine during the run (from /proc/stat). */
  readonly machineCpuSeconds: number;
  readonly s3rverCpuSeconds: number;
  /** CPU seconds of the measured command and every child it waited for (from the shell's `times`). */
  readonly commandCpuSeconds: number;
  /** The rest of the machine's CPU: the PostgreSQL server's processes, mostly (not s3rver, the command or this bench). */
  readonly serverCpuSeconds: number;
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
  const benchBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  const out = stdoutFile ? fs.openSync(stdoutFile, 'w') : 'pipe';
  // Through a shell whose `times` (on stderr, last line) gives the CPU time of the command's whole
  // tree: every process the command waited for is counted in it.
  const child = spawn('sh', ['-c', '"$0" "$@"; status=$?; times >&2; exit $status', command, ...args], { cwd: ROOT, env, stdio: ['ignore', out, 'pipe'] });
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
  const benchUsage = process.cpuUsage(benchBefore);
  const benchCpuSeconds = (benchUsage.user + benchUsage.system) / 1e6;
  if (typeof out === 'number') fs.closeSync(out);
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${code}): ${stderr.trim()}`);
  const times = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(stderr);
  if (!times) throw new Error(`no CPU times from the shell for ${command}: ${stderr.slice(-200)}`);
  const [, um, us, sm, ss] = times.map(Number);
  const commandCpuSeconds = um * 60 + us + sm * 60 + ss;
  const s3rverCpuSeconds = s3.cpuSeconds() - s3Before;
  return {
    commandCpuSeconds,
    serverCpuSeconds: Math.max(0, machineCpuSeconds - commandCpuSeconds - s3rverCpuSeconds - benchCpuSeconds),
    s3rverCpuSeconds,
    seconds,
    peakTreeRssBytes: peak,
    machineCpuSeconds,
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

/** Wall-time floor of a run's work on `cores` cores, without the S3 stand-in's share: (machine CPU - s3rver CPU) / cores. */
function cpuFloor(m: Measured, cores: number): number {
  return (m.machineCpuSeconds - m.s3rverCpuSeconds) / cores;
}

function best(values: Measured[]): Measured {
  return values.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const line = (row: string[]): string => `| ${row.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  return [line(rows[0]), line(widths.map((w) => '-'.repeat(w))), ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<void> {
  const shapes = benchShapes();
  const level = DEFAULT_COMPRESSION_LEVEL;
  const cores = os.cpus().length;
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-bench-backup-'));
  const cluster: PostgresCluster = await startPostgres({ extraSettings: ['-c shared_buffers=256MB', '-c max_wal_size=4GB'] });
  const s3 = await startLocalS3Process('atmr-dr-bench');
  const report: string[] = [];
  // The backup gzips the plain SQL with igzip when it is installed (the runner image ships it) and
  // with node's zlib otherwise, at several times the CPU: a machine without igzip measures another
  // pipeline than production's, so the report names the one it ran.
  const compressor = await resolvePlainCompressor(level);
  const compressorLine =
    compressor.kind === 'igzip'
      ? `plain SQL gzipped by igzip (${compressor.path}), as in the runner image`
      : 'plain SQL gzipped by node\'s zlib: igzip NOT FOUND (Debian: apt-get install isal); the runner image ships igzip, so (1) here overstates the backup\'s CPU';
  if (compressor.kind !== 'igzip') process.stderr.write(`bench:backup: ${compressorLine}\n`);
  const summary: string[][] = [['shape', 'MB', '(1) both formats / raw -Fc', '(1) CPU floor', '(2) custom / uploader', '(2) CPU floor', 'target']];
  try {
    // The bundle of the current sources (what `npx atmr-dr` runs), built once before any timing.
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
    for (const [mb, shape] of BENCH_SIZES_MB.flatMap((size) => shapes.map((s) => [size, s] as const))) {
      const database = shape.name.replace('-', '_');
      process.stderr.write(`[${shape.name}, ${mb} MB] generating...\n`);
      const dbBytes = generateShape(cluster, database, shape, mb);
      const pgEnv = { ...process.env, ...cluster.env, PGDATABASE: database, PATH: pathWithPostgresBinaries() };
      const cliEnv = { ...pgEnv, ...s3.env };
      // Warm the caches so that the first measurement is not penalised.
      await measure(s3, 'pg_dump', ['-Fc', '-f', path.join(workDir, 'warm.dump')], pgEnv);
      await measure(s3, process.execPath, [CLI, '--help'], cliEnv);

      const raw: Measured[] = [];
      const both: Measured[] = [];
      const uploader: Measured[] = [];
      const customOnly: Measured[] = [];
      for (let round = 1; round <= ROUNDS; round += 1) {
        process.stderr.write(`[${shape.name}, ${mb} MB] round ${round}/${ROUNDS}\n`);
        const pair1: [() => Promise<Measured>, () => Promise<Measured>] = [
          () => measure(s3, 'pg_dump', ['-Fc'], pgEnv, path.join(workDir, 'raw.dump')),
          () => measure(s3, process.execPath, [CLI, 'backup', '--tier', 'hourly'], cliEnv),
        ];
        const pair2: [() => Promise<Measured>, () => Promise<Measured>] = [
          () => measure(s3, 'sh', ['-c', `pg_dump -Fc -Z${level} | "${process.execPath}" -e "$UPLOADER"`], { ...cliEnv, UPLOADER, UPLOAD_KEY: `uploader/${database}-${round}.dump` }),
          () => measure(s3, process.execPath, [CLI, 'backup', '--tier', 'daily', '--formats', 'custom'], cliEnv),
        ];
        // Alternate the order each round so that neither side always runs second.
        for (const [[ref, ours], [refOut, oursOut]] of [
          [pair1, [raw, both]],
          [pair2, [uploader, customOnly]],
        ] as const) {
          if (round % 2 === 1) refOut.push(await ref());
          oursOut.push(await ours());
          if (round % 2 === 0) refOut.push(await ref());
        }
        // Keys carry the start second: the next round's backups need a new one.
        await new Promise((resolve) => setTimeout(resolve, 1100));
      }
      const r = best(raw);
      const b = best(both);
      const u = best(uploader);
      const c = best(customOnly);
      const peak = Math.max(...[...both, ...customOnly].map((m) => m.peakTreeRssBytes));
      const cpu = (m: Measured): string => `${m.machineCpuSeconds.toFixed(1)} (${((m.machineCpuSeconds / m.seconds / cores) * 100).toFixed(0)}%)`;
      const list = (ms: Measured[]): string => ms.map((m) => m.seconds.toFixed(2)).join(', ');
      report.push(
        `\n### ${shape.name}, ~${mb} MB: ${shape.description}\n` +
          `database ${(dbBytes / MiB).toFixed(0)} MiB; compression level ${level}; best of ${ROUNDS} rounds; ${cores} CPUs; raw -Fc default ${((r.outputBytes ?? 0) / MiB).toFixed(0)} MiB\n\n` +
          table([
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
              `(2) pg_dump -Fc -Z${level} piped to upload (no hash, no counts)  vs  backup --formats custom`,
              `${u.seconds.toFixed(2)} s`,
              `${c.seconds.toFixed(2)} s`,
              (c.seconds / u.seconds).toFixed(2),
              '<= 1.00',
              `${cpu(u)} / ${cpu(c)}`,
            ],
            ['(3) peak RSS of the backup process tree', '-', `${(peak / MiB).toFixed(0)} MiB`, '-', '', ''],
          ]) +
          `\nall rounds (s): raw ${list(raw)}; both ${list(both)}; uploader ${list(uploader)}; custom ${list(customOnly)}\n\n` +
          `CPU seconds by party, best run of each:\n\n` +
          table([
            ['run', 'wall s', 'command and its children', 's3rver', 'PostgreSQL server (the rest)', 'machine'],
            ...([
              ['raw pg_dump -Fc (default level) -> file', r],
              ['backup, both formats', b],
              [`pg_dump -Fc -Z${level} piped to the uploader`, u],
              ['backup --formats custom', c],
            ] as const).map(([name, m]) => [
              name,
              m.seconds.toFixed(2),
              m.commandCpuSeconds.toFixed(1),
              m.s3rverCpuSeconds.toFixed(1),
              m.serverCpuSeconds.toFixed(1),
              m.machineCpuSeconds.toFixed(1),
            ]),
          ]),
      );
      summary.push([
        shape.name,
        `${mb}`,
        (b.seconds / r.seconds).toFixed(2),
        (cpuFloor(b, cores) / r.seconds).toFixed(2),
        (c.seconds / u.seconds).toFixed(2),
        (cpuFloor(c, cores) / u.seconds).toFixed(2),
        '<= 1.00',
      ]);
      psql(cluster, 'postgres', `DROP DATABASE ${database}`);
    }
    console.log(`bench:backup (${os.cpus()[0]?.model ?? 'cpu'}, ${cores} cores, PostgreSQL ${psql(cluster, 'postgres', 'SHOW server_version')}; pg_dump and pg_restore from ${postgresBinDir()}, as the runner image's binaries, not Debian's pg_wrapper; ${compressorLine})`);
    console.log(report.join('\n'));
    console.log(`\n### summary (best of ${ROUNDS} rounds each)\n\n${table(summary)}`);
    console.log(
      `\nCPU floor: the backup's busy CPU seconds of the whole machine, s3rver's taken out (S3 is not on the runner's cores in production), divided by the ${cores} cores, over the reference's wall time: the smallest ratio any scheduling of the same work could reach here. Above 1.00, the target needs less work, not better overlap.`,
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
