import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { OperatorError, oneLine } from '../shared/errors';
import { formatBytes } from '../shared/format';
import { BackupManifest, BackupManifestSchema, BackupObject, LatestPointerSchema } from '../shared/manifest';
import { BACKUP_TIERS, BackupTier, LATEST_POINTER_KEY, isBackupTier, isManifestKey, latestTierPointerKey } from '../shared/s3-layout';

/**
 * The backup catalog: the read path of the bucket (contract 2). Lists manifests, resolves
 * `latest` / a tier / a manifest key to a validated manifest, downloads an object to a local file
 * while hashing it, and verifies a backup without any database (sha256 + `pg_restore --list`).
 */
export interface CatalogDeps {
  readonly s3: S3Client;
  readonly bucket: string;
}

export interface CatalogEntry {
  readonly manifestKey: string;
  /** The validated manifest, or undefined when the file is not a valid schema-1 manifest. */
  readonly manifest?: BackupManifest;
  /** Why the manifest is unusable (one line), when it is. */
  readonly invalid?: string;
}

export interface ResolvedBackup {
  readonly manifestKey: string;
  readonly manifest: BackupManifest;
}

/** Every manifest under the tier prefixes (or one tier), newest first (by startedAt, then key). */
export async function listBackups(deps: CatalogDeps, options: { tier?: string } = {}): Promise<CatalogEntry[]> {
  const tiers: readonly BackupTier[] = options.tier === undefined ? BACKUP_TIERS : [checkTier(options.tier)];
  const keys: string[] = [];
  for (const tier of tiers) {
    let continuationToken: string | undefined;
    do {
      const page = await s3Call(`list s3://${deps.bucket}/${tier}/`, () =>
        deps.s3.send(new ListObjectsV2Command({ Bucket: deps.bucket, Prefix: `${tier}/`, ContinuationToken: continuationToken })),
      );
      for (const object of page.Contents ?? []) if (object.Key && isManifestKey(object.Key)) keys.push(object.Key);
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
  }
  const entries: CatalogEntry[] = [];
  // A few manifests at a time: a year of backups is about 50 small GETs.
  for (let i = 0; i < keys.length; i += 8) {
    const batch = keys.slice(i, i + 8).map(async (key): Promise<CatalogEntry> => {
      try {
        return { manifestKey: key, manifest: await readManifest(deps, key) };
      } catch (error) {
        return { manifestKey: key, invalid: oneLine(error) };
      }
    });
    entries.push(...(await Promise.all(batch)));
  }
  return entries.sort((a, b) => {
    const byTime = (b.manifest?.startedAt ?? '').localeCompare(a.manifest?.startedAt ?? '');
    return byTime !== 0 ? byTime : b.manifestKey.localeCompare(a.manifestKey);
  });
}

/**
 * `latest` (through `latest.json`, or `latest/<tier>.json` when a tier is given) or a manifest
 * key, to a validated manifest.
 */
export async function resolveBackup(deps: CatalogDeps, ref: string, options: { tier?: string } = {}): Promise<ResolvedBackup> {
  let manifestKey = ref;
  if (ref === 'latest') {
    const pointerKey = options.tier === undefined ? LATEST_POINTER_KEY : latestTierPointerKey(checkTier(options.tier));
    const text = await getText(deps, pointerKey, () =>
      `no backup yet: s3://${deps.bucket}/${pointerKey} does not exist; run "atmr-dr backup --tier ${options.tier ?? 'daily'}" or name a manifest key (atmr-dr backups list)`,
    );
    const pointer = LatestPointerSchema.safeParse(safeJson(text));
    if (!pointer.success) {
      throw new OperatorError(`pointer s3://${deps.bucket}/${pointerKey} is not {"manifest": "<key>"}; name a manifest key instead (atmr-dr backups list)`);
    }
    manifestKey = pointer.data.manifest;
  } else if (!isManifestKey(ref)) {
    throw new OperatorError(`"${ref}" is neither "latest" nor a manifest key (<tier>/<db>_backup_<stamp>.manifest.json); list them with: atmr-dr backups list`, 2);
  } else if (options.tier !== undefined && !ref.startsWith(`${checkTier(options.tier)}/`)) {
    throw new OperatorError(`manifest ${ref} is not in tier ${options.tier}; drop --tier or name a ${options.tier}/ manifest`, 2);
  }
  return { manifestKey, manifest: await readManifest(deps, manifestKey) };
}

export async function readManifest(deps: CatalogDeps, manifestKey: string): Promise<BackupManifest> {
  const text = await getText(deps, manifestKey, () => `manifest s3://${deps.bucket}/${manifestKey} does not exist; list backups with: atmr-dr backups list`);
  const parsed = BackupManifestSchema.safeParse(safeJson(text));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new OperatorError(
      `manifest ${manifestKey} is not a valid schema-1 manifest (${issue.path.join('.') || 'root'}: ${issue.message}); do not restore it, pick another backup`,
    );
  }
  return parsed.data;
}

/** Chooses the object to restore: the requested format, else custom (fastest, parallel), else plain. */
export function chooseObject(manifestKey: string, manifest: BackupManifest, format?: 'custom' | 'plain'): BackupObject {
  const wanted = format ? [format] : (['custom', 'plain'] as const);
  for (const f of wanted) {
    const object = manifest.objects.find((o) => o.format === f);
    if (object) return object;
  }
  throw new OperatorError(`manifest ${manifestKey} has no ${format} object; drop --format or pick another backup`, 2);
}

/** statfs of a directory; injectable so that "not enough space" can be tested without filling a disk. */
export type StatFs = (dir: string) => Promise<{ bavail: number; bsize: number }>;

export interface SpaceCheck {
  /** @default fs.promises.statfs */
  readonly statfs?: StatFs;
  /** Free space required, as a multiple of the object size (headroom for the filesystem). @default 1.1 */
  readonly factor?: number;
}

export const DEFAULT_SPACE_FACTOR = 1.1;

/** Refuses before downloading when the temp directory cannot hold the object. */
export async function checkFreeSpace(dir: string, bytes: number, check: SpaceCheck = {}): Promise<void> {
  const statfs: StatFs = check.statfs ?? ((d) => fs.promises.statfs(d));
  const factor = check.factor ?? DEFAULT_SPACE_FACTOR;
  const stats = await statfs(dir);
  const free = stats.bavail * stats.bsize;
  const needed = Math.ceil(bytes * factor);
  if (free < needed) {
    throw new OperatorError(
      `not enough space in ${dir}: ${formatBytes(free)} free, ${formatBytes(needed)} needed (object ${formatBytes(bytes)} x ${factor}); free space, point TMPDIR at a larger disk or raise the Lambda ephemeral storage`,
    );
  }
}

export interface DownloadResult {
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly seconds: number;
}

export interface DownloadOptions extends SpaceCheck {
  readonly signal?: AbortSignal;
  /** Size of each ranged GET. @default DEFAULT_PART_BYTES */
  readonly partBytes?: number;
  /** Ranged GETs in flight: one S3 connection is rate-bounded, several fill the pipe. @default DEFAULT_DOWNLOAD_CONCURRENCY */
  readonly concurrency?: number;
  /** After each in-order write: how many bytes from the start of the file are written. */
  readonly onProgress?: (writtenBytes: number) => void;
}

export const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
/** The first ranged GET: enough for the table of contents of any realistic schema, fetched alone. */
const FIRST_PART_BYTES = 1024 * 1024;
export const DEFAULT_DOWNLOAD_CONCURRENCY = 4;

/** Where downloadAndVerify writes `object` in `dir`. */
export function downloadPath(dir: string, object: BackupObject): string {
  return path.join(dir, path.basename(object.key));
}

/**
 * Downloads one object to `dir` with parallel ranged GETs, hashing and writing the parts in order
 * as they land (memory bounded by about 2 x concurrency parts), so the file is always a prefix of
 * the object. The first part's Content-Range gives the stored size, so a truncated or grown object
 * is refused before the rest is fetched. A sha256 mismatch deletes the
 * file. Only the resolved result is verified: a reader of the growing file (the overlapped restore)
 * must be disposable, and its output discarded when this rejects.
 */
export async function downloadAndVerify(deps: CatalogDeps, object: BackupObject, dir: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const started = performance.now();
  await checkFreeSpace(dir, object.bytes, options);
  const file = downloadPath(dir, object);
  const partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
  const concurrency = Math.max(1, options.concurrency ?? DEFAULT_DOWNLOAD_CONCURRENCY);
  const abort = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
  const hash = createHash('sha256');
  const handle = await fs.promises.open(file, 'w', 0o600);
  let received = 0;
  try {
    // A small first part alone: it holds the archive's table of contents, which a restore reads
    // first, and its Content-Range gives the stored size: a truncated or grown object is refused
    // right there. Then parts of partBytes, `concurrency` at a time.
    const firstBytes = Math.min(partBytes, FIRST_PART_BYTES);
    const first = await getRange(deps, object, 0, firstBytes, signal);
    if (first.total !== object.bytes) throw sizeMismatch(object, first.total);
    const total = first.total;
    const parts = total <= firstBytes ? 1 : 1 + Math.ceil((total - firstBytes) / partBytes);
    const startOf = (index: number): number => (index === 0 ? 0 : firstBytes + (index - 1) * partBytes);
    const lengthOf = (index: number): number => Math.min(index === 0 ? firstBytes : partBytes, total - startOf(index));
    const done = new Map<number, Buffer[]>();
    let nextToHash = 0;
    let nextToFetch = 1;
    const waiting: (() => void)[] = [];
    const progressed = (): void => {
      for (const wake of waiting.splice(0)) wake();
    };
    // Parts land in any order; they are hashed and written strictly in order, one drain at a time,
    // so the file is always a prefix of the object (a restore may read it while it grows).
    let draining: Promise<void> = Promise.resolve();
    const drain = (): Promise<void> =>
      (draining = draining.then(async () => {
        while (done.has(nextToHash)) {
          const chunks = done.get(nextToHash)!;
          for (const chunk of chunks) hash.update(chunk);
          await handle.writev(chunks, startOf(nextToHash));
          done.delete(nextToHash);
          nextToHash += 1;
          options.onProgress?.(Math.min(total, startOf(nextToHash)));
          progressed();
        }
      }));
    const accept = async (index: number, part: RangeBody): Promise<void> => {
      if (part.length !== lengthOf(index)) throw sizeMismatch(object, startOf(index) + part.length);
      received += part.length;
      done.set(index, part.chunks);
      await drain();
    };
    const worker = async (): Promise<void> => {
      while (nextToFetch < parts) {
        // Bounded memory: do not run further ahead of the hash than two windows.
        while (nextToFetch - nextToHash >= 2 * concurrency) await new Promise<void>((resolve) => waiting.push(resolve));
        if (nextToFetch >= parts) return;
        const index = nextToFetch;
        nextToFetch += 1;
        const part = await getRange(deps, object, startOf(index), lengthOf(index), signal);
        if (part.total !== total) throw sizeMismatch(object, part.total);
        await accept(index, part);
      }
    };
    await accept(0, first);
    const workers = Array.from({ length: Math.min(concurrency, parts - 1) }, () =>
      worker().catch((error: unknown) => {
        abort.abort();
        progressed();
        throw error;
      }),
    );
    await Promise.all(workers);
    if (received !== total || nextToHash !== parts) throw sizeMismatch(object, received);
  } catch (error) {
    abort.abort();
    await handle.close().catch(() => undefined);
    fs.rmSync(file, { force: true });
    if (error instanceof OperatorError) throw error;
    throw new OperatorError(`download of s3://${deps.bucket}/${object.key} failed after ${formatBytes(received)}: ${oneLine(error)}; retry, or check free space in ${dir}`);
  }
  await handle.close();
  const sha256 = hash.digest('hex');
  if (sha256 !== object.sha256) {
    fs.rmSync(file, { force: true });
    throw new OperatorError(`object ${object.key} has sha256 ${sha256.slice(0, 12)}..., the manifest says ${object.sha256.slice(0, 12)}...: the stored backup is corrupt; do not restore it, pick another backup`);
  }
  return { file, bytes: received, sha256, seconds: (performance.now() - started) / 1000 };
}

function sizeMismatch(object: BackupObject, stored: number | string): OperatorError {
  return new OperatorError(
    `object ${object.key} is ${stored} bytes, the manifest says ${object.bytes}: the stored backup is truncated or altered; do not restore it, pick another backup`,
  );
}

/** A ranged GET's bytes, as the socket delivered them (never concatenated: written with writev). */
interface RangeBody {
  readonly chunks: Buffer[];
  readonly length: number;
  /** The object's stored size. */
  readonly total: number;
}

/** One ranged GET: its bytes and the object's stored size (from Content-Range). */
async function getRange(deps: CatalogDeps, object: BackupObject, start: number, length: number, signal: AbortSignal): Promise<RangeBody> {
  try {
    const response = await deps.s3.send(
      new GetObjectCommand({ Bucket: deps.bucket, Key: object.key, Range: `bytes=${start}-${start + length - 1}` }),
      { abortSignal: signal },
    );
    const chunks: Buffer[] = [];
    let received = 0;
    for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      chunks.push(buffer);
      received += buffer.length;
    }
    const total = /\/(\d+)$/.exec(response.ContentRange ?? '')?.[1];
    if (total === undefined) {
      // No Content-Range: the server sent the whole object (200), whose length is the stored size.
      const whole = Buffer.concat(chunks, received);
      const slice = whole.subarray(start, start + length);
      return { chunks: [slice], length: slice.length, total: whole.length };
    }
    return Number(total) === 0 ? { chunks: [], length: 0, total: 0 } : { chunks, length: received, total: Number(total) };
  } catch (error) {
    if (isNotFound(error)) {
      throw new OperatorError(`object s3://${deps.bucket}/${object.key} named by the manifest is missing; this backup is unusable, pick another one (atmr-dr backups list)`);
    }
    // 416: the range starts past the end, so the stored object is shorter than the manifest says.
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) throw sizeMismatch(object, start === 0 ? 0 : `fewer than ${start}`);
    if (error instanceof OperatorError) throw error;
    throw new OperatorError(`cannot download s3://${deps.bucket}/${object.key}: ${oneLine(error)}; check the endpoint, credentials and s3:GetObject/kms:Decrypt rights`);
  }
}

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

/**
 * Checks a backup without a database: every object's size and sha256 against the manifest, the
 * custom archive's table of contents (`pg_restore --list`), and the plain file's gzip stream.
 */
export async function verifyBackup(deps: VerifyDeps, ref: string, options: { tier?: string } = {}): Promise<VerifyResult> {
  const started = performance.now();
  const { manifestKey, manifest } = await resolveBackup(deps, ref, options);
  const dir = fs.mkdtempSync(path.join(deps.tempDir ?? os.tmpdir(), 'atmr-dr-verify-'));
  try {
    const objects: VerifiedObject[] = [];
    for (const object of manifest.objects) {
      const downloaded = await downloadAndVerify(deps, object, dir, deps);
      let detail: VerifiedObject['detail'];
      if (object.format === 'custom') {
        const list = await run(pgBin(deps.pgBinDir, 'pg_restore'), ['--list', downloaded.file], {});
        if (list.code !== 0) {
          throw new OperatorError(`pg_restore --list cannot read ${object.key}: ${oneLine(list.stderr) || `exit ${list.code}`}; the archive is unreadable, pick another backup`);
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

export function pgBin(pgBinDir: string | undefined, name: string): string {
  return pgBinDir ? path.join(pgBinDir, name) : name;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a client program; stderr is kept (bounded) for the one-line error. */
/** The line of a PostgreSQL tool's stderr that says what went wrong (for one-line errors). */
export function firstError(stderr: string): string {
  const line = stderr.split('\n').find((l) => /error|fatal/i.test(l)) ?? stderr.split('\n').find((l) => l.trim() !== '') ?? 'no message';
  return oneLine(line).slice(0, 300);
}

export function run(file: string, args: string[], env: Record<string, string>, stdin?: Readable): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: { ...process.env, ...env }, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < 50_000_000) stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 100_000) stderr += d;
    });
    child.on('error', (error) =>
      reject(new OperatorError(`cannot run ${file}: ${oneLine(error)}; install the PostgreSQL client programs or set the PostgreSQL bin directory`)),
    );
    if (stdin && child.stdin) {
      // A psql that exits early (ON_ERROR_STOP) closes its stdin: that is reported by its exit code.
      child.stdin.on('error', () => undefined);
      pipeline(stdin, child.stdin).catch(() => undefined);
    }
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function checkTier(tier: string): BackupTier {
  if (!isBackupTier(tier)) throw new OperatorError(`unknown tier "${tier}": use one of ${BACKUP_TIERS.join(', ')}`, 2);
  return tier;
}

async function getText(deps: CatalogDeps, key: string, notFound: () => string): Promise<string> {
  try {
    const response = await deps.s3.send(new GetObjectCommand({ Bucket: deps.bucket, Key: key }));
    return await (response.Body as { transformToString(): Promise<string> }).transformToString();
  } catch (error) {
    if (isNotFound(error)) throw new OperatorError(notFound());
    throw new OperatorError(`cannot read s3://${deps.bucket}/${key}: ${oneLine(error)}; check the endpoint, BACKUP_BUCKET and credentials`);
  }
}

async function s3Call<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw new OperatorError(`cannot ${what}: ${oneLine(error)}; check the endpoint, BACKUP_BUCKET and credentials`);
  }
}

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.Code === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
