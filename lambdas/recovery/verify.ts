import { Client, ClientConfig } from 'pg';
import { oneLine } from '../shared/errors';
import { queryOneStatementReadOnly, quoteQualifiedName } from '../shared/postgres';
import { SideSnapshot, VerificationReport, VerificationRow } from './contract';

/**
 * Verification before anyone cuts over: row counts of the critical tables, the critical queries
 * and the Alembic revision, read on the recovered copy and on production, side by side. Both sides
 * are read inside READ ONLY transactions with a statement timeout: the production database is
 * never changed, and a production that is down or corrupted (why one recovers) shows as
 * "unavailable" instead of failing the verification.
 */
export interface VerificationChecks {
  readonly criticalTables: readonly string[];
  readonly criticalQueries: readonly string[];
  readonly alembicVersionTable: string;
  /** @default 60 s */
  readonly statementTimeoutMs?: number;
}

const DEFAULT_STATEMENT_TIMEOUT_MS = 60_000;

/** SQLSTATE query_canceled: what a statement timeout ends a statement with. */
const QUERY_CANCELED = '57014';

/** One side as read: a failing check reads as null with its error kept; `timedOut` names the checks the statement timeout ended. */
export type SideRead = SideSnapshot & { errors: Record<string, string>; timedOut?: readonly string[] };

/** Reads one side; a failing check reads as null with its error kept. */
export async function snapshotSide(connection: ClientConfig, checks: VerificationChecks): Promise<SideRead> {
  const client = new Client({ ...connection, statement_timeout: checks.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS });
  await client.connect();
  const errors: Record<string, string> = {};
  const timedOut: string[] = [];
  const attempt = async <T>(key: string, sql: string, read: (rows: Record<string, unknown>[]) => T): Promise<T | null> => {
    try {
      return read(await queryOneStatementReadOnly(client, sql));
    } catch (error) {
      errors[key] = oneLine(error);
      if ((error as { code?: string }).code === QUERY_CANCELED) timedOut.push(key);
      return null;
    }
  };
  try {
    const tables: Record<string, number | null> = {};
    for (const table of checks.criticalTables) {
      tables[table] = await attempt(`table:${table}`, `SELECT count(*)::bigint AS n FROM ${quoteQualifiedName(table)}`, (rows) => Number(rows[0].n));
    }
    const queries: Record<string, string | null> = {};
    for (const query of checks.criticalQueries) {
      queries[query] = await attempt(`query:${query}`, query, (rows) => (rows.length === 0 ? '(no rows)' : String(Object.values(rows[0])[0])));
    }
    const alembicRevision = await attempt('alembic', `SELECT version_num FROM ${quoteQualifiedName(checks.alembicVersionTable)}`, (rows) =>
      rows.length === 0 ? null : rows.map((r) => String(r.version_num)).sort().join(','),
    );
    return { tables, queries, alembicRevision, errors, timedOut };
  } finally {
    await client.end();
  }
}

export interface CompareInput {
  readonly recovered: SideRead;
  /** Undefined when production could not be reached at all. */
  readonly production?: SideRead;
  readonly productionError?: string;
  readonly checks: VerificationChecks;
  readonly now: Date;
}

/**
 * Differences in counts are expected (the copy is from an earlier time) and shown with their delta;
 * what fails the verification is the recovered copy missing something: a table, a query that no
 * longer runs, the Alembic revision.
 */
export function compareSides(input: CompareInput): VerificationReport {
  const { recovered, production, checks } = input;
  const rows: VerificationRow[] = [];
  const problems: string[] = [];
  const prodValue = (value: string | number | null | undefined, key: string) =>
    production === undefined ? 'unavailable' : value === null || value === undefined ? `unavailable (${production.errors[key] ?? 'absent'})` : String(value);

  // A fresh RDS copy loads each block from S3 on its first read: a full count of a large table can
  // outlast the statement timeout there. The table exists (a missing one fails at once), so a
  // timed-out read is shown as slow, not taken for a missing table that would block the cutover.
  const slowOnCopy = (key: string, check: string, theirs: string): boolean => {
    if (!recovered.timedOut?.includes(key)) return false;
    const seconds = (checks.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS) / 1000;
    rows.push({ check, production: theirs, recovered: `not read within ${seconds} s (first reads of a fresh copy come from S3)`, outcome: 'slow' });
    return true;
  };

  for (const table of checks.criticalTables) {
    const mine = recovered.tables[table];
    const theirs = production?.tables[table];
    if ((mine === null || mine === undefined) && slowOnCopy(`table:${table}`, `rows in ${table}`, prodValue(theirs, `table:${table}`))) continue;
    if (mine === null || mine === undefined) {
      problems.push(`table ${table} cannot be counted on the recovered copy: ${recovered.errors[`table:${table}`] ?? 'absent'}`);
      rows.push({ check: `rows in ${table}`, production: prodValue(theirs, `table:${table}`), recovered: 'missing', outcome: 'missing' });
      continue;
    }
    const same = typeof theirs === 'number' && theirs === mine;
    const delta = typeof theirs === 'number' && theirs !== mine ? ` (${mine - theirs > 0 ? '+' : ''}${mine - theirs})` : '';
    rows.push({ check: `rows in ${table}`, production: prodValue(theirs, `table:${table}`), recovered: `${mine}${delta}`, outcome: same ? 'same' : 'differs' });
  }
  for (const query of checks.criticalQueries) {
    const mine = recovered.queries[query];
    const theirs = production?.queries[query];
    if ((mine === null || mine === undefined) && slowOnCopy(`query:${query}`, query, prodValue(theirs, `query:${query}`))) continue;
    if (mine === null || mine === undefined) {
      problems.push(`critical query fails on the recovered copy: ${query}: ${recovered.errors[`query:${query}`] ?? 'no result'}`);
      rows.push({ check: query, production: prodValue(theirs, `query:${query}`), recovered: 'missing', outcome: 'missing' });
      continue;
    }
    rows.push({ check: query, production: prodValue(theirs, `query:${query}`), recovered: mine, outcome: theirs === mine ? 'same' : 'differs' });
  }
  const mine = recovered.alembicRevision;
  const theirs = production?.alembicRevision;
  if (mine === null) {
    problems.push(`no Alembic revision on the recovered copy (${checks.alembicVersionTable}: ${recovered.errors.alembic ?? 'empty'})`);
    rows.push({ check: 'Alembic revision', production: prodValue(theirs, 'alembic'), recovered: 'missing', outcome: 'missing' });
  } else {
    rows.push({ check: 'Alembic revision', production: prodValue(theirs, 'alembic'), recovered: mine, outcome: theirs === mine ? 'same' : 'differs' });
  }
  if (!production && input.productionError) {
    rows.push({ check: 'database reachable', production: `no (${input.productionError})`, recovered: 'yes', outcome: 'differs' });
  }
  // `slow` does not block the cutover because other checks read the data; when every one of them is
  // slow, only the Alembic revision (one row) was read: nothing says the data is there.
  const dataChecks = checks.criticalTables.length + checks.criticalQueries.length;
  const unread = dataChecks > 0 && rows.filter((row) => row.outcome === 'slow').length === dataChecks;
  return { ok: problems.length === 0 && !unread, ...(unread && { unread: true }), checkedAt: input.now.toISOString(), rows, problems };
}

/** The recovery's status after this verification: `unverified` when nothing failed but no data was read. */
export function verificationStatus(report: VerificationReport): 'verified' | 'unverified' | 'verification-failed' {
  if (report.problems.length > 0) return 'verification-failed';
  return report.unread ? 'unverified' : 'verified';
}

/** Reads both sides and compares them. A recovered copy that cannot be reached at all throws. */
export async function verifyRecovery(
  sides: { recovered: ClientConfig; production: ClientConfig },
  checks: VerificationChecks,
  now: () => Date = () => new Date(),
): Promise<VerificationReport> {
  const recovered = await snapshotSide(sides.recovered, checks);
  let production: CompareInput['production'];
  let productionError: string | undefined;
  try {
    production = await snapshotSide(sides.production, checks);
  } catch (error) {
    productionError = oneLine(error);
  }
  return compareSides({ recovered, production, productionError, checks, now: now() });
}

/** The side-by-side table, for the CLI and the event summary. */
export function formatVerification(report: VerificationReport): string {
  const header = ['check', 'production', 'recovered copy', ''];
  const lines = [header, ...report.rows.map((r) => [r.check, r.production, r.recovered, r.outcome === 'same' ? '' : r.outcome])];
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const text = lines.map((l) => l.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd());
  text.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const outcome =
    verificationStatus(report) === 'unverified'
      ? 'verification: NOT VERIFIED: no count or critical query of the copy finished within the statement timeout (a fresh copy reads each block from S3 the first time): nothing about its data was checked'
      : report.ok
        ? 'verification: OK'
        : `verification: FAILED: ${report.problems.join('; ')}`;
  return [...text, outcome].join('\n');
}

/** What to do with an `unverified` copy: for the event, the page and `recover status`. */
export function unverifiedNextStep(recoveryId: string): string {
  return `check its data by hand (psql on the copy with a longer statement_timeout: counts of the critical tables), then "atmr-dr recover cutover ${recoveryId} --unverified --yes" (the cutover still checks /ready and a write on the copy, and undoes itself if they fail), or "atmr-dr recover abandon ${recoveryId}"`;
}

/**
 * The refusal of --unverified for a copy whose verification did read its data (`verified`, or a
 * failed cutover of such a copy): the flag overrides a verification that read nothing, and taken
 * silently here it would hide an operator's mistake (the wrong recovery id, or a status misread).
 * Bad input, as "abandon --skip-final-snapshot" for a copy RDS can snapshot: exit 2, nothing changed.
 */
export function unverifiedFlagRefusal(command: string, recoveryId: string, status: string): string {
  return `${command}: --unverified: recovery ${recoveryId} is "${status}": its verification read the copy's data, so there is nothing to cut over unverified: run "atmr-dr recover cutover ${recoveryId} --yes" without it; nothing changed`;
}

/** The refusal of a cutover of an `unverified` copy without the operator's --unverified. */
export function unverifiedRefusal(command: string, recoveryId: string): string {
  return `${command}: recovery ${recoveryId} is not verified: none of its copy's data could be read within the statement timeout; ${unverifiedNextStep(recoveryId)}; nothing was changed`;
}
