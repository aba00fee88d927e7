import * as fs from 'node:fs';
import * as os from 'node:os';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { firstError, pgToolPath } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import { operatorCommand } from '../shared/constants';
import { roundSeconds } from '../shared/format';
import { makeDownloadDir } from '../shared/temp-dir';
import type { BackupManifest, BackupObject } from '../shared/manifest';
import { CatalogDeps, CatalogFilter, resolveBackup } from './catalog';
import { BadObjectError, DownloadResult, LocalSpaceError, SpaceCheck, badBackupFix, downloadObject } from './download';
import { pgRestoreTooOld, runTool, toolEnv } from './load';

/**
 * `backups verify`: a backup checked without any database: every object's size and sha256 against
 * the manifest (download.ts), the custom archive's table of contents (`pg_restore --list`) and every
 * entry's data (`pg_restore --file=/dev/null`), and the plain file's whole gzip stream. Every object
 * is checked, a bad one does not stop the others: the operator learns in one run whether any format
 * of this backup is still usable.
 */
export type VerifiedObject = GoodObject | BadObject;

export interface GoodObject {
  readonly key: string;
  readonly format: 'custom' | 'plain';
  readonly ok: true;
  readonly bytes: number;
  readonly sha256: string;
  /** custom: entries in the archive's table of contents; plain: uncompressed SQL bytes. */
  readonly detail: { readonly tocEntries?: number; readonly sqlBytes?: number };
}

export interface BadObject {
  readonly key: string;
  readonly format: 'custom' | 'plain';
  readonly ok: false;
  /**
   * Which check failed: missing, size, sha256 (the stored bytes are not the manifest's), unreadable
   * (right bytes, but pg_restore or gunzip cannot read them), download (it could not be read whole:
   * network, rights; not known to be bad, not known to be good). A local disk too small for it is
   * none of these: verifyBackup stops on it, the backup unchecked.
   */
  readonly reason: BadObjectError['reason'] | 'unreadable' | 'download';
  /** One line: what is wrong (the summary says what to do with the backup, knowing every object). */
  readonly problem: string;
}

export interface VerifyResult {
  readonly manifestKey: string;
  readonly manifest: BackupManifest;
  /** Every object of the manifest, in its order. */
  readonly objects: readonly VerifiedObject[];
  /** Every object is good. */
  readonly ok: boolean;
  /** One line: how many objects are good, and which are bad and why. */
  readonly summary: string;
  readonly seconds: number;
}

export interface VerifyDeps extends CatalogDeps, SpaceCheck {
  /** Directory of pg_restore; default: on PATH. */
  readonly pgBinDir?: string;
  /** Scratch parent directory. @default os.tmpdir() */
  readonly tempDir?: string;
}

/**
 * Resolves and checks one backup; a bad object is reported in the result, an unreadable manifest
 * throws, and so does a local disk too small for an object (the backup is then neither good nor bad).
 */
export async function verifyBackup(deps: VerifyDeps, ref: string, filter: CatalogFilter = {}): Promise<VerifyResult> {
  const started = performance.now();
  const { manifestKey, manifest } = await resolveBackup(deps, ref, filter).catch((error: unknown) => {
    if (deps.signal?.aborted) throw new OperatorError(`backup ${ref} not checked: interrupted (${oneLine(deps.signal.reason)})`);
    throw error;
  });
  const dir = makeDownloadDir(deps.tempDir ?? os.tmpdir(), 'atmr-dr-verify-');
  try {
    const objects: VerifiedObject[] = [];
    for (const object of manifest.objects) objects.push(await verifyObject(deps, object, dir, manifest.pgDumpVersion));
    return { manifestKey, manifest, objects, ok: objects.every((o) => o.ok), summary: summarize(manifestKey, objects, deps.environmentName), seconds: roundSeconds((performance.now() - started) / 1000) };
  } catch (error) {
    if (error instanceof LocalSpaceError) throw new LocalSpaceError(`backup ${manifestKey} not checked: ${error.message}`);
    if (deps.signal?.aborted) throw new OperatorError(`backup ${manifestKey} not checked: interrupted (${oneLine(deps.signal.reason)})`);
    throw error;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function summarize(manifestKey: string, objects: readonly VerifiedObject[], environmentName: string | undefined): string {
  const bad = objects.filter((o): o is BadObject => !o.ok);
  if (bad.length === 0) return `backup ${manifestKey}: ${objects.length} of ${objects.length} objects good`;
  const which = `${bad.length} of ${objects.length} objects bad (${bad.map((o) => `${o.key}: ${o.reason}`).join(', ')})`;
  // An object that could not be downloaded is not known to be bad: the check is worth a retry.
  if (bad.every((o) => o.reason === 'download')) return `backup ${manifestKey}: ${which}; retry, and check the S3 endpoint and the network`;
  const good = objects.find((o) => o.ok);
  // An object that could not be read whole is unchecked, not bad: with no copy found good, it may
  // still be the good one, and "do not restore it" would give up on it untried.
  const unchecked = bad.filter((o) => o.reason === 'download');
  if (!good && unchecked.length > 0) {
    return `backup ${manifestKey}: ${which}; ${unchecked.map((o) => o.key).join(', ')} could not be checked: retry, and check the S3 endpoint and the network, before you choose another backup (${operatorCommand(environmentName, 'backups list')})`;
  }
  // The same advice as restore's, given only when the other copy was found good here.
  return `backup ${manifestKey}: ${which}; ${badBackupFix(good, environmentName)}`;
}

async function verifyObject(deps: VerifyDeps, object: BackupObject, dir: string, madeBy: string | undefined): Promise<VerifiedObject> {
  const bad = (reason: BadObject['reason'], problem: string): BadObject => ({ key: object.key, format: object.format, ok: false, reason, problem });
  let downloaded: DownloadResult;
  try {
    downloaded = await downloadObject(deps, object, dir, deps);
  } catch (error) {
    // Stopped by the operator: neither bad nor a download failure, the whole check ends.
    if (error instanceof LocalSpaceError || deps.signal?.aborted) throw error;
    return error instanceof BadObjectError ? bad(error.reason, error.problem) : bad('download', oneLine(error));
  }
  try {
    let detail: GoodObject['detail'];
    if (object.format === 'custom') {
      const pgRestore = pgToolPath('pg_restore', deps.pgBinDir);
      const list = await runTool(pgRestore, ['--list', downloaded.file], { env: toolEnv(undefined), signal: deps.signal });
      // Tools too old for the archive check no archive of that pg_dump: the whole check stops,
      // every backup unjudged, rather than calling good backups bad.
      const tooOld = list.code === 0 ? undefined : await pgRestoreTooOld(pgRestore, list.stderr, downloaded.file, madeBy);
      if (tooOld) throw new OperatorError(`${tooOld.problem}, and was not checked further; ${tooOld.fix.replace(/^restore/, 'check it')}`, 2);
      if (list.code !== 0) {
        return bad('unreadable', `pg_restore --list cannot read ${object.key}: ${firstError(list.stderr)}; the archive is unreadable`);
      }
      // --list reads the table of contents only, at the head of the archive: an archive cut short
      // after it lists every entry and fails only at the restore. Reading every entry's data (to
      // SQL text, thrown away) is what tells; it costs about what the plain file's gunzip does.
      const read = await runTool(pgToolPath('pg_restore', deps.pgBinDir), ['--file=/dev/null', downloaded.file], { env: toolEnv(undefined), signal: deps.signal });
      if (read.code !== 0) {
        return bad('unreadable', `pg_restore cannot read the data of ${object.key}: ${firstError(read.stderr)}; the archive is truncated or corrupt`);
      }
      detail = { tocEntries: list.stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';')).length };
    } else {
      let sqlBytes = 0;
      try {
        await pipeline(
          fs.createReadStream(downloaded.file),
          createGunzip(),
          async (source: AsyncIterable<Buffer>) => {
            for await (const chunk of source) sqlBytes += chunk.length;
          },
          { signal: deps.signal },
        );
      } catch (error) {
        if (deps.signal?.aborted) throw error;
        return bad('unreadable', `${object.key} is not a readable gzip stream (${oneLine(error)})`);
      }
      detail = { sqlBytes };
    }
    return { key: object.key, format: object.format, ok: true, bytes: downloaded.bytes, sha256: downloaded.sha256, detail };
  } finally {
    fs.rmSync(downloaded.file, { force: true });
  }
}
