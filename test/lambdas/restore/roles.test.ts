import { roleReader } from '../../../lambdas/restore/archive';

/**
 * The roles a restore needs, read from the statements pg_dump writes, in the entries it writes them
 * in (as pg_restore --schema-only --file=- prints them, PostgreSQL 15). The integration tests
 * (restore-owners.test.ts) read them from a real archive; these are the spellings a small fixture
 * does not reach.
 */
function rolesOf(sql: string, chunks = 1): Record<string, string> {
  const reader = roleReader();
  const lines = sql.split('\n');
  const size = Math.ceil(lines.length / chunks);
  for (let i = 0; i < lines.length; i += size) reader.read(lines.slice(i, i + size));
  return Object.fromEntries(reader.roles);
}

/** pg_restore's header above an entry, as it prints it. */
function entry(name: string, type: string, owner: string, ...statements: string[]): string {
  return ['--', `-- Name: ${name}; Type: ${type}; Schema: public; Owner: ${owner}`, '--', '', ...statements, '', ''].join('\n');
}

describe('roleReader', () => {
  it('takes owners, grantees, revokees, default privileges and grantors, unquoting names and skipping PUBLIC', () => {
    // Arrange
    const sql = [
      entry('booking', 'TABLE', 'app', 'CREATE TABLE public.booking (', '    id integer', ');', '', '', 'ALTER TABLE public.booking OWNER TO app;'),
      entry('TABLE booking', 'ACL', 'app', 'REVOKE ALL ON TABLE public.booking FROM PUBLIC;', 'GRANT SELECT ON TABLE public.booking TO readonly;', 'GRANT UPDATE ON TABLE public.booking TO "Weird ""Role""" WITH GRANT OPTION;'),
      entry('TABLE rider', 'ACL', 'app', 'REVOKE SELECT ON TABLE public.rider FROM "old-reporting";', 'SET SESSION AUTHORIZATION granter;', 'GRANT SELECT ON TABLE public.rider TO PUBLIC;', 'RESET SESSION AUTHORIZATION;'),
      entry('DEFAULT PRIVILEGES FOR TABLES', 'DEFAULT ACL', 'Migrations', 'ALTER DEFAULT PRIVILEGES FOR ROLE "Migrations" IN SCHEMA public GRANT SELECT ON TABLES  TO "PUBLIC";'),
    ].join('\n');

    // Act
    const roles = rolesOf(sql);

    // Assert
    expect(roles).toEqual({ app: 'owner', readonly: 'grant', 'Weird "Role"': 'grant', 'old-reporting': 'grant', granter: 'grant', Migrations: 'grant', PUBLIC: 'grant' });
  });

  it('takes the role at the end of the statement, not a " TO " or "OWNER TO" inside a quoted name', () => {
    // Act
    const roles = rolesOf(
      [
        entry('x OWNER TO y', 'TABLE', 'app', 'ALTER TABLE public."x OWNER TO y" OWNER TO app;'),
        entry('TABLE "a TO b"', 'ACL', 'app', 'GRANT SELECT ON TABLE public."a TO b" TO reader;'),
      ].join('\n'),
    );

    // Assert
    expect(roles).toEqual({ reader: 'grant', app: 'owner' });
  });

  it('counts a role that is both owner and grantee as a grantee (--no-owner does not spare it)', () => {
    // Act
    const roles = rolesOf([entry('TABLE t', 'ACL', 'app', 'GRANT SELECT ON TABLE public.t TO app;'), entry('t', 'TABLE', 'app', 'ALTER TABLE public.t OWNER TO app;')].join('\n'));

    // Assert
    expect(roles).toEqual({ app: 'grant' });
  });

  it('reads no role from lines of those shapes in a function body or a comment, only the owner of their entries', () => {
    // Arrange: a plpgsql body and a COMMENT string, each line of which is one pg_dump could write
    const sql = [
      entry('f()', 'FUNCTION', 'app', 'CREATE FUNCTION public.f() RETURNS void', '    LANGUAGE plpgsql', '    AS $$', 'BEGIN', "EXECUTE '", 'GRANT SELECT ON t TO ghost;', 'ALTER TABLE t OWNER TO ghost;', 'REVOKE ALL ON t FROM ghost;', 'SET SESSION AUTHORIZATION ghost;', 'ALTER DEFAULT PRIVILEGES FOR ROLE ghost GRANT SELECT ON TABLES TO ghost;', "';", 'END $$;', '', '', 'ALTER FUNCTION public.f() OWNER TO app;'),
      entry('TABLE t', 'COMMENT', 'app', "COMMENT ON TABLE public.t IS '", 'GRANT SELECT ON t TO ghost;', "';"),
    ].join('\n');

    // Act
    const roles = rolesOf(sql);

    // Assert
    expect(roles).toEqual({ app: 'owner' });
  });

  it('reads nothing before the first entry, and no owner with --no-owner (Owner: -), only the grants', () => {
    // Arrange
    const preamble = ['--', '-- PostgreSQL database dump', '--', '', 'SET client_min_messages = warning;', 'GRANT SELECT ON t TO ghost;', ''].join('\n');
    const sql = [preamble, entry('t', 'TABLE', '-', 'CREATE TABLE public.t (', '    id integer', ');'), entry('TABLE t', 'ACL', '-', 'GRANT SELECT ON TABLE public.t TO readonly;', 'RESET SESSION AUTHORIZATION;')].join('\n');

    // Act
    const roles = rolesOf(sql);

    // Assert
    expect(roles).toEqual({ readonly: 'grant' });
  });

  it("reads an entry's header from the right: a name holding \"; Type: ACL\", a tablespace after the owner", () => {
    // Arrange: pg_restore does not quote the names of its headers
    const sql = [
      '-- Name: x; Type: ACL; Schema: public; Owner: ghost; Type: TABLE; Schema: public; Owner: postgres; Tablespace: fast',
      '--',
      '',
      'CREATE TABLE public."x; Type: ACL; Schema: public; Owner: ghost" (',
      'GRANT SELECT ON t TO ghost;',
      ');',
      '',
      'ALTER TABLE public."x; Type: ACL; Schema: public; Owner: ghost" OWNER TO postgres;',
    ].join('\n');

    // Act
    const roles = rolesOf(sql);

    // Assert
    expect(roles).toEqual({ postgres: 'owner' });
  });

  it('keeps the entry it is in from one batch of lines to the next', () => {
    // Arrange
    const sql = [entry('TABLE t', 'ACL', 'app', 'GRANT SELECT ON TABLE public.t TO readonly;', 'GRANT SELECT ON TABLE public.t TO auditor;'), entry('f()', 'FUNCTION', 'app', 'GRANT SELECT ON t TO ghost;')].join('\n');

    // Act
    const roles = rolesOf(sql, 5);

    // Assert
    expect(roles).toEqual({ readonly: 'grant', auditor: 'grant' });
  });
});
