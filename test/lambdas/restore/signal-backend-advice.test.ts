import { signalBackendAdvice } from '../../../lambdas/restore/guards';

// The 15 lines are checked against a real server in test/integration/restore-target.test.ts; only
// PostgreSQL 15 is installed here, so the choice for 16 and later is checked by the version alone.
describe('signalBackendAdvice: the fix for --terminate-connections refused another role\'s session, by server version', () => {
  it.each([
    [150018, false, 'GRANT pg_signal_backend TO "ops"'],
    [150018, true, 'ALTER ROLE "ops" INHERIT (it is a member of pg_signal_backend, but NOINHERIT: the membership gives it no rights)'],
    [159999, true, 'ALTER ROLE "ops" INHERIT (it is a member of pg_signal_backend, but NOINHERIT: the membership gives it no rights)'],
    [160000, false, 'GRANT pg_signal_backend TO "ops" WITH INHERIT TRUE'],
    [
      160000,
      true,
      'GRANT pg_signal_backend TO "ops" WITH INHERIT TRUE (it is a member of pg_signal_backend, but its membership does not inherit, and from PostgreSQL 16 that is the grant\'s own INHERIT option, which ALTER ROLE ... INHERIT does not change)',
    ],
    [170004, false, 'GRANT pg_signal_backend TO "ops" WITH INHERIT TRUE'],
  ])('server_version_num %i, already a member without the rights: %s, advice: %s', (version, noinherit, fix) => {
    expect(signalBackendAdvice(version, noinherit, 'ops')).toBe(`have an admin run ${fix}`);
  });

  it('quotes the role as an identifier', () => {
    expect(signalBackendAdvice(160004, false, 'Ops "east"')).toBe('have an admin run GRANT pg_signal_backend TO "Ops ""east""" WITH INHERIT TRUE');
  });
});
