import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { unansweredCall } from '../shared/aws-errors';
import { OperatorError, oneLine } from '../shared/errors';
import { operatorCommand } from '../shared/constants';
import { formatBytes } from '../shared/format';
import type { BackupObject } from '../shared/manifest';
import { CatalogDeps } from './catalog';
import { isNotFound } from '../shared/s3-objects';

/**
 * Download of one backup object to a local file: parallel ranged GETs (one S3 connection is
 * rate-bounded, a few fill the pipe), each part streamed to its offset in the file as it arrives,
 * the file hashed in order as far as its parts are complete, then size and sha256 compared with the
 * manifest. Nothing but the hash reads the file before it is verified.
 */

/** statfs of a directory; injectable so that "not enough space" can be tested without filling a disk. */
export type StatFs = (dir: string) => Promise<{ bavail: number; bsize: number }>;

export interface SpaceCheck {
  /** @default fs.promises.statfs */
  readonly statfs?: StatFs;
  /** Free space required, as a multiple of the object size (headroom for the filesystem). @default 1.1 */
  readonly factor?: number;
}

export const DEFAULT_SPACE_FACTOR = 1.1;
export const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
export const DEFAULT_DOWNLOAD_CONCURRENCY = 4;
/** Bytes gathered from a part's body before one write, and read back per hash step. */
const IO_BYTES = 1024 * 1024;
/**
 * GETs of one part whose body fails midway (a reset connection): the SDK retries only until the
 * headers arrive, and one reset out of thousands of parts must not fail a whole restore.
 */
const PART_ATTEMPTS = 3;

/**
 * The stored object is not the one its manifest describes (as opposed to a download that could not
 * finish): `backups verify` reports which check it failed. The message is the problem, then what
 * to do with the backup (badBackupFix), which depends on the backup's other copy.
 */
export class BadObjectError extends OperatorError {
  constructor(
    readonly problem: string,
    readonly reason: 'missing' | 'size' | 'sha256',
    otherCopy?: Pick<BackupObject, 'format'>,
    environmentName?: string,
  ) {
    super(`${problem}; ${badBackupFix(otherCopy, environmentName)}`);
  }
}

/**
 * What to do with a backup one object of which is bad, the one advice of restore and backups
 * verify: restore checks only the object it loads, so the backup's other format, when its manifest
 * has one, is the other copy; else another backup.
 */
export function badBackupFix(otherCopy: Pick<BackupObject, 'format'> | undefined, environmentName: string | undefined): string {
  const list = operatorCommand(environmentName, 'backups list');
  return otherCopy ? `restore this backup only with --format ${otherCopy.format}, or choose another backup (${list})` : `do not restore it, choose another backup (${list})`;
}

/**
 * The local disk cannot hold the object (as opposed to an object that is bad): says nothing about
 * the backup, so `backups verify` stops on it instead of reporting the backup bad.
 */
export class LocalSpaceError extends OperatorError {}

/** Refuses before downloading when the directory cannot hold the object; `what` starts the line. */
export async function checkFreeSpace(dir: string, bytes: number, check: SpaceCheck = {}, what = `not enough space in TMPDIR (${dir})`): Promise<void> {
  const factor = check.factor ?? DEFAULT_SPACE_FACTOR;
  const free = await freeSpace(dir, check);
  if (free < Math.ceil(bytes * factor)) throw noSpaceError(what, bytes, factor, free);
}

async function freeSpace(dir: string, check: SpaceCheck): Promise<number> {
  const statfs: StatFs = check.statfs ?? ((d) => fs.promises.statfs(d));
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

/** A write the local disk refused for want of room: the disk full (ENOSPC) or the user's quota (EDQUOT). */
function isOutOfSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The one line for a disk too small, found before the download or by a write (ENOSPC) during it. */
function noSpaceError(what: string, bytes: number, factor: number, free: number | undefined): LocalSpaceError {
  const room = free === undefined ? '' : `${formatBytes(free)} free, `;
  return new LocalSpaceError(
    `${what}: ${room}${formatBytes(Math.ceil(bytes * factor))} needed (object ${formatBytes(bytes)} x ${factor}); the backup is not at fault: point TMPDIR at a larger disk (or free space there, or raise the Lambda ephemeral storage) and retry`,
  );
}

export interface DownloadOptions extends SpaceCheck {
  readonly signal?: AbortSignal;
  /** Size of each ranged GET. @default DEFAULT_PART_BYTES */
  readonly partBytes?: number;
  /** Ranged GETs in flight. @default DEFAULT_DOWNLOAD_CONCURRENCY */
  readonly concurrency?: number;
  /** Bytes received so far (in any order) of `total`. */
  readonly onProgress?: (bytes: number, total: number) => void;
  /** The same backup in its other format, if its manifest has one: what a bad object's line advises. */
  readonly otherCopy?: BackupObject;
}

export interface DownloadResult {
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly seconds: number;
}

/**
 * Downloads `object` into `dir` and verifies it; on any failure the partial file is deleted and
 * the error is one line. Memory holds about IO_BYTES per part in flight: a part goes to disk as it
 * arrives, and the hash reads it back (from the page cache) once every part before it is complete,
 * so the hashing runs during the download instead of after it.
 */
export async function downloadObject(deps: CatalogDeps, object: BackupObject, dir: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const started = performance.now();
  await checkFreeSpace(dir, object.bytes, options);
  const file = path.join(dir, path.basename(object.key));
  const total = object.bytes;
  const partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
  const parts = Math.max(1, Math.ceil(total / partBytes));
  const concurrency = Math.max(1, Math.min(options.concurrency ?? DEFAULT_DOWNLOAD_CONCURRENCY, parts));
  // One controller for every GET: the first failure (or the caller's signal) stops the others.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const hash = createHash('sha256');
  const handle = await fs.promises.open(file, 'w+', 0o600);
  const complete = new Set<number>();
  let nextToHash = 0;
  let nextToFetch = 0;
  let received = 0;
  let failure: unknown;
  const fail = (error: unknown): void => {
    failure ??= error;
    stop.abort();
  };

  // One hashing pass at a time, each over the parts complete from where the last one stopped.
  let hashing = Promise.resolve();
  const buffer = Buffer.allocUnsafe(Math.min(IO_BYTES, partBytes));
  const hashCompleteParts = async (): Promise<void> => {
    while (complete.has(nextToHash)) {
      const end = Math.min(total, (nextToHash + 1) * partBytes);
      for (let offset = nextToHash * partBytes; offset < end; ) {
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, end - offset), offset);
        if (bytesRead === 0) throw new Error(`the local file ${file} is shorter than the bytes written to it`);
        hash.update(buffer.subarray(0, bytesRead));
        offset += bytesRead;
      }
      complete.delete(nextToHash);
      nextToHash += 1;
    }
  };

  const worker = async (): Promise<void> => {
    while (nextToFetch < parts && !signal.aborted) {
      const index = nextToFetch++;
      const start = index * partBytes;
      const length = Math.min(partBytes, total - start);
      // A retry writes the part again from its start, over the same bytes: the hash reads a part
      // only once it is complete. Progress counts only bytes beyond what an earlier attempt wrote.
      let counted = 0;
      for (let attempt = 1; ; attempt++) {
        let written = 0;
        try {
          await getRange(deps, object, start, length, handle, signal, (bytes) => {
            written += bytes;
            if (written <= counted) return;
            received += written - counted;
            counted = written;
            options.onProgress?.(received, total);
          });
          break;
        } catch (error) {
          if (!(error instanceof BodyError) || signal.aborted) throw error;
          if (attempt === PART_ATTEMPTS) {
            throw new OperatorError(
              `cannot download s3://${deps.bucket}/${object.key}: ${error.message} during part ${index + 1} of ${parts} (bytes ${start}-${start + length - 1}) after ${attempt} attempts; retry, and check the S3 endpoint and the network`,
            );
          }
        }
      }
      complete.add(index);
      hashing = hashing.then(hashCompleteParts).catch(fail);
    }
  };

  try {
    if (total === 0) {
      await checkSize(deps, object);
    } else {
      // Every worker has ended (no GET still writing into the file) before the cleanup below; the
      // first failure is the cause, the others are the aborts it triggered.
      await Promise.all(Array.from({ length: concurrency }, () => worker().catch(fail)));
      await hashing;
      options.signal?.throwIfAborted();
      if (failure !== undefined) throw failure;
    }
    await handle.close();
  } catch (error) {
    await handle.close().catch(() => undefined);
    fs.rmSync(file, { force: true });
    if (options.signal?.aborted) throw options.signal.reason;
    if (error instanceof BadObjectError) throw new BadObjectError(error.problem, error.reason, options.otherCopy, deps.environmentName);
    if (error instanceof OperatorError) throw error;
    // The free-space check above is a look before the download: space taken meanwhile (another
    // download, a log) ends in ENOSPC on a write, and a disk quota statfs does not show in EDQUOT.
    const code = (error as NodeJS.ErrnoException).code;
    if (isOutOfSpace(error)) {
      const free = await freeSpace(dir, options).catch(() => undefined);
      throw noSpaceError(`the local disk is full: TMPDIR (${dir}) ran out of space for ${object.key} after ${formatBytes(received)} (${code})`, total, options.factor ?? DEFAULT_SPACE_FACTOR, free);
    }
    throw new OperatorError(`download of s3://${deps.bucket}/${object.key} failed after ${formatBytes(received)}: ${oneLine(error)}; retry, and check the S3 endpoint and network`);
  }
  const sha256 = hash.digest('hex');
  if (sha256 !== object.sha256) {
    fs.rmSync(file, { force: true });
    throw new BadObjectError(
      `object ${object.key} has sha256 ${sha256.slice(0, 12)}..., the manifest says ${object.sha256.slice(0, 12)}...: the stored object is corrupt`,
      'sha256',
      options.otherCopy,
      deps.environmentName,
    );
  }
  return { file, bytes: received, sha256, seconds: (performance.now() - started) / 1000 };
}

function sizeMismatch(object: BackupObject, stored: number | string): OperatorError {
  return new BadObjectError(
    `object ${object.key} is ${stored} bytes, the manifest says ${object.bytes}: the stored object is truncated or altered`,
    'size',
  );
}

/**
 * One ranged GET, streamed into `handle` at `start`, IO_BYTES at a time. The stored size
 * (Content-Range) must be the manifest's: a truncated or grown object is refused on its first part.
 */
async function getRange(
  deps: CatalogDeps,
  object: BackupObject,
  start: number,
  length: number,
  handle: fs.promises.FileHandle,
  signal: AbortSignal,
  onBytes: (bytes: number) => void,
): Promise<void> {
  let written = 0;
  let body: Readable | undefined;
  try {
    const response = await deps.s3.send(
      new GetObjectCommand({ Bucket: deps.bucket, Key: object.key, Range: `bytes=${start}-${start + length - 1}` }),
      { abortSignal: signal },
    );
    body = response.Body as Readable;
    const match = /\/(\d+)$/.exec(response.ContentRange ?? '');
    // A server that ignores the range answers with the whole object: its length is the stored size.
    const stored = match ? Number(match[1]) : response.ContentRange === undefined && start === 0 ? response.ContentLength : undefined;
    if (stored !== undefined && stored !== object.bytes) throw sizeMismatch(object, stored);
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      await handle.writev(pending, start + written);
      written += pendingBytes;
      onBytes(pendingBytes);
      pending = [];
      pendingBytes = 0;
    };
    // Read by hand, not for await: a failure of the body itself (which the caller may retry) is
    // told apart from one of the loop's own (a size mismatch, a full disk).
    const chunks = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await chunks.next();
      } catch (error) {
        // The body failed midway (a reset or timed-out socket): the caller may GET the part again.
        if (signal.aborted) throw error;
        throw new BodyError(error);
      }
      if (next.done) break;
      const chunk = next.value;
      if (written + pendingBytes + chunk.length > length) throw sizeMismatch(object, `more than ${start + length}`);
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= IO_BYTES) await flush();
    }
    if (pendingBytes > 0) await flush();
  } catch (error) {
    // The socket goes with the body, whatever stopped the reading (a size mismatch, a full disk).
    body?.destroy();
    if (error instanceof BodyError) throw error;
    throw s3Error(deps, object, start, error);
  }
  if (written !== length) throw sizeMismatch(object, start + written);
}

/** An empty object has no range to GET: its size alone is checked. */
async function checkSize(deps: CatalogDeps, object: BackupObject): Promise<void> {
  try {
    const response = await deps.s3.send(new GetObjectCommand({ Bucket: deps.bucket, Key: object.key }));
    const body = await response.Body!.transformToByteArray();
    if (body.length !== 0) throw sizeMismatch(object, body.length);
  } catch (error) {
    throw s3Error(deps, object, 0, error);
  }
}

/** A part's body that failed after its headers; its message says how ("connection reset (ECONNRESET)"). */
class BodyError extends Error {
  constructor(cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | undefined)?.code;
    // Node reports a reset during a response as "aborted", which reads like an operator's stop.
    super(code === 'ECONNRESET' ? 'connection reset (ECONNRESET)' : `${oneLine(cause)}${code ? ` (${code})` : ''}`);
  }
}

function s3Error(deps: CatalogDeps, object: BackupObject, start: number, error: unknown): Error {
  if (error instanceof OperatorError) return error;
  if ((error as Error)?.name === 'AbortError') return error as Error;
  // A write into the local file, not S3: downloadObject says the disk is full.
  if (isOutOfSpace(error)) return error as Error;
  if (isNotFound(error)) {
    return new BadObjectError(`object s3://${deps.bucket}/${object.key} named by the manifest is missing`, 'missing');
  }
  // 416: the range starts at or past the end, so the stored object holds at most `start` bytes (S3
  // answers any range of an empty object so: the first part's is then 0).
  if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) return sizeMismatch(object, start === 0 ? 0 : `at most ${start}`);
  // S3 silent: the manifest read's words (which service, where, how many attempts), not the SDK's.
  const unanswered = unansweredCall(error);
  if (unanswered) return new OperatorError(`cannot download s3://${deps.bucket}/${object.key}: ${unanswered}`);
  return new OperatorError(`cannot download s3://${deps.bucket}/${object.key}: ${oneLine(error)}; retry, and check the endpoint, the network and s3:GetObject/kms:Decrypt rights`);
}
