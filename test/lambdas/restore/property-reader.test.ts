import { propertyReader } from '../../../lambdas/restore/archive';

/**
 * The statements of the backed-up database's own properties, read from what `pg_restore --create -L
 * <those entries> --file=-` prints (PostgreSQL 15). The integration tests (restore-database-properties)
 * read them from real archives, whose statements all end; these are the texts a real archive does
 * not give: one cut before its final ";".
 */
function read(text: string): ReturnType<typeof propertyReader>['properties'] {
  const reader = propertyReader();
  reader.read(text.split('\n'));
  return reader.properties;
}

/** pg_restore's header above an entry, then its statements. */
function entry(name: string, type: string, ...statements: string[]): string {
  return ['--', `-- Name: ${name}; Type: ${type}; Schema: -; Owner: app`, '--', '', ...statements, '', ''].join('\n');
}

const HEAD = ['--', '-- PostgreSQL database dump', '--', '', 'SET statement_timeout = 0;', 'SET standard_conforming_strings = on;', ''].join('\n');
const TAIL = ['--', '-- PostgreSQL database dump complete', '--', '', '\\unrestrict xyz', ''].join('\n');

describe('propertyReader', () => {
  it('reads every statement that ends, and names none as unfinished', () => {
    // Act
    const properties = read([HEAD, entry('atmr', 'DATABASE PROPERTIES', "ALTER DATABASE atmr SET \"TimeZone\" TO 'Europe/Paris';"), entry('DATABASE atmr', 'ACL', 'REVOKE CONNECT,TEMPORARY ON DATABASE atmr FROM PUBLIC;'), TAIL].join('\n'));

    // Assert
    expect(properties).toEqual({ statements: ["ALTER DATABASE atmr SET \"TimeZone\" TO 'Europe/Paris';", 'REVOKE CONNECT,TEMPORARY ON DATABASE atmr FROM PUBLIC;'], conformingStrings: true });
  });

  it('names a last statement with no final ";" (a cut archive) by its first 80 characters, on one line, and keeps the ones before it', () => {
    // Arrange: a comment of two lines, cut before its end
    const cut = `COMMENT ON DATABASE atmr IS 'ATMR production: ${'x'.repeat(60)}\nsecond line'`;

    // Act
    const properties = read([HEAD, entry('atmr', 'DATABASE PROPERTIES', "ALTER DATABASE atmr SET \"TimeZone\" TO 'Europe/Paris';"), entry('DATABASE atmr', 'COMMENT', cut), TAIL].join('\n'));

    // Assert
    expect(properties.statements).toEqual(["ALTER DATABASE atmr SET \"TimeZone\" TO 'Europe/Paris';"]);
    expect(properties.unfinished).toEqual([`COMMENT ON DATABASE atmr IS 'ATMR production: ${'x'.repeat(34)}`]);
    expect(properties.unfinished![0]).toHaveLength(80);
    expect(properties.quoteLeftOpen).toBeUndefined();
  });

  it('names a short unfinished statement whole, its lines joined', () => {
    // Act
    const properties = read([HEAD, entry('DATABASE atmr', 'ACL', 'REVOKE CONNECT,TEMPORARY', 'ON DATABASE atmr FROM PUBLIC')].join('\n'));

    // Assert
    expect(properties).toEqual({ statements: [], conformingStrings: true, unfinished: ['REVOKE CONNECT,TEMPORARY ON DATABASE atmr FROM PUBLIC'] });
  });

  it('a cut statement ends where the next entry begins: the entries after it (a lockdown REVOKE) are still read', () => {
    // Act: a comment cut before its ";", then the database's ACL
    const properties = read([HEAD, entry('DATABASE atmr', 'COMMENT', "COMMENT ON DATABASE atmr IS 'cut'"), entry('DATABASE atmr', 'ACL', 'REVOKE CONNECT,TEMPORARY ON DATABASE atmr FROM PUBLIC;'), TAIL].join('\n'));

    // Assert
    expect(properties).toEqual({ statements: ['REVOKE CONNECT,TEMPORARY ON DATABASE atmr FROM PUBLIC;'], conformingStrings: true, unfinished: ["COMMENT ON DATABASE atmr IS 'cut'"] });
  });

  it('a statement cut inside a quote takes what follows as its text: nothing after it is read as a statement, and it says so', () => {
    // Act: a comment cut inside its literal, then the database's ACL
    const properties = read([HEAD, entry('DATABASE atmr', 'COMMENT', "COMMENT ON DATABASE atmr IS 'cut"), entry('DATABASE atmr', 'ACL', 'GRANT CONNECT ON DATABASE atmr TO app;'), TAIL].join('\n'));

    // Assert
    expect(properties.statements).toEqual([]);
    expect(properties.unfinished).toEqual([expect.stringMatching(/^COMMENT ON DATABASE atmr IS 'cut -- -- Name: DATABASE atmr; Type: ACL/)]);
    expect(properties.quoteLeftOpen).toBe(true);
  });

  it("a line inside a literal that looks like an entry's header is the literal's text, not a boundary: no statement is read out of a comment", () => {
    // Arrange: a database comment written to look like a header, then a GRANT
    const comment = "COMMENT ON DATABASE atmr IS 'x\n-- Name: DATABASE atmr; Type: ACL; Schema: -; Owner: app\n--\nGRANT ALL ON DATABASE atmr TO intruder;\n';";

    // Act
    const properties = read([HEAD, entry('DATABASE atmr', 'COMMENT', comment), TAIL].join('\n'));

    // Assert
    expect(properties).toEqual({ statements: [comment], conformingStrings: true });
  });
});
