import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { archiveNeeds } from '../../lambdas/restore/archive';
import { LocalSpaceError } from '../../lambdas/restore/download';
import { testCluster, uniqueDatabaseName } from '../support/cluster';
import { psql } from '../support/postgres';
import { itWithSmallDisk, mountSmallDisk } from '../support/small-disk';
import { createDatabase, dropDatabase } from './backup-support';

jest.setTimeout(120_000);

const UNTOUCHED = 'target "app" untouched';

/**
 * A custom archive at `file` of a database with `count` large objects of the test user, the last
 * one owned by `owner` and readable by `reader` (PostgreSQL 15 lists one BLOB entry per large
 * object, and one ACL entry for the granted one): `archiveNeeds` writes their list for pg_restore -L.
 */
function archiveWithLargeObjects(file: string, count: number, owner: string, reader: string): void {
  const database = uniqueDatabaseName('rneeds');
  createDatabase(
    database,
    `SELECT lo_from_bytea(0, '') FROM generate_series(1, ${count - 1});
     SELECT lo_from_bytea(990000000, 'last');
     ALTER LARGE OBJECT 990000000 OWNER TO ${owner}; GRANT SELECT ON LARGE OBJECT 990000000 TO ${reader};`,
  );
  try {
    execFileSync('pg_dump', ['-Fc', '-Z0', '-f', file, '-d', database], { env: { ...process.env, ...testCluster().env }, stdio: 'pipe' });
  } finally {
    dropDatabase(database);
  }
}

describe("archiveNeeds: the list of the archive's large objects (pg_restore -L)", () => {
  const owner = uniqueDatabaseName('lo_owner');
  const reader = uniqueDatabaseName('lo_reader');
  let dir: string;

  beforeAll(() => {
    psql(testCluster(), 'postgres', `CREATE ROLE ${owner}; CREATE ROLE ${reader};`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-needs-'));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    psql(testCluster(), 'postgres', `DROP ROLE IF EXISTS ${owner}; DROP ROLE IF EXISTS ${reader};`);
  });

  it('a list of many entries (25,000 large objects, written a part at a time) reaches pg_restore whole: the last one\'s owner and grantee are read', async () => {
    // Arrange
    const file = path.join(dir, 'many.dump');
    archiveWithLargeObjects(file, 25_000, owner, reader);

    // Act
    const needs = await archiveNeeds({ file }, UNTOUCHED);

    // Assert: the last entries of the list were written, and nothing was left beside the archive
    expect(needs.roles.get(owner)).toBe('owner');
    expect(needs.roles.get(reader)).toBe('grant');
    expect(fs.readdirSync(dir)).toEqual(['many.dump']);
  });

  itWithSmallDisk('a TMPDIR that is full when the list is written: one line saying the local disk is full, with TMPDIR and the fix; no list left behind', async () => {
    // Arrange: the archive on a small disk, then the disk filled, as another writer would
    const disk = mountSmallDisk(4 * 1024 * 1024);
    try {
      const file = path.join(disk.path, 'full.dump');
      archiveWithLargeObjects(file, 3, owner, reader);
      disk.fill();

      // Act
      const outcome = archiveNeeds({ file }, UNTOUCHED);

      // Assert
      await expect(outcome).rejects.toThrow(LocalSpaceError);
      await expect(outcome).rejects.toThrow(
        `the local disk is full: TMPDIR (${disk.path}) ran out of space for the list of the archive's 4 large-object entries (ENOSPC): nothing was created, ${UNTOUCHED}; the backup is not at fault: point TMPDIR at a larger disk (or free space there, or raise the Lambda ephemeral storage) and retry`,
      );
      expect(fs.readdirSync(disk.path).sort()).toEqual(['filler', 'full.dump']);
    } finally {
      disk.unmount();
    }
  });
});
