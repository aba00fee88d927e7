import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';
import { OperatorError, oneLine } from '../shared/errors';
import type { BackupManifest } from '../shared/manifest';
import { firstError } from './catalog';
import { ArchiveLayout, ArchiveSource, ArchiveTocEntry, NeedMoreBytes, UnsupportedArchive, readLayout, tableRows } from './custom-archive';
import { parallelCopy, parseSessionSettings } from './parallel-copy';

/**
 * The custom-format restore, overlapped with its download. The archive lands in a local file
 * (parallel ranged GETs, hashed and written in order); while it grows, pg_restore processes read
 * it from the start, each through its own follower (DownloadFollowers):
 *
 *   pg_restore -l                          the table of contents (the archive's first bytes)
 *   pg_restore --section=pre-data          the schema
 *   N x pg_restore --section=data -L <i>   the table data, tables split over N processes by the
 *                                          manifest's row counts, each reading in archive order
 *   or, for a table that outweighs all the others (splitTable): node reads its block from the
 *   growing file itself (custom-archive.ts) and loads it through N COPY sessions at once
 *   (parallel-copy.ts); the other tables take N-1 pg_restore processes
 *   (download complete, sha256 checked; from here on, only the verified file is read)
 *   as each data process ends:             the indexes, constraints and triggers of its own tables
 *     pg_restore --section=post-data -L      (as pg_restore -j does: a small table's indexes are
 *                                          built while a big one still loads)
 *   pg_restore --section=post-data -j N    the rest: foreign keys, materialized views, ACLs, ...
 *
 * A pipe-written archive has no data offsets (docs/backups.md), so each data process reads the
 * whole stream and skips the blocks of the tables it does not load; skipping costs a read, not an
 * inflate. Everything goes into a staging database that the caller drops on any failure.
 */

/**
 * Followers of the growing download: GNU `tail -f` from its first byte, piped straight into a
 * pg_restore (the archive never passes through node twice). The download writes the file strictly
 * in order, so a follower only ever sees a prefix of the object. Every follower ends once the
 * download is verified: tail's `--pid` names a sentinel process that lives exactly that long (tail
 * then copies what is left and exits). The sentinel is a `cat` reading a pipe from this process, so
 * it also ends if this process dies (Ctrl-C, a Lambda timeout): no follower outlives the restore.
 * On a failed download the followers are killed instead.
 */
export class DownloadFollowers {
  private readonly sentinel: ChildProcess;
  private readonly tails: ChildProcess[] = [];

  constructor(private readonly file: string) {
    this.sentinel = spawn('cat', [], { stdio: ['pipe', 'ignore', 'ignore'] });
    this.sentinel.on('error', () => undefined);
    this.sentinel.stdin?.on('error', () => undefined);
  }

  /** A new follower from byte 0; its stdout is for a child's stdin. */
  follow(): ChildProcess {
    const tail = spawn('tail', ['-c', '+1', '-s', '0.05', `--pid=${this.sentinel.pid}`, '-f', this.file], { stdio: ['ignore', 'pipe', 'ignore'] });
    tail.on('error', () => undefined);
    this.tails.push(tail);
    return tail;
  }

  /** The download is complete and verified: followers copy the rest and end. */
  finish(): void {
    this.sentinel.stdin?.end();
  }

  /** The download failed: followers stop at once, without a clean end of input. */
  abort(): void {
    for (const tail of this.tails) if (tail.exitCode === null && tail.signalCode === null) tail.kill('SIGKILL');
    this.sentinel.kill('SIGKILL');
  }
}

/**
 * The download in progress as an ArchiveSource for node's own reads (the parallel COPY): a read
 * waits until its bytes are written, or the download ends or fails (then the read fails too).
 */
export class GrowingDownload implements ArchiveSource {
  private written = 0;
  private ended = false;
  private error: unknown;
  private waiters: (() => void)[] = [];
  private handle?: Promise<fs.promises.FileHandle>;

  constructor(private readonly file: string) {}

  /** The first `bytes` of the file are written. */
  progress(bytes: number): void {
    this.written = bytes;
    this.wake();
  }

  /** The download is complete and verified. */
  finish(): void {
    this.ended = true;
    this.wake();
  }

  /** The download failed, or the restore stops: every read now fails with `error`. */
  fail(error: unknown): void {
    this.error ??= error;
    this.wake();
  }

  async readInto(target: Buffer, offset: number, length: number, position: number): Promise<number> {
    while (this.error === undefined && !this.ended && this.written < position + length) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.error !== undefined) throw this.error;
    const available = Math.max(0, Math.min(length, this.written - position));
    if (available === 0) return 0;
    const handle = await (this.handle ??= fs.promises.open(this.file, 'r'));
    const { bytesRead } = await handle.read(target, offset, available, position);
    return bytesRead;
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await (await handle?.catch(() => undefined))?.close().catch(() => undefined);
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}

/** The archive's header and TOC, read from its first bytes (more are read until the TOC ends). */
export async function archiveLayout(source: ArchiveSource): Promise<ArchiveLayout> {
  for (let bytes = 1 << 20; ; bytes *= 4) {
    const buffer = Buffer.allocUnsafe(bytes);
    const head = buffer.subarray(0, await source.readInto(buffer, 0, bytes, 0));
    try {
      return readLayout(head);
    } catch (error) {
      if (!(error instanceof NeedMoreBytes) || head.length < bytes) throw error;
    }
  }
}

/** The entries of a `pg_restore --list` output (without its `;` comment lines). */
function tocEntries(tocList: string): string[] {
  return tocList.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';'));
}

/** The manifest table whose TABLE DATA entry `line` is. */
function tableOfEntry(line: string, tables: BackupManifest['tables']): BackupManifest['tables'][number] | undefined {
  return tables.find((t) => line.includes(` TABLE DATA ${t.schema} ${t.name} `));
}

/**
 * Splits the archive's TABLE DATA entries (from `pg_restore -l`) over at most `jobs` processes,
 * biggest tables first by the manifest's row counts, onto the least-loaded process. Each list keeps
 * the archive's order (a streamed archive can only be read forward). The first list also carries
 * every other entry (sequences' values, large objects, ...): with `--section=data` pg_restore
 * restores only the data-section entries of a list.
 */
export function planDataLoads(tocList: string, tables: BackupManifest['tables'], jobs: number): string[] {
  const lines = tocEntries(tocList);
  const rowsOf = (line: string): number | undefined => tableOfEntry(line, tables)?.rows;
  const dataLines = lines.filter((l) => / TABLE DATA /.test(l));
  const processes = Math.max(1, Math.min(jobs, dataLines.length));
  const load = new Array<number>(processes).fill(0);
  const assigned = new Map<string, number>();
  // Largest first onto the least-loaded process; a table the manifest does not know weighs 1 row.
  for (const line of [...dataLines].sort((a, b) => (rowsOf(b) ?? 1) - (rowsOf(a) ?? 1))) {
    const target = load.indexOf(Math.min(...load));
    assigned.set(line, target);
    load[target] += rowsOf(line) ?? 1;
  }
  return Array.from({ length: processes }, (_, i) =>
    lines.filter((line) => (assigned.has(line) ? assigned.get(line) === i : i === 0)).join('\n') + '\n',
  );
}

/**
 * The table worth loading through several COPY sessions (parallel-copy.ts): the biggest, when it
 * has at least `minRows` rows and at least as many as all the others together (its single-session
 * load would be the critical path), with `jobs` >= 2. Returns its TABLE DATA line and the rest of
 * the list without it.
 */
export function splitTable(tocList: string, tables: BackupManifest['tables'], jobs: number, minRows: number): { line: string; rest: string } | undefined {
  if (jobs < 2) return undefined;
  const lines = tocEntries(tocList);
  const data = lines
    .map((line) => ({ line, table: tableOfEntry(line, tables) }))
    .filter((d): d is { line: string; table: BackupManifest['tables'][number] } => d.table !== undefined)
    .sort((a, b) => b.table.rows - a.table.rows);
  if (data.length === 0) return undefined;
  const biggest = data[0];
  const others = data.slice(1).reduce((sum, d) => sum + d.table.rows, 0);
  if (biggest.table.rows < minRows || biggest.table.rows < others) return undefined;
  return { line: biggest.line, rest: lines.filter((l) => l !== biggest.line).join('\n') + '\n' };
}

/** The manifest tables whose TABLE DATA entry is in `list`. */
export function tablesOfList(list: string, tables: BackupManifest['tables']): string[] {
  return tables.filter((t) => list.includes(` TABLE DATA ${t.schema} ${t.name} `)).map((t) => qualified(t.schema, t.name));
}

function qualified(schema: string, name: string): string {
  return JSON.stringify([schema, name]);
}

/** One SQL identifier, quoted or not, as PostgreSQL prints it (pg_dump quotes when needed). */
const IDENT = String.raw`(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)`;
const QUALIFIED = new RegExp(String.raw`(${IDENT})\.(${IDENT})`);
const unquote = (ident: string): string => (ident.startsWith('"') ? ident.slice(1, -1).replaceAll('""', '"') : ident);

/**
 * The table each per-table post-data entry belongs to, from the post-data script
 * (`pg_restore -f - --section=post-data`): "-- Name: <tag>; Type: <type>; Schema: <schema>" headers,
 * then the statement naming the table (CREATE INDEX ... ON t, ALTER TABLE t ADD CONSTRAINT,
 * CREATE TRIGGER ... ON t). Keyed by "<type> <schema> <tag> " as `pg_restore -l` prints entries.
 * Only INDEX, CONSTRAINT and TRIGGER are per-table; anything else (foreign keys, which need two
 * tables, materialized views, ACLs) is left out and runs last.
 */
export function postDataTables(script: string): Map<string, string> {
  const owners = new Map<string, string>();
  const sections = script.split(/^-- Name: /m).slice(1);
  for (const section of sections) {
    const header = /^(.*); Type: ([A-Z ]+); Schema: ([^;]*); Owner: [^\n]*\n/.exec(section);
    if (!header) continue;
    const [, tag, type, schema] = header;
    const body = section.slice(header[0].length).replace(/^--.*$/gm, '');
    let match: RegExpExecArray | null = null;
    if (type === 'INDEX') match = new RegExp(String.raw`^\s*CREATE (?:UNIQUE )?INDEX ${IDENT} ON (?:ONLY )?${QUALIFIED.source}`, 'm').exec(body);
    else if (type === 'CONSTRAINT') match = new RegExp(String.raw`^\s*ALTER TABLE (?:ONLY )?${QUALIFIED.source}`, 'm').exec(body);
    else if (type === 'TRIGGER') match = new RegExp(String.raw`^\s*CREATE (?:CONSTRAINT )?TRIGGER ${IDENT} [^;]*? ON ${QUALIFIED.source}`, 'm').exec(body);
    if (match) owners.set(`${type} ${schema} ${tag} `, qualified(unquote(match[1]), unquote(match[2])));
  }
  return owners;
}

/**
 * Splits the post-data entries of `tocList`: per data process, those of the tables it loaded
 * (runnable as soon as it ends), and the rest (after every load). Lists keep the archive order.
 */
export function planPostData(tocList: string, owners: Map<string, string>, tablesByProcess: string[][]): { perProcess: string[]; last: string } {
  const lines = tocEntries(tocList);
  const processOf = (line: string): number => {
    for (const [key, table] of owners) {
      if (!line.includes(` ${key}`)) continue;
      const index = tablesByProcess.findIndex((tables) => tables.includes(table));
      if (index >= 0) return index;
    }
    return -1;
  };
  const placed = lines.map((line) => ({ line, process: processOf(line) }));
  const join = (selected: string[]): string => (selected.length > 0 ? `${selected.join('\n')}\n` : '');
  return {
    perProcess: tablesByProcess.map((_, i) => join(placed.filter((p) => p.process === i).map((p) => p.line))),
    last: join(placed.filter((p) => p.process < 0).map((p) => p.line)),
  };
}

interface PgRestoreRun {
  readonly exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
  kill(): void;
}

/** pg_restore reading `input` (a follower, or nothing); a follower that ends early is not an error here. */
function pgRestoreFrom(pgRestore: string, args: string[], env: NodeJS.ProcessEnv, input?: ChildProcess): PgRestoreRun {
  const child = spawn(pgRestore, args, { env, stdio: [input?.stdout ?? 'ignore', 'pipe', 'pipe'] });
  // The child holds its own end of the pipe; ours would keep the follower writing after pg_restore exits.
  input?.stdout?.destroy();
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    if (stdout.length < 50_000_000) stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 100_000) stderr += d;
  });
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', (error) => reject(new OperatorError(`cannot run ${pgRestore}: ${oneLine(error)}; install the PostgreSQL client programs or set the PostgreSQL bin directory`)));
    child.on('close', (code) => {
      // Reading stops with pg_restore (it may need only the first bytes).
      if (input && input.exitCode === null && input.signalCode === null) input.kill('SIGKILL');
      resolve({ code, stdout, stderr });
    });
  });
  return {
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      if (input && input.exitCode === null && input.signalCode === null) input.kill('SIGKILL');
    },
  };
}

export interface OverlappedLoadInput {
  readonly pgRestore: string;
  /** libpq environment of the staging database (the password travels only here). */
  readonly env: NodeJS.ProcessEnv;
  readonly database: string;
  /** Settles once the staging database exists (created while the first bytes download). */
  readonly databaseReady: Promise<unknown>;
  /** The file being downloaded (always a prefix of the object), and its followers. */
  readonly file: string;
  readonly followers: DownloadFollowers;
  /** Settles when the download is complete and verified (or rejects with why not). */
  readonly download: Promise<unknown>;
  readonly tables: BackupManifest['tables'];
  readonly jobs: number;
  /** Where the -L list files go (the download's temp directory). */
  readonly dir: string;
  /**
   * Load the biggest table through `jobs` COPY sessions at once (parallel-copy.ts) when it holds at
   * least this many rows and at least as many as all the other tables together; 0 turns it off.
   */
  readonly parallelCopyMinRows: number;
  /** Opens a session on the staging database (parallel COPY). */
  readonly connect: () => Promise<Client>;
  /** The same download, for node's own reads of the archive (parallel COPY). */
  readonly archive: GrowingDownload;
  readonly log?: (line: string) => void;
  /**
   * Runs once every table's data and its own indexes are loaded, beside the last post-data step
   * (foreign keys, materialized views, ACLs: nothing that adds or removes a table's rows).
   */
  readonly whenRowsLoaded?: () => Promise<unknown>;
}

interface ParallelCopyPlan {
  /** The table's TABLE DATA line, and the list without it. */
  readonly line: string;
  readonly rest: string;
  readonly layout: ArchiveLayout;
  readonly entry: ArchiveTocEntry;
  readonly settings: string[];
}

/**
 * Whether the biggest table is loaded by parallel COPY (splitTable), and what that needs: the
 * archive's layout (a version and compression node reads: 1.14-1.16, gzip or none; otherwise
 * pg_restore loads it, as every other table) and pg_restore's session settings (its script
 * output for an empty list).
 */
async function planParallelCopy(
  toc: string,
  input: OverlappedLoadInput,
  script: (args: string[]) => Promise<string>,
  emptyList: (name: string) => string,
): Promise<ParallelCopyPlan | undefined> {
  if (input.parallelCopyMinRows <= 0) return undefined;
  const split = splitTable(toc, input.tables, input.jobs, input.parallelCopyMinRows);
  if (!split) return undefined;
  const dumpId = Number(/^(\d+);/.exec(split.line)?.[1]);
  let layout: ArchiveLayout;
  try {
    layout = await archiveLayout(input.archive);
  } catch (error) {
    if (!(error instanceof UnsupportedArchive || error instanceof NeedMoreBytes)) throw error;
    input.log?.(`parallel COPY off: ${error.message}; pg_restore loads every table`);
    return undefined;
  }
  const entry = layout.entries.find((e) => e.dumpId === dumpId && e.desc === 'TABLE DATA' && e.hasData && e.copyStatement);
  if (!entry || (layout.compression !== 'gzip' && layout.compression !== 'none')) {
    input.log?.(`parallel COPY off: ${entry ? `${layout.compression} compression` : `no COPY for TOC entry ${dumpId}`}; pg_restore loads every table`);
    return undefined;
  }
  const settings = parseSessionSettings(await script(['--file=-', '-L', emptyList('settings.list')]));
  input.log?.(`loading ${entry.namespace ?? ''}.${entry.tag} with ${input.jobs} COPY sessions`);
  return { ...split, layout, entry, settings };
}

/**
 * The whole custom-format load into the staging database, overlapped with the download (see the
 * top of this file). Resolves once the download is verified and every pg_restore exited 0. The
 * download's own failure (a corrupt, truncated or missing object) wins over the load failures it
 * causes; then the first pg_restore failure. Post-data steps read only the verified file.
 */
export async function loadOverlappingDownload(input: OverlappedLoadInput): Promise<void> {
  const runs: PgRestoreRun[] = [];
  const track = (run: PgRestoreRun): PgRestoreRun => {
    runs.push(run);
    return run;
  };
  const follow = (args: string[]): PgRestoreRun => track(pgRestoreFrom(input.pgRestore, args, input.env, input.followers.follow()));
  const fromFile = (args: string[]): PgRestoreRun => track(pgRestoreFrom(input.pgRestore, [...args, input.file], input.env));
  const succeeded = async (run: PgRestoreRun, what: string): Promise<string> => {
    const result = await run.exited;
    if (result.code !== 0) throw new OperatorError(`pg_restore failed (exit ${result.code}, ${what}): ${firstError(result.stderr)}; the target was not touched`);
    return result.stdout;
  };
  const writeList = (name: string, list: string): string => {
    const file = path.join(input.dir, name);
    fs.writeFileSync(file, list, { mode: 0o600 });
    return file;
  };
  const restoreArgs = (section: string, list: string, jobs = 1): string[] => [
    '--no-owner',
    '--exit-on-error',
    `--section=${section}`,
    '-L',
    list,
    ...(jobs > 1 ? ['-j', String(jobs)] : []),
    '-d',
    input.database,
  ];

  // The parallel COPY reads the archive itself: stopping it is failing its reads.
  const stopAll = (): void => {
    for (const run of runs) run.kill();
    input.archive.fail(new OperatorError('the restore stopped'));
  };

  const loading = (async (): Promise<void> => {
    const toc = await succeeded(follow(['--list']), 'reading the table of contents');
    // Planned while the schema loads (both read only the archive's first bytes).
    const planning = planParallelCopy(toc, input, (args) => succeeded(follow(args), 'reading the session settings'), (name) => writeList(name, ''));
    planning.catch(() => undefined);
    await input.databaseReady;
    const schema = succeeded(follow(['--no-owner', '--exit-on-error', '--section=pre-data', '-d', input.database]), 'schema');
    schema.catch(() => undefined);
    const parallel = await planning;
    const dataLists = parallel ? [`${parallel.line}\n`, ...planDataLoads(parallel.rest, input.tables, input.jobs - 1)] : planDataLoads(toc, input.tables, input.jobs);
    // The parallel COPY opens its sessions while the schema loads, and has every core to itself:
    // the other tables load after it (it holds at least half of the rows; they then overlap its
    // indexes).
    const split = parallel
      ? parallelCopy({
          rows: tableRows(input.archive, parallel.layout, parallel.entry.dumpId),
          settings: parallel.settings,
          copyStatement: parallel.entry.copyStatement ?? '',
          connect: input.connect,
          sessions: input.jobs,
          startAfter: schema,
        })
      : undefined;
    let verified = false;
    input.download.then(() => (verified = true), () => undefined);
    const dataLoads = dataLists.map(async (list, i) => {
      const file = writeList(`data-${i}.list`, list);
      if (split && i === 0) return split;
      await schema;
      await split?.catch(() => undefined);
      // Once verified, the file itself: pg_restore seeks past the blocks it does not load.
      return succeeded(verified ? fromFile(restoreArgs('data', file)) : follow(restoreArgs('data', file)), 'table data');
    });
    // Observed below, after the download's verdict (which wins when both fail).
    for (const load of dataLoads) load.catch(() => undefined);

    // Post-data is planned from the verified file only.
    await input.download;
    const script = await succeeded(fromFile(['--file=-', '--section=post-data']), 'reading the post-data entries');
    const plan = planPostData(toc, postDataTables(script), dataLists.map((list) => tablesOfList(list, input.tables)));
    // At most `jobs` busy sessions, as pg_restore -j keeps: a table's indexes get the workers that the
    // data loads still running do not use (more would slow the biggest load, the critical path).
    let loadsRunning = dataLoads.length;
    for (const load of dataLoads) void load.then(() => (loadsRunning -= 1), () => undefined);
    const perTable = dataLoads.map(async (load, i) => {
      await load;
      if (plan.perProcess[i] === '') return;
      const jobs = Math.max(1, input.jobs - loadsRunning);
      await succeeded(fromFile(restoreArgs('post-data', writeList(`post-${i}.list`, plan.perProcess[i]), jobs)), 'indexes and constraints');
    });
    // The first failure stops everything else: the staging database is dropped anyway.
    await Promise.all(
      perTable.map((step) =>
        step.catch((error: unknown) => {
          stopAll();
          throw error;
        }),
      ),
    );
    // Every table's rows are in: a check of them runs beside the last step (which adds no rows).
    const lastStep = plan.last !== '' ? succeeded(fromFile(restoreArgs('post-data', writeList('post-last.list', plan.last), input.jobs)), 'foreign keys and the rest') : undefined;
    const [last, check] = await Promise.allSettled([lastStep, input.whenRowsLoaded?.()]);
    if (last.status === 'rejected') throw last.reason;
    if (check.status === 'rejected') throw check.reason;
  })();
  const [downloaded, loaded] = await Promise.allSettled([input.download, loading]);
  stopAll();
  if (downloaded.status === 'rejected') throw downloaded.reason;
  if (loaded.status === 'rejected') throw loaded.reason;
}

