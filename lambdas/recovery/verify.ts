import { OPERATOR_CLI, operatorCommand } from '../shared/constants';
import { oneLine } from '../shared/errors';
import { openClient, type SessionConfig } from '../shared/pg-connection';
import { QUERY_CANCELED, sqlState } from '../shared/pg-errors';
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
  /**
   * How long the reads of one verification may take in all: a check that could not end before it
   * is not started. The verification runs in a Lambda function stopped at 15 minutes, and each of
   * its statements may take the statement timeout: without a bound, a few slow checks on a fresh
   * copy got the function killed before it reported anything, and the recovery failed where it
   * should have been "unverified" (the copy kept, the cutover open with --unverified).
   * @default VERIFY_BUDGET_MS (12 minutes: 3 are left for the connections and the records)
   */
  readonly budgetMs?: number;
}

const DEFAULT_STATEMENT_TIMEOUT_MS = 60_000;
export const VERIFY_BUDGET_MS = 12 * 60_000;

/**
 * One side as read: a failing check reads as null with its error kept; `timedOut` names the checks
 * the statement timeout ended, `notStarted` those the verification's budget left no time for.
 */
export type SideRead = SideSnapshot & { errors: Record<string, string>; timedOut?: readonly string[]; notStarted?: readonly string[] };

/**
 * Reads one side; a failing check reads as null with its error kept; none starts that could outlast
 * `deadline` (epoch ms). `stop` ends the read at once: its session is closed, the checks left unread.
 */
export async function snapshotSide(connection: SessionConfig, checks: VerificationChecks, deadline = Infinity, stop?: AbortSignal): Promise<SideRead> {
  const statementTimeoutMs = checks.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  // A side the server ends mid-read (production restarting or failing over: why one recovers)
  // fails its remaining checks, shown as unavailable, instead of crashing the step.
  const client = await openClient({ ...connection, statement_timeout: statementTimeoutMs });
  const onStop = () => void client.end().catch(() => undefined);
  stop?.addEventListener('abort', onStop, { once: true });
  const errors: Record<string, string> = {};
  const timedOut: string[] = [];
  const notStarted: string[] = [];
  const attempt = async <T>(key: string, sql: string, read: (rows: Record<string, unknown>[]) => T): Promise<T | null> => {
    if (stop?.aborted) {
      errors[key] = 'not read: the verification was stopped';
      return null;
    }
    if (Date.now() + statementTimeoutMs > deadline) {
      errors[key] = `not read: the verification's ${formatMinutes(checks.budgetMs ?? VERIFY_BUDGET_MS)} were spent`;
      notStarted.push(key);
      return null;
    }
    try {
      return read(await queryOneStatementReadOnly(client, sql));
    } catch (error) {
      errors[key] = oneLine(error);
      if (sqlState(error) === QUERY_CANCELED) timedOut.push(key);
      return null;
    }
  };
  try {
    // First: one row, and without it the copy fails the verification; a budget spent on counts must not skip it.
    const alembicRevision = await attempt('alembic', `SELECT version_num FROM ${quoteQualifiedName(checks.alembicVersionTable)}`, (rows) =>
      rows.length === 0 ? null : rows.map((r) => String(r.version_num)).sort().join(','),
    );
    const tables: Record<string, number | null> = {};
    for (const table of checks.criticalTables) {
      tables[table] = await attempt(`table:${table}`, `SELECT count(*)::bigint AS n FROM ${quoteQualifiedName(table)}`, (rows) => Number(rows[0].n));
    }
    const queries: Record<string, string | null> = {};
    for (const query of checks.criticalQueries) {
      queries[query] = await attempt(`query:${query}`, query, (rows) => (rows.length === 0 ? '(no rows)' : String(Object.values(rows[0])[0])));
    }
    return { tables, queries, alembicRevision, errors, timedOut, notStarted };
  } finally {
    stop?.removeEventListener('abort', onStop);
    await client.end().catch(() => undefined);
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
  // A check the verification's budget left no time for is slow in the same way: the earlier ones took it.
  const statementTimeoutMs = checks.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const budgetMs = checks.budgetMs ?? VERIFY_BUDGET_MS;
  let timedOut = false;
  let notStarted = false;
  const slowOnCopy = (key: string, check: string, theirs: string): boolean => {
    let recoveredText: string | undefined;
    if (recovered.timedOut?.includes(key)) {
      timedOut = true;
      recoveredText = `not read within ${statementTimeoutMs / 1000} s (first reads of a fresh copy come from S3)`;
    } else if (recovered.notStarted?.includes(key)) {
      notStarted = true;
      recoveredText = `not read: the verification's ${formatMinutes(budgetMs)} were spent on slower checks (first reads of a fresh copy come from S3)`;
    }
    if (recoveredText === undefined) return false;
    rows.push({ check, production: theirs, recovered: recoveredText, outcome: 'slow' });
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
  // Kept with the report: the lines that say why nothing was read are written later, from the record.
  const unreadBy = { ...(timedOut ? { statementTimeoutMs } : {}), ...(notStarted ? { budgetMs } : {}) };
  return { ok: problems.length === 0 && !unread, ...(unread && { unread: true, unreadBy }), checkedAt: input.now.toISOString(), rows, problems };
}

/** The recovery's status after this verification: `unverified` when nothing failed but no data was read. */
export function verificationStatus(report: VerificationReport): 'verified' | 'unverified' | 'verification-failed' {
  if (report.problems.length > 0) return 'verification-failed';
  return report.unread ? 'unverified' : 'verified';
}

/**
 * Reads both sides, at the same time (two servers: the slow reads of a fresh copy do not wait for
 * production's), within checks.budgetMs, and compares them. A recovered copy that cannot be
 * reached at all throws.
 */
export async function verifyRecovery(
  sides: { recovered: SessionConfig; production: SessionConfig },
  checks: VerificationChecks,
  now: () => Date = () => new Date(),
): Promise<VerificationReport> {
  const deadline = Date.now() + (checks.budgetMs ?? VERIFY_BUDGET_MS);
  // Both reads end before this returns or throws: a copy that cannot be read stops production's
  // read at once (its answer is not needed), and no session stays open after the step reported.
  const copyFailed = new AbortController();
  const [recovered, production] = await Promise.allSettled([
    snapshotSide(sides.recovered, checks, deadline).catch((error: unknown) => {
      copyFailed.abort();
      throw error;
    }),
    snapshotSide(sides.production, checks, deadline, copyFailed.signal),
  ]);
  if (recovered.status === 'rejected') throw recovered.reason;
  const productionError = production.status === 'rejected' ? oneLine(production.reason) : undefined;
  return compareSides({ recovered: recovered.value, production: production.status === 'fulfilled' ? production.value : undefined, productionError, checks, now: now() });
}

function formatMinutes(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms / 1000} s`;
}

/**
 * The side-by-side table, for the CLI and the event summary. Every row says its outcome, `same`
 * included: a blank cell under a header would leave the reader to guess what it means.
 */
export function formatVerification(report: VerificationReport): string {
  const header = ['check', 'production', 'recovered copy', 'outcome'];
  const lines = [header, ...report.rows.map((r) => [r.check, r.production, r.recovered, r.outcome])];
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const text = lines.map((l) => l.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd());
  text.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  const outcome =
    verificationStatus(report) === 'unverified'
      ? `verification: NOT VERIFIED: ${unreadCause(report)} (a fresh copy reads each block from S3 the first time): nothing about its data was checked`
      : report.ok
        ? 'verification: OK'
        : `verification: FAILED: ${report.problems.join('; ')}`;
  return [...text, outcome].join('\n');
}

/**
 * Why none of an `unverified` copy's data was read, for every line that says it: its checks
 * outlasted the statement timeout, the verification's budget left no time to start them, or some of
 * each. A record written before the report kept the cause (no unreadBy) was the statement timeout's.
 */
export function unreadCause(report: VerificationReport | undefined): string {
  const by = report?.unreadBy;
  const timeout = by?.statementTimeoutMs === undefined ? 'the statement timeout' : `the ${by.statementTimeoutMs / 1000} s statement timeout`;
  if (by?.budgetMs === undefined) return `no count or critical query of the copy finished within ${timeout}`;
  const budget = `the verification's ${formatMinutes(by.budgetMs)} budget`;
  if (by.statementTimeoutMs === undefined) return `no count or critical query of the copy was read: ${budget} left no time to start them`;
  return `no count or critical query of the copy was read: those started outlasted ${timeout}, and ${budget} left no time to start the others`;
}

/**
 * What to do with an `unverified` copy: for the event, the page and `recover status`. The workflow
 * names its environment (a page is read anywhere); the CLI's lines get the operator's own options.
 */
export function unverifiedNextStep(recoveryId: string, environmentName?: string): string {
  const cutover = operatorCommand(environmentName, `recover cutover ${recoveryId} --unverified --yes`);
  const abandon = operatorCommand(environmentName, `recover abandon ${recoveryId}`);
  return `check its data by hand (psql on the copy with a longer statement_timeout: counts of the critical tables), then "${cutover}" (the cutover still checks /ready and a write on the copy, and undoes itself if they fail), or "${abandon}"`;
}

/**
 * The refusal of --unverified for a copy whose verification did read its data (`verified`, or a
 * failed cutover of such a copy): the flag overrides a verification that read nothing, and taken
 * silently here it would hide an operator's mistake (the wrong recovery id, or a status misread).
 * Bad input, as "abandon --skip-final-snapshot" for a copy RDS can snapshot: exit 2, nothing changed.
 */
export function unverifiedFlagRefusal(command: string, recoveryId: string, status: string): string {
  return `${command}: --unverified: recovery ${recoveryId} is "${status}": its verification read the copy's data, so there is nothing to cut over unverified: run "${OPERATOR_CLI} recover cutover ${recoveryId} --yes" without it; nothing changed`;
}

/** The refusal of a cutover of an `unverified` copy without the operator's --unverified. */
export function unverifiedRefusal(command: string, recoveryId: string, report: VerificationReport | undefined): string {
  return `${command}: recovery ${recoveryId} is not verified: ${unreadCause(report)}; ${unverifiedNextStep(recoveryId)}; nothing was changed`;
}
