import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { pgToolPath } from '../shared/postgres';
import { OperatorError, oneLine } from '../shared/errors';
import type { BackupManifest } from '../shared/manifest';
import { CatalogDeps, CatalogFilter, resolveBackup } from './catalog';
import { SpaceCheck, downloadObject } from './download';
import { errorLine, runTool, toolEnv } from './load';

/**
 * `backups verify`: a backup checked without any database: every object's size and sha256 against
 * the manifest (download.ts), the custom archive's table of contents (`pg_restore --list`), and the
 * plain file's whole gzip stream.
 */
export interface VerifiedObject {
  readonly key: string;
  readonly format: 'custom' | 'plain';
  readonly bytes: number;
  readonly sha256: string;
  /** custom: entries in the archive's table of contents; plain: uncompressed SQL bytes. */
  readonly detail: { readonly tocEntries?: number; readonly sqlBytes?: number };
}

export interface VerifyResult {
  readonly manifestKey: string;
  readonly manifest: BackupManifest;
  readonly objects: readonly VerifiedObject[];
  readonly seconds: number;
}

export interface VerifyDeps extends CatalogDeps, SpaceCheck {
  /** Directory of pg_restore; default: on PATH. */
  readonly pgBinDir?: string;
  /** Scratch parent directory. @default os.tmpdir() */
  readonly tempDir?: string;
}

export async function verifyBackup(deps: VerifyDeps, ref: string, filter: CatalogFilter = {}): Promise<VerifyResult> {
  const started = performance.now();
  const { manifestKey, manifest } = await resolveBackup(deps, ref, filter);
  const dir = fs.mkdtempSync(path.join(deps.tempDir ?? os.tmpdir(), 'atmr-dr-verify-'));
  try {
    const objects: VerifiedObject[] = [];
    for (const object of manifest.objects) {
      const downloaded = await downloadObject(deps, object, dir, deps);
      let detail: VerifiedObject['detail'];
      if (object.format === 'custom') {
        const list = await runTool(pgToolPath('pg_restore', deps.pgBinDir), ['--list', downloaded.file], { env: toolEnv(undefined) });
        if (list.code !== 0) {
          throw new OperatorError(`pg_restore --list cannot read ${object.key}: ${errorLine(list.stderr)}; the archive is unreadable, pick another backup`);
        }
        detail = { tocEntries: list.stdout.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';')).length };
      } else {
        let sqlBytes = 0;
        try {
          await pipeline(fs.createReadStream(downloaded.file), createGunzip(), async (source: AsyncIterable<Buffer>) => {
            for await (const chunk of source) sqlBytes += chunk.length;
          });
        } catch (error) {
          throw new OperatorError(`${object.key} is not a readable gzip stream (${oneLine(error)}); pick another backup`);
        }
        detail = { sqlBytes };
      }
      fs.rmSync(downloaded.file, { force: true });
      objects.push({ key: object.key, format: object.format, bytes: downloaded.bytes, sha256: downloaded.sha256, detail });
    }
    return { manifestKey, manifest, objects, seconds: (performance.now() - started) / 1000 };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
