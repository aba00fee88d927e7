/**
 * The database shapes every bench runs on, generated in a few seconds to a minute each:
 *   many-medium:   BENCH_TABLES (default 24) tables of medium rows (text, numeric, timestamps,
 *                  jsonb), each with a primary key and a secondary index: the restore spreads over
 *                  tables and index builds, pg_restore -j parallelises well.
 *   wide-dominant: one table holding almost all the data, wide rows with jsonb and bytea (mostly
 *                  incompressible), beside two small tables: one table's COPY is the critical path.
 * BENCH_MB is the approximate size of each database on disk, one size or a comma list (default
 * "160,480"): the fixed costs of a run (the CLI's process start, creating the staging database,
 * the manifest writes) weigh three times less at 480 MB than at 160 MB, so a single size would show
 * only one end of that; production databases are larger still.
 * BENCH_SHAPES runs only the shapes named, one name or a comma list (default: every shape).
 */
import { psql, type PostgresCluster } from '../test/support/postgres';

export interface Shape {
  readonly name: string;
  readonly description: string;
  /** SQL that creates and fills the schema in the current database. */
  sql(targetMb: number): string;
}

const TABLES = Number(process.env.BENCH_TABLES ?? 24);
export const BENCH_SIZES_MB: readonly number[] = parseSizes(process.env.BENCH_MB ?? '160,480');

function parseSizes(value: string): number[] {
  const sizes = value.split(',').map((v) => Number(v.trim()));
  if (sizes.length === 0 || sizes.some((mb) => !Number.isFinite(mb) || mb <= 0)) {
    throw new Error(`invalid BENCH_MB "${value}": use a size in MB or a comma list, e.g. 160,480`);
  }
  return sizes;
}

export const SHAPES: readonly Shape[] = [
  {
    name: 'many-medium',
    description: `${TABLES} medium tables (text, numeric, timestamptz, jsonb; PK + 1 index each)`,
    sql(targetMb) {
      // ~260 bytes a row on disk with its two indexes.
      const rows = Math.max(1000, Math.round((targetMb * 1024 * 1024) / 260 / TABLES));
      return Array.from(
        { length: TABLES },
        (_, t) => `
CREATE TABLE t${t} (id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, address text NOT NULL,
  amount numeric(10,2) NOT NULL, at timestamptz NOT NULL, extra jsonb NOT NULL);
INSERT INTO t${t} SELECT i, i % 5000, (ARRAY['requested','assigned','done','cancelled'])[1 + i % 4],
  (i * 13 % 250) || ' rue du Rhône ' || md5(i::text), round(((i * 37) % 20000 / 100.0)::numeric, 2),
  timestamptz '2024-01-01' + i * interval '11 seconds', jsonb_build_object('i', i, 'km', i % 97, 'tag', md5((i + ${t})::text))
FROM generate_series(1, ${rows}) i;
CREATE INDEX t${t}_customer_at ON t${t} (customer_id, at);`,
      ).join('\n') + '\nVACUUM ANALYZE;';
    },
  },
  {
    name: 'wide-dominant',
    description: 'one table of wide rows (jsonb ~0.6 KB + bytea ~1 KB random) holding ~all the data, 2 small tables',
    sql(targetMb) {
      // ~1.9 KB a row on disk (bytea in TOAST, uncompressible).
      const rows = Math.max(1000, Math.round((targetMb * 1024 * 1024) / 1900));
      return `
CREATE TABLE company (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO company SELECT i, 'Transports ' || md5(i::text) FROM generate_series(1, 2000) i;
CREATE TABLE driver (id int PRIMARY KEY, company_id int NOT NULL REFERENCES company (id), name text NOT NULL);
INSERT INTO driver SELECT i, 1 + i % 2000, 'Driver ' || i FROM generate_series(1, 20000) i;
CREATE TABLE trip_document (
  id bigint PRIMARY KEY, driver_id int NOT NULL REFERENCES driver (id), created_at timestamptz NOT NULL,
  route jsonb NOT NULL, scan bytea NOT NULL);
INSERT INTO trip_document
SELECT i, 1 + i % 20000, timestamptz '2025-01-01' + i * interval '7 seconds',
  (SELECT jsonb_agg(jsonb_build_array(46.2 + (i % 1000) / 10000.0 + k / 1000.0, 6.1 + k / 1000.0, md5((i * k)::text))) FROM generate_series(1, 12) k),
  decode(repeat(md5(i::text), 2), 'hex') || gen_random_bytes_fallback(960)
FROM generate_series(1, ${rows}) i;
CREATE INDEX trip_document_driver ON trip_document (driver_id, created_at);
VACUUM ANALYZE;`;
    },
  },
];

/** The shapes BENCH_SHAPES names (default: all), in SHAPES' order; an unknown name stops the bench before it starts. */
export function benchShapes(value = process.env.BENCH_SHAPES): readonly Shape[] {
  if (value === undefined || value.trim() === '') return SHAPES;
  const names = value.split(',').map((v) => v.trim());
  const unknown = names.filter((name) => !SHAPES.some((s) => s.name === name));
  if (unknown.length > 0) throw new Error(`invalid BENCH_SHAPES "${value}": unknown ${unknown.join(', ')}; use ${SHAPES.map((s) => s.name).join(', ')} or a comma list`);
  return SHAPES.filter((s) => names.includes(s.name));
}

/** Random bytes without pgcrypto: md5 chunks of random(), hex-decoded (incompressible enough for a bench). */
const RANDOM_BYTES_SQL = `
CREATE OR REPLACE FUNCTION gen_random_bytes_fallback(n int) RETURNS bytea LANGUAGE sql VOLATILE AS
$$ SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, (n + 15) / 16) $$;`;

/** Creates `database` and fills it with `shape`; returns its size in bytes (pg_database_size). */
export function generateShape(cluster: PostgresCluster, database: string, shape: Shape, targetMb: number): number {
  psql(cluster, 'postgres', `CREATE DATABASE ${database}`);
  psql(cluster, database, RANDOM_BYTES_SQL + shape.sql(targetMb));
  // The helper is not part of the data: the restored copy and the reference compare on tables.
  psql(cluster, database, 'DROP FUNCTION gen_random_bytes_fallback(int)');
  return Number(psql(cluster, database, `SELECT pg_database_size('${database}')`));
}
