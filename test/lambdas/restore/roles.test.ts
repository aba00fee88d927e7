import { rolesInSql } from '../../../lambdas/restore/load';

/**
 * The roles a restore needs, read from the statements pg_dump writes (as pg_restore --schema-only
 * prints them). The integration tests (restore-owners.test.ts) read them from a real archive; these
 * are the spellings a small fixture does not reach.
 */
describe('rolesInSql', () => {
  it('takes owners, grantees, revokees, default privileges and grantors, unquoting names and skipping PUBLIC', () => {
    // Arrange
    const sql = [
      'ALTER TABLE public.booking OWNER TO app;',
      'REVOKE ALL ON SCHEMA public FROM PUBLIC;',
      'GRANT SELECT ON TABLE public.booking TO readonly;',
      'GRANT UPDATE ON TABLE public.booking TO "Weird ""Role""" WITH GRANT OPTION;',
      'REVOKE SELECT ON TABLE public.rider FROM "old-reporting";',
      'ALTER DEFAULT PRIVILEGES FOR ROLE "Migrations" IN SCHEMA public GRANT SELECT ON TABLES TO "PUBLIC";',
      'SET SESSION AUTHORIZATION granter;',
      'GRANT SELECT ON TABLE public.rider TO PUBLIC;',
      'RESET SESSION AUTHORIZATION;',
    ];

    // Act
    const roles = rolesInSql(sql);

    // Assert
    expect(Object.fromEntries(roles)).toEqual({
      app: 'owner',
      readonly: 'grant',
      'Weird "Role"': 'grant',
      'old-reporting': 'grant',
      Migrations: 'grant',
      PUBLIC: 'grant',
      granter: 'grant',
    });
  });

  it('takes the role at the end of the statement, not a " TO " or "OWNER TO" inside a quoted name', () => {
    // Act
    const roles = rolesInSql(['GRANT SELECT ON TABLE public."a TO b" TO reader;', 'ALTER TABLE public."x OWNER TO y" OWNER TO app;']);

    // Assert
    expect(Object.fromEntries(roles)).toEqual({ reader: 'grant', app: 'owner' });
  });

  it('counts a role that is both owner and grantee as a grantee (--no-owner does not spare it)', () => {
    // Act
    const roles = rolesInSql(['GRANT SELECT ON TABLE public.t TO app;', 'ALTER TABLE public.t OWNER TO app;']);

    // Assert
    expect(roles.get('app')).toBe('grant');
  });

  it('reads no role from other statements, the body of a function indented, or a comment', () => {
    // Act
    const roles = rolesInSql(['CREATE TABLE public.t (id integer);', "    EXECUTE 'GRANT SELECT ON t TO someone';", '-- Name: t; Type: TABLE; Schema: public; Owner: app', 'SET search_path = public;']);

    // Assert
    expect(roles.size).toBe(0);
  });
});
