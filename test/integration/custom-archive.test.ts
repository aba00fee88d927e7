import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'pg';
import { ArchiveSource, NeedMoreBytes, UnsupportedArchive, bufferSource, dataChunks, readLayout, tableRows } from '../../lambdas/restore/custom-archive';
import { OperatorError } from '../../lambdas/shared/errors';
import { parallelCopy, parseSessionSettings } from '../../lambdas/restore/parallel-copy';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { FIXTURE_SQL } from './backup-fixture';

/**
 * The archive reader and the parallel COPY against archives made by the real pg_dump and loads
 * into the real server: what node reads must be exactly what pg_restore would send.
 */
const cluster = testCluster();
let source: string;
let work: string;
let archive: string;
let uncompressed: string;

function pgEnv(): NodeJS.ProcessEnv {
  return { ...process.env, ...cluster.env };
}

function fileSource(file: string): ArchiveSource {
  return bufferSource(fs.readFileSync(file));
}

async function collect(rows: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of rows) parts.push(part);
  return Buffer.concat(parts);
}

/** What pg_restore sends for one table: the COPY data of its script output, without the terminator. */
function pgRestoreCopyData(file: string, dumpId: number): string {
  const list = path.join(work, `entry-${dumpId}.list`);
  fs.writeFileSync(list, `${dumpId};\n`);
  const script = execFileSync('pg_restore', ['--section=data', '-L', list, '-f', '-', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const start = script.indexOf(' FROM stdin;\n') + ' FROM stdin;\n'.length;
  return script.slice(start, script.indexOf('\n\\.\n', start) + 1);
}

/** Sessions still on `database`, waiting up to 2 s for ended ones to leave (a backend exits asynchronously). */
async function sessionsOn(database: string): Promise<number> {
  let count = 0;
  for (let i = 0; i < 20; i += 1) {
    count = Number(psql(cluster, 'postgres', `SELECT count(*) FROM pg_stat_activity WHERE datname = '${database}'`));
    if (count === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return count;
}

/** A new database holding one empty table. */
function databaseWithTable(prefix: string, tableDdl: string): string {
  const database = uniqueDatabaseName(prefix);
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, tableDdl);
  return database;
}

/** COPY data arriving in exactly these pieces. */
async function* pieces(...texts: string[]): AsyncGenerator<Buffer> {
  for (const text of texts) yield Buffer.from(text);
}

async function connectTo(database: string): Promise<Client> {
  const client = new Client({ host: cluster.host, port: cluster.port, user: cluster.user, database });
  await client.connect();
  return client;
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-archive-'));
  source = uniqueDatabaseName('archive_src');
  psql(cluster, 'postgres', `CREATE DATABASE ${source}`);
  psql(cluster, source, FIXTURE_SQL);
  archive = path.join(work, 'fixture.dump');
  uncompressed = path.join(work, 'fixture-z0.dump');
  // As the backup writes them: to a pipe (no data offsets in the TOC).
  fs.writeFileSync(archive, execFileSync('pg_dump', ['-Fc', '-Z', '1', '-d', source], { env: pgEnv(), maxBuffer: 64 << 20 }));
  fs.writeFileSync(uncompressed, execFileSync('pg_dump', ['-Fc', '-Z', '0', '-d', source], { env: pgEnv(), maxBuffer: 64 << 20 }));
}, 60_000);

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

describe('readLayout', () => {
  it('reads the TOC of a real archive: the same entries as pg_restore --list, with their COPY statements', () => {
    // Arrange
    const listed = execFileSync('pg_restore', ['--list', archive], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => / TABLE DATA /.test(l))
      .map((l) => Number(l.split(';')[0]));

    // Act
    const layout = readLayout(fs.readFileSync(archive));

    // Assert
    expect(layout.compression).toBe('gzip');
    expect(layout.version).toMatch(/^1\.1[4-6]\.0$/);
    const tableData = layout.entries.filter((e) => e.desc === 'TABLE DATA');
    expect(tableData.map((e) => e.dumpId).sort()).toEqual(listed.sort());
    const rides = tableData.find((e) => e.tag === 'rides');
    expect(rides?.namespace).toBe('public');
    expect(rides?.copyStatement).toMatch(/^COPY public\.rides \(id, status, payload, photo, tags, scores, created_at, updated_at\) FROM stdin;/);
    expect(layout.entries.find((e) => e.desc === 'ENCODING')?.defn).toMatch(/client_encoding/);
    expect(readLayout(fs.readFileSync(uncompressed)).compression).toBe('none');
  });

  it('asks for more bytes when the TOC is cut anywhere, and refuses what is not an archive it reads', () => {
    // Arrange
    const bytes = fs.readFileSync(archive);
    const { dataStart } = readLayout(bytes);
    const newer = Buffer.from(bytes);
    newer[6] = 99; // minor version 1.99

    // Act / Assert
    for (const cut of [0, 4, 12, 40, Math.floor(dataStart / 2), dataStart - 1]) {
      expect(() => readLayout(bytes.subarray(0, cut))).toThrow(NeedMoreBytes);
    }
    expect(() => readLayout(Buffer.from('-- PostgreSQL database dump\nSET x = 1;\n'))).toThrow(UnsupportedArchive);
    expect(() => readLayout(newer)).toThrow(/version 1\.99\.0 is not read here/);
  });
});

describe('tableRows', () => {
  it.each([
    ['gzip (-Z 1)', () => archive],
    ['no compression (-Z 0)', () => uncompressed],
  ])('gives exactly the COPY data pg_restore sends, for every table, from a %s archive', async (_how, file) => {
    // Arrange
    const layout = readLayout(fs.readFileSync(file()));
    const tables = layout.entries.filter((e) => e.desc === 'TABLE DATA');

    // Act / Assert: the blocks before each one are skipped by their framing
    for (const entry of tables) {
      const rows = (await collect(tableRows(fileSource(file()), layout, entry.dumpId, 1000))).toString('utf8');
      // As stored by pg_dump: the rows, then COPY's `\.` end line (parallelCopy stops there).
      expect(rows.replace(/(^|\n)\\\.\n+$/, '$1')).toBe(pgRestoreCopyData(file(), entry.dumpId));
    }
    expect(tables.length).toBeGreaterThanOrEqual(6);
  });

  it('fails with the reason on a truncated archive and on a block that is not there', async () => {
    // Arrange
    const bytes = fs.readFileSync(archive);
    const layout = readLayout(bytes);
    const rides = layout.entries.find((e) => e.desc === 'TABLE DATA' && e.tag === 'rides')!;
    const firstChunk = Buffer.from((await dataChunks(fileSource(archive), layout, rides.dumpId).next()).value as Buffer);
    const cutInsideRides = bytes.indexOf(firstChunk.subarray(0, 64)) + 200;
    const truncated = bufferSource(bytes.subarray(0, cutInsideRides));

    // Act / Assert
    await expect(collect(tableRows(truncated, layout, rides.dumpId))).rejects.toThrow(/the archive ends inside a data block/);
    await expect(collect(tableRows(fileSource(archive), layout, 999_999))).rejects.toThrow(/data block 999999 not found/);
  });
});

describe('parallelCopy', () => {
  const settings = (): string[] => {
    const empty = path.join(work, 'empty.list');
    fs.writeFileSync(empty, '');
    return parseSessionSettings(execFileSync('pg_restore', ['-f', '-', '-L', empty, archive], { encoding: 'utf8' }));
  };

  it("loads a table through several sessions to the same content as pg_restore (bytea, arrays, jsonb, escaped newlines)", async () => {
    // Arrange: the schema only, then rides' rows in batches small enough to reach every session
    const target = uniqueDatabaseName('pcopy');
    psql(cluster, 'postgres', `CREATE DATABASE ${target}`);
    execFileSync('pg_restore', ['--section=pre-data', '-d', target, archive], { env: pgEnv() });
    const layout = readLayout(fs.readFileSync(archive));
    const rides = layout.entries.find((e) => e.desc === 'TABLE DATA' && e.tag === 'rides')!;

    // Act
    const result = await parallelCopy({
      rows: tableRows(fileSource(archive), layout, rides.dumpId, 2000),
      settings: settings(),
      copyStatement: rides.copyStatement!,
      sessions: 3,
      batchBytes: 3000,
      connect: () => connectTo(target),
    });

    // Assert
    expect(result.rows).toBe(2000);
    expect(result.rowsPerSession).toHaveLength(3);
    for (const rows of result.rowsPerSession) expect(rows).toBeGreaterThan(0);
    const digestOf = (db: string): string => psql(cluster, db, "SELECT count(*) || ':' || md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM public.rides t");
    expect(digestOf(target)).toBe(digestOf(source));
    expect(await sessionsOn(target)).toBe(0);
    psql(cluster, 'postgres', `DROP DATABASE ${target}`);
  });

  it('fails naming the table when the server rejects a row, and leaves no row behind', async () => {
    // Arrange: a row with a column too many
    const target = databaseWithTable('pcopy_bad', 'CREATE TABLE public.t (id int, note text)');
    const good = Array.from({ length: 500 }, (_, i) => `${i}\tnote ${i}\n`).join('');

    // Act
    const copy = parallelCopy({ rows: pieces(good, '501\tnote\textra\n', good), settings: [], copyStatement: 'COPY public.t (id, note) FROM stdin;', sessions: 2, batchBytes: 100, connect: () => connectTo(target) });

    // Assert
    await expect(copy).rejects.toThrow(OperatorError);
    await expect(copy).rejects.toThrow(/^COPY public\.t failed: .*extra data after last expected column/);
    expect(psql(cluster, target, 'SELECT count(*) FROM public.t')).toBe('0');
    psql(cluster, 'postgres', `DROP DATABASE ${target} WITH (FORCE)`);
  });

  it('fails with the refused session, and ends the sessions that did open (even after the failure)', async () => {
    // Arrange: the second session is refused at once, the third opens late
    const target = databaseWithTable('pcopy_conn', 'CREATE TABLE public.t (id int)');
    let calls = 0;
    const connect = async (): Promise<Client> => {
      calls += 1;
      if (calls === 2) throw new OperatorError('cannot connect to the staging database: too many clients');
      if (calls === 3) await new Promise((resolve) => setTimeout(resolve, 300));
      return connectTo(target);
    };

    // Act
    const copy = parallelCopy({ rows: pieces('1\n'), settings: [], copyStatement: 'COPY public.t (id) FROM stdin;', sessions: 3, connect });

    // Assert
    await expect(copy).rejects.toThrow(/^cannot connect to the staging database: too many clients$/);
    expect(await sessionsOn(target)).toBe(0);
    psql(cluster, 'postgres', `DROP DATABASE ${target}`);
  });

  it("stops at pg_dump's end line even when it is cut across pieces, and keeps a value ending in a backslash and a dot", async () => {
    // Arrange: the end line split over two pieces; row 3's value is `x\.` (written x\\.)
    const target = databaseWithTable('pcopy_end', 'CREATE TABLE public.t (id int, note text)');

    // Act
    const result = await parallelCopy({ rows: pieces('1\ta\n2\tb\n3\tx\\\\.\n\\', '.\n\n\n'), settings: [], copyStatement: 'COPY public.t (id, note) FROM stdin;', sessions: 2, batchBytes: 4, connect: () => connectTo(target) });

    // Assert
    expect(result.rows).toBe(3);
    expect(psql(cluster, target, "SELECT string_agg(id || '=' || note, ',' ORDER BY id) FROM public.t")).toBe('1=a,2=b,3=x\\.');
    psql(cluster, 'postgres', `DROP DATABASE ${target}`);
  });

  it('keeps only the SET and set_config lines of the settings script, and refuses anything else', () => {
    // Arrange
    const script = '--\n-- PostgreSQL database dump\n--\n\\restrict abc\n\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config(\'search_path\', \'\', false);\n\\unrestrict abc\n';

    // Act / Assert
    expect(parseSessionSettings(script)).toEqual(['SET statement_timeout = 0;', "SELECT pg_catalog.set_config('search_path', '', false);"]);
    expect(settings()).toContain("SET client_encoding = 'UTF8';");
    expect(() => parseSessionSettings('SET x = 1;\nDROP TABLE t;\n')).toThrow(/unexpected line in pg_restore's session settings: "DROP TABLE t;"/);
  });
});
