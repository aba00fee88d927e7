import { restoreTestText, type RestoreTestReport } from '../../../lambdas/restore/restore-test';

/** A passed run's report as runRestoreTest returns it; `over` changes what a case needs. */
function passed(over: Partial<RestoreTestReport> = {}): RestoreTestReport {
  return {
    ok: true,
    startedAt: '2026-12-06T09:00:00.000Z',
    finishedAt: '2026-12-06T09:00:30.000Z',
    manifestKey: 'restore-tests/backups/hourly/atmr/2026/12/06/atmr_20261206T090000Z.manifest.json',
    backupStartedAt: '2026-12-06T09:00:00.000Z',
    scratchDatabase: 'atmr_dr_restore_test_abc',
    scratchCreated: true,
    scratchDropped: true,
    rtoSeconds: 0.4,
    rpoSeconds: 0.2,
    rtoObjectiveSeconds: 1800,
    rpoObjectiveSeconds: 900,
    rtoMet: true,
    rpoMet: true,
    tablesRestored: 3,
    rowsRestored: 10,
    pointInTime: { before: '1:5:', snapshot: '1:6:', after: '1:7:', ok: true },
    criticalQueries: [{ sql: 'SELECT COUNT(*) FROM company', status: 'ok', detail: '2' }],
    steps: { backupSeconds: 17.1, downloadSeconds: 0.1, restoreSeconds: 0.2, verifySeconds: 0.1, checksSeconds: 0.01, cleanupSeconds: 0.05 },
    ...over,
  };
}

const lines = (report: RestoreTestReport) => restoreTestText(report).trimEnd().split('\n');

describe('restore-test text report', () => {
  it('says a missed objective on its verdict line and on its measure, still PASSED: the restore is verified', () => {
    // Arrange: the restore worked, slower than a 1 s objective
    const report = passed({ rtoSeconds: 6.865, rtoObjectiveSeconds: 1, rtoMet: false });

    // Act
    const text = lines(report);

    // Assert
    expect(text[0]).toBe('restore test PASSED (the restore is verified); RTO objective MISSED');
    expect(text.find((l) => l.startsWith('  RTO '))).toMatch(/^ {2}RTO 6\.9 s\b.*: objective 1 s MISSED$/);
    expect(text.find((l) => l.startsWith('  RPO '))).toMatch(/: objective 900 s met$/);
  });

  it('names both objectives when both are missed, and neither when both are met', () => {
    expect(lines(passed({ rtoMet: false, rpoMet: false }))[0]).toBe('restore test PASSED (the restore is verified); RTO and RPO objectives MISSED');
    expect(lines(passed())[0]).toBe('restore test PASSED');
  });

  it("says what the RTO spans, as the restore measures it, and that the test's own backup is not in it", () => {
    const report = passed({ rtoSeconds: 8.46, steps: { backupSeconds: 17.08, downloadSeconds: 1, restoreSeconds: 6, verifySeconds: 1, checksSeconds: 0.1, cleanupSeconds: 0.1 } });

    expect(lines(report)).toContain("  RTO 8.5 s (reading the manifest to the swap: download, load, row counts checked; the backup's 17.1 s not included): objective 1800 s met");
  });
});
