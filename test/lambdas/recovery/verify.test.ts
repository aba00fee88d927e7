import type { VerificationReport } from '../../../lambdas/recovery/contract';
import { compareSides, formatVerification, type SideRead, unreadCause, unverifiedNextStep, unverifiedRefusal, VERIFY_BUDGET_MS } from '../../../lambdas/recovery/verify';

/**
 * Why an unverified copy's data was not read, as compareSides records it and every line says it:
 * the statement timeout, the verification's overall budget, or both. The reads themselves are
 * test/integration/recovery-verify.test.ts's (real PostgreSQL); here each side is as snapshotSide
 * returns it.
 */
describe('an unverified copy: the cause named is the one that left its data unread', () => {
  const checks = { criticalTables: ['company', 'booking'], criticalQueries: ['SELECT 1'], alembicVersionTable: 'alembic_version' };
  const keys = ['table:company', 'table:booking', 'query:SELECT 1'];
  const production: SideRead = { tables: { company: 5, booking: 120 }, queries: { 'SELECT 1': '1' }, alembicRevision: 'b', errors: {} };
  const copy = (timedOut: string[], notStarted: string[]): SideRead => ({
    tables: { company: null, booking: null },
    queries: { 'SELECT 1': null },
    alembicRevision: 'a',
    errors: Object.fromEntries(keys.map((k) => [k, 'not read'])),
    timedOut,
    notStarted,
  });
  const compare = (recovered: SideRead) => compareSides({ recovered, production, checks, now: new Date('2026-12-03T04:00:00Z') });
  const outcomeLine = (report: VerificationReport) => formatVerification(report).split('\n').at(-1);

  it('every check outlasted the statement timeout: the line names the 60 s statement timeout, not the budget', () => {
    const report = compare(copy(keys, []));

    expect(report).toMatchObject({ ok: false, unread: true, unreadBy: { statementTimeoutMs: 60_000 }, problems: [] });
    expect(report.unreadBy).not.toHaveProperty('budgetMs');
    expect(outcomeLine(report)).toBe(
      'verification: NOT VERIFIED: no count or critical query of the copy finished within the 60 s statement timeout (a fresh copy reads each block from S3 the first time): nothing about its data was checked',
    );
  });

  it("the verification's budget left no time to start any check: the line names the 12 min budget, not the statement timeout", () => {
    const report = compare(copy([], keys));

    expect(report).toMatchObject({ ok: false, unread: true, unreadBy: { budgetMs: VERIFY_BUDGET_MS }, problems: [] });
    expect(report.unreadBy).not.toHaveProperty('statementTimeoutMs');
    expect(outcomeLine(report)).toBe(
      "verification: NOT VERIFIED: no count or critical query of the copy was read: the verification's 12 min budget left no time to start them (a fresh copy reads each block from S3 the first time): nothing about its data was checked",
    );
    expect(unverifiedRefusal('recover cutover', 'r1', report)).toBe(
      `recover cutover: recovery r1 is not verified: no count or critical query of the copy was read: the verification's 12 min budget left no time to start them; ${unverifiedNextStep('r1')}; nothing was changed`,
    );
  });

  it('some checks timed out and the budget left none for the rest: the line names both', () => {
    const report = compare(copy(keys.slice(0, 2), keys.slice(2)));

    expect(report.unreadBy).toEqual({ statementTimeoutMs: 60_000, budgetMs: VERIFY_BUDGET_MS });
    expect(unreadCause(report)).toBe(
      "no count or critical query of the copy was read: those started outlasted the 60 s statement timeout, and the verification's 12 min budget left no time to start the others",
    );
    expect(outcomeLine(report)).toContain(`NOT VERIFIED: ${unreadCause(report)} (a fresh copy`);
  });

  it('a record written before the cause was kept (no unreadBy) reads as the statement timeout, as it was then', () => {
    const { unreadBy: _, ...stored } = compare(copy(keys, []));

    expect(outcomeLine(stored)).toBe(
      'verification: NOT VERIFIED: no count or critical query of the copy finished within the statement timeout (a fresh copy reads each block from S3 the first time): nothing about its data was checked',
    );
    expect(unverifiedRefusal('recover cutover', 'r1', stored)).toBe(
      `recover cutover: recovery r1 is not verified: no count or critical query of the copy finished within the statement timeout; ${unverifiedNextStep('r1')}; nothing was changed`,
    );
  });

  it('a copy some of whose data was read keeps no cause: it is verified', () => {
    const recovered = copy(keys.slice(1), []);
    const report = compare({ ...recovered, tables: { ...recovered.tables, company: 5 } });

    expect(report.ok).toBe(true);
    expect(report).not.toHaveProperty('unread');
    expect(report).not.toHaveProperty('unreadBy');
  });
});

describe('the verification table', () => {
  it('names every column, the outcome included, and says each row\'s outcome, "same" too', () => {
    const report: VerificationReport = {
      ok: true,
      checkedAt: '2026-11-30T15:00:00.000Z',
      problems: [],
      rows: [
        { check: 'rows in booking', production: '120', recovered: '100 (-20)', outcome: 'differs' },
        { check: 'Alembic revision', production: '4f2a', recovered: '4f2a', outcome: 'same' },
      ],
    };

    expect(formatVerification(report).split('\n')).toEqual([
      'check             production  recovered copy  outcome',
      '----------------  ----------  --------------  -------',
      'rows in booking   120         100 (-20)       differs',
      'Alembic revision  4f2a        4f2a            same',
      'verification: OK',
    ]);
  });
});
