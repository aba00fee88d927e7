import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { operatorCommand } from '../shared/constants';
import { OperatorError, oneLine } from '../shared/errors';
import { BackupManifest, BackupObject, InvalidManifestError, LatestPointerSchema, parseManifest } from '../shared/manifest';
import {
  BACKUP_OBJECT_SUFFIX,
  BACKUP_TIERS,
  BackupTier,
  LATEST_POINTER_KEY,
  isBackupTier,
  isManifestKey,
  latestDatabasePointerKey,
  latestDatabaseTierPointerKey,
  latestTierPointerKey,
  RESTORE_TEST_BACKUP_PREFIX,
  unfinishedObjectRemoval,
} from '../shared/s3-layout';
import { getTextIfExists, isNoSuchBucket, missingBucketError, objectSize, s3Failure } from '../shared/s3-objects';
import { safeJson } from '../shared/json';
import { formatBytes, textStart } from '../shared/format';
import { parseBackupTier } from '../shared/tiers';

/**
 * The backup catalog, the read side of the bucket: lists manifests and resolves `latest` (of one
 * database), a tier's latest, or a manifest key to a validated manifest. It reads small JSON
 * objects only; the download of a backup object is download.ts.
 */
export interface CatalogDeps {
  readonly s3: S3Client;
  readonly bucket: string;
  /** Stops a resolution waiting on S3 (Ctrl-C): the reads reject with its reason. */
  readonly signal?: AbortSignal;
  /**
   * The environment whose bucket this is (the CLI's --env, the function's own): the commands the
   * lines print name it, or pasted from one environment's page they act on cdk.json's default
   * environment. @default none: the commands name no --env
   */
  readonly environmentName?: string;
}

/**
 * A refusal of the catalog, its problem apart from its fix: the fix is the CLI operator's (name a
 * manifest key, pass --database), and a caller that cannot act on it (the scheduled restore test)
 * gives its own after the problem.
 */
export class CatalogError extends OperatorError {
  constructor(
    readonly problem: string,
    fix: string,
    exitCode = 1,
  ) {
    super(`${problem}; ${fix}`, exitCode);
  }
}

export interface CatalogEntry {
  readonly manifestKey: string;
  /** The validated manifest, or undefined when the file is not a valid schema-1 manifest. */
  readonly manifest?: BackupManifest;
  /** Why the manifest is unusable (one line), when it is. */
  readonly invalid?: string;
  /** Why the manifest could not be read (a refusal, the network): neither good nor bad, the list is incomplete. */
  readonly unreadable?: string;
}

export interface ResolvedBackup {
  readonly manifestKey: string;
  readonly manifest: BackupManifest;
}

export interface CatalogFilter {
  readonly tier?: string;
  /** Only this database's backups (the manifest's `database`). */
  readonly database?: string;
}

/** Every manifest under the tier prefixes (or one tier, one database), newest first (startedAt, then key). */
export async function listBackups(deps: CatalogDeps, filter: CatalogFilter = {}): Promise<CatalogEntry[]> {
  const tiers: readonly BackupTier[] = filter.tier === undefined ? BACKUP_TIERS : [parseBackupTier(filter.tier)];
  const keys: string[] = [];
  for (const tier of tiers) {
    let continuationToken: string | undefined;
    do {
      const page = await s3Call(deps.bucket, `listing of ${tier}/`, () =>
        deps.s3.send(new ListObjectsV2Command({ Bucket: deps.bucket, Prefix: `${tier}/`, ContinuationToken: continuationToken })),
      );
      for (const object of page.Contents ?? []) if (object.Key && isManifestKey(object.Key)) keys.push(object.Key);
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
  }
  const entries: CatalogEntry[] = [];
  // A few manifests at a time: a year of backups is about 50 small GETs.
  for (let i = 0; i < keys.length; i += 8) {
    const batch = keys.slice(i, i + 8).map(async (key): Promise<CatalogEntry | undefined> => {
      let text: string | undefined;
      try {
        text = await getTextIfExists(deps.s3, deps.bucket, key);
      } catch (error) {
        return { manifestKey: key, unreadable: oneLine(error) };
      }
      // Listed, then gone (the lifecycle rule expired it meanwhile): not a backup any more.
      if (text === undefined) return undefined;
      try {
        return { manifestKey: key, manifest: parseManifest(key, text) };
      } catch (error) {
        return { manifestKey: key, invalid: oneLine(error) };
      }
    });
    for (const entry of await Promise.all(batch)) if (entry) entries.push(entry);
  }
  return entries
    .filter((e) => filter.database === undefined || e.manifest?.database === filter.database || (!e.manifest && keyDatabase(e.manifestKey) === filter.database))
    .sort((a, b) => {
      const byTime = (b.manifest?.startedAt ?? '').localeCompare(a.manifest?.startedAt ?? '');
      return byTime !== 0 ? byTime : b.manifestKey.localeCompare(a.manifestKey);
    });
}

/**
 * What can be said of a backup reference from the command line alone: `latest`, or a manifest key
 * (in `tier` when given); returns the tier. The CLI calls it before it resolves the bucket or the
 * connection, so that a typo is what the operator hears about first (exit 2). Spaces around it are
 * not part of it (backupRef).
 */
export function checkBackupRef(refText: string, tierText?: string, environmentName?: string): BackupTier | undefined {
  const ref = backupRef(refText);
  const tier = tierText === undefined ? undefined : parseBackupTier(tierText);
  if (ref === 'latest') return tier;
  // Its bucket is checked once the backup bucket is known (manifestKeyIn).
  const key = splitS3Url(ref)?.key ?? ref;
  // A dump's file name alone: which tiers hold its manifest takes a listing, so resolveBackup refuses it.
  if (isBareObjectName(key)) return tier;
  if (!isManifestKey(key)) {
    // A dump's key, or a manifest's without its suffix, names one manifest exactly; whether that
    // manifest exists takes the bucket, so resolveBackup says which (notAManifestKeyIn) once it is
    // known. Any other shape names no backup of the layout: refused here.
    if (keyDatabase(manifestOfObject(key)) !== undefined) return tier;
    throw notAManifestKey(ref, [], environmentName);
  }
  if (tier !== undefined && !key.startsWith(`${tier}/`)) {
    throw new OperatorError(`manifest ${ref} is not in tier ${tier}; drop --tier or name a ${tier}/ manifest`, 2);
  }
  return tier;
}

/**
 * A backup reference without the spaces around it: a key copied from the columns of `backups list`
 * comes with the spaces before it, and no key begins or ends with one (backupObjectKeys).
 */
function backupRef(text: string): string {
  return text.trim();
}

/** A backup object's key without its tier prefix (`<db>_backup_<stamp>.dump`, or `.sql.gz`). */
function isBareObjectName(key: string): boolean {
  return !key.includes('/') && BACKUP_OBJECT_SUFFIX.test(key);
}

/** The manifest key of a backup object's key (or of a manifest's without its suffix). */
function manifestOfObject(key: string): string {
  return `${key.replace(BACKUP_OBJECT_SUFFIX, '')}.manifest.json`;
}

function notAManifestKey(ref: string, meant: readonly string[], environmentName: string | undefined): OperatorError {
  return new OperatorError(`"${ref}" is neither "latest" nor a manifest key (<tier>/<db>_backup_<stamp>.manifest.json); ${didYouMean(meant)}list them with: ${operatorCommand(environmentName, 'backups list')}`, 2);
}

/**
 * A backup object's key (or a manifest's without its suffix) given where a manifest key goes: its
 * manifest when that exists (HEAD, before it is suggested: a suggestion that then "does not exist"
 * sent the operator round in a circle); else, when the object exists, what it is: stored by a run
 * that stopped or failed before its manifest, which no command lists or restores.
 */
async function notAManifestKeyIn(deps: CatalogDeps, ref: string, key: string): Promise<OperatorError> {
  const manifest = manifestOfObject(key);
  if ((await objectSize(deps.s3, deps.bucket, manifest, deps.signal)) !== undefined) return notAManifestKey(ref, [manifestOfObject(ref)], deps.environmentName);
  const bytes = manifest === `${key}.manifest.json` ? undefined : await objectSize(deps.s3, deps.bucket, key, deps.signal);
  if (bytes === undefined) return notAManifestKey(ref, [], deps.environmentName);
  return new OperatorError(`${key} (${formatBytes(bytes)}) has no manifest: an unfinished backup (not listed, never restored); ${unfinishedObjectRemoval(key)}; list the backups with: ${operatorCommand(deps.environmentName, 'backups list')}`, 2);
}

/** `s3://<bucket>/<key>` split, or undefined for anything else (a bare key, latest). */
function splitS3Url(ref: string): { readonly bucket: string; readonly key: string } | undefined {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(ref);
  return match ? { bucket: match[1], key: match[2] } : undefined;
}

/**
 * The backup reference as the catalog reads it: a manifest key as `backups list` prints it, or as
 * the CLI's own lines print one (`s3://<bucket>/<key>`, which operators paste back) when the bucket
 * is the backup bucket; `latest` and bare keys unchanged. A URL of another bucket is refused (exit
 * 2): reading the key in the backup bucket would restore or check another backup than the one named.
 */
export function manifestKeyIn(refText: string, bucket: string, environmentName?: string): string {
  const ref = backupRef(refText);
  const url = splitS3Url(ref);
  if (url === undefined) return ref;
  if (url.bucket !== bucket) {
    throw new OperatorError(`${ref} is in bucket "${url.bucket}", not in the backup bucket "${bucket}": name the manifest by its key (${operatorCommand(environmentName, 'backups list')}), or pass --bucket ${url.bucket} to read that bucket`, 2);
  }
  return url.key;
}

/**
 * `latest` of a database (or of its tier) that no pointer names a backup of: nothing is published.
 * A type of its own, so that a caller for whom that is an answer (the restore test's "no published
 * backup") tells it from a failure to read without reading the words.
 */
export class NoBackupError extends CatalogError {
  constructor(
    problem: string,
    fix: string,
    /** The `latest/` listing the refusal read (pointedDatabases), so that a caller naming the databases with backups need not list again. */
    readonly pointed?: PointedDatabases,
  ) {
    super(problem, fix, 2);
  }
}

/**
 * `latest` to the newest backup of `database` (its pointer `latest/<db>.json`, or
 * `latest/<db>/<tier>.json` with a tier), or a manifest key, to a validated manifest. During the
 * transition from bucket-wide pointers, a database without a pointer of its own falls back to
 * `latest.json` / `latest/<tier>.json`, accepted only when they name a backup of that database.
 */
export async function resolveBackup(deps: CatalogDeps, refText: string, filter: CatalogFilter = {}): Promise<ResolvedBackup> {
  const ref = backupRef(refText);
  const tier = checkBackupRef(ref, filter.tier, deps.environmentName);
  // Refused before any GET: the object named may be the dump itself, gigabytes.
  const key = splitS3Url(ref)?.key ?? ref;
  if (isBareObjectName(key)) throw notAManifestKey(ref, await tierKeysMeant(deps, manifestOfObject(key)), deps.environmentName);
  if (ref !== 'latest' && !isManifestKey(key)) throw await notAManifestKeyIn(deps, ref, key);
  if (ref !== 'latest') return { manifestKey: ref, manifest: await readManifest(deps, ref) };
  const database = filter.database;
  if (database === undefined || database === '') {
    throw new OperatorError('"latest" is per database and none was named: set PGDATABASE or pass --database NAME', 2);
  }
  const what = tier === undefined ? `database "${database}"` : `database "${database}" in tier ${tier}`;
  const own = tier === undefined ? latestDatabasePointerKey(database) : latestDatabaseTierPointerKey(database, tier);
  const legacy = tier === undefined ? LATEST_POINTER_KEY : latestTierPointerKey(tier);
  const listThem = operatorCommand(deps.environmentName, `backups list --database ${database}`);
  for (const pointerKey of [own, legacy]) {
    const text = await getTextIfExists(deps.s3, deps.bucket, pointerKey, deps.signal);
    if (text === undefined) continue;
    const pointer = LatestPointerSchema.safeParse(safeJson(text));
    if (!pointer.success) {
      throw new CatalogError(`pointer s3://${deps.bucket}/${pointerKey} is not {"manifest": "<key>"} (${textStart(text)})`, `name a manifest key instead (${listThem})`);
    }
    // A pointer outlives its backup when the backup is deleted or expires: the line names both keys.
    const manifest = await readManifest(
      deps,
      pointer.data.manifest,
      () =>
        new CatalogError(
          `pointer s3://${deps.bucket}/${pointerKey} names manifest ${pointer.data.manifest}, which does not exist (its backup was deleted or has expired)`,
          `name a manifest key instead (${listThem}), and delete the pointer (the next backup writes it again): aws s3 rm s3://${deps.bucket}/${pointerKey}`,
        ),
    );
    if (manifest.database === database) return { manifestKey: pointer.data.manifest, manifest };
    if (pointerKey === own) {
      throw new CatalogError(`pointer s3://${deps.bucket}/${pointerKey} names a backup of "${manifest.database}", not "${database}"`, `name a manifest key instead (${listThem})`);
    }
  }
  // Exit 2, as a manifest key that does not exist: the database named is the input to fix, and
  // running the same command again (exit 1) cannot find a backup that is not there. The fix names
  // the databases that do have backups, not a backup to take: on the day production is corrupt, a
  // backup of a mistyped name's database (or of the corrupt one) is not what the restore needs.
  const pointed = await pointedDatabases(deps);
  const ownTiers = [...(pointed?.get(database) ?? [])];
  const others = pointed && databasesNamed(pointed, database, tier);
  const nameAKey = `name a manifest key (${operatorCommand(deps.environmentName, 'backups list')})`;
  throw new NoBackupError(
    `no backup of ${what} in s3://${deps.bucket} (no ${own})`,
    tier !== undefined && ownTiers.length > 0
      ? `"${database}" has backups in ${ownTiers.length === 1 ? 'tier' : 'tiers'} ${ownTiers.join(', ')} only: pass one of them as --tier, or leave --tier out; or ${nameAKey}`
      : others === undefined
        ? `check PGDATABASE/--database, or ${nameAKey}`
        : others === ''
          ? `s3://${deps.bucket} has no ${tier === undefined ? 'latest/<db>.json' : `latest/<db>/${tier}.json`} of any database: check BACKUP_BUCKET/--bucket/--env, or ${nameAKey}`
          : `check PGDATABASE/--database (the databases with ${tier === undefined ? '' : `${tier} `}backups in s3://${deps.bucket}: ${others}), or ${nameAKey}`,
    pointed,
  );
}

/** Each database a `latest/` pointer names, with the tiers it has pointers of. */
export type PointedDatabases = ReadonlyMap<string, ReadonlySet<BackupTier>>;

/** How many `latest/` pointers a refusal reads to name the databases with backups: one listing page. */
const POINTER_LISTING_KEYS = 1000;

/**
 * The databases the `latest/` pointers of the bucket name (`latest/<db>.json`, and
 * `latest/<db>/<tier>.json`, whose tiers they give): which databases have backups, in one listing.
 * Undefined when that listing fails (a role without s3:ListBucket): it only adds to a refusal.
 */
export async function pointedDatabases(deps: CatalogDeps): Promise<PointedDatabases | undefined> {
  const page = await deps.s3.send(new ListObjectsV2Command({ Bucket: deps.bucket, Prefix: 'latest/', MaxKeys: POINTER_LISTING_KEYS }), { abortSignal: deps.signal }).catch(() => {
    deps.signal?.throwIfAborted();
    return undefined;
  });
  if (page === undefined) return undefined;
  const databases = new Map<string, Set<BackupTier>>();
  for (const { Key: key } of page.Contents ?? []) {
    const match = /^latest\/([^/]+?)(?:\/([^/]+))?\.json$/.exec(key ?? '');
    if (!match) continue;
    const [, database, tier] = match;
    // `latest/<tier>.json` is the bucket-wide pointer of the transition, not a database's.
    if (tier === undefined && isBackupTier(database)) continue;
    const tiers = databases.get(database) ?? new Set<BackupTier>();
    if (tier !== undefined && isBackupTier(tier)) tiers.add(tier);
    databases.set(database, tiers);
  }
  return databases;
}

/**
 * The databases of `pointed` other than `except` (with a pointer of `tier`, when given), quoted,
 * for one line: the first 10, then how many more; '' when there are none.
 */
export function databasesNamed(pointed: PointedDatabases, except: string, tier?: BackupTier): string {
  const names = [...pointed].filter(([database, tiers]) => database !== except && (tier === undefined || tiers.has(tier))).map(([database]) => `"${database}"`).sort();
  return names.length > 10 ? `${names.slice(0, 10).join(', ')} and ${names.length - 10} more` : names.join(', ');
}

/**
 * A manifest by its key; `missing` says what a missing one means where the key came from (a pointer).
 * A key the operator gave that does not exist is bad input (exit 2); a pointer that names one is the
 * bucket's state, not the command line's (exit 1).
 */
async function readManifest(deps: CatalogDeps, manifestKey: string, missing?: () => CatalogError): Promise<BackupManifest> {
  const text = await getTextIfExists(deps.s3, deps.bucket, manifestKey, deps.signal);
  if (text === undefined && missing) throw missing();
  if (text === undefined) {
    throw new CatalogError(`manifest s3://${deps.bucket}/${manifestKey} does not exist`, `${didYouMean(await tierKeysMeant(deps, manifestKey))}list backups with: ${operatorCommand(deps.environmentName, 'backups list')}`, 2);
  }
  try {
    return parseManifest(manifestKey, text);
  } catch (error) {
    if (!(error instanceof InvalidManifestError)) throw error;
    throw new CatalogError(error.problem, `do not restore it, choose another backup (${operatorCommand(deps.environmentName, 'backups list')})`);
  }
}

/**
 * For a key copied without its tier prefix (the file name alone): the tier keys that hold it; for
 * a manifest key of a tier and database with a stamp that none has (mistyped): the keys of that
 * tier and database nearest to it. Only a suggestion: a listing refused (a role without
 * s3:ListBucket) or failed gives none; a stop stays a stop.
 */
async function tierKeysMeant(deps: CatalogDeps, key: string): Promise<string[]> {
  return (key.includes('/') ? nearestKeys(deps, key) : tierKeysOf(deps, key)).catch(() => {
    deps.signal?.throwIfAborted();
    return [];
  });
}

/** How many listing pages of one tier and database nearestKeys reads: a year of monthly, a day of hourly backups fit in one. */
const NEAREST_KEYS_PAGES = 5;

/**
 * The manifest keys of the tier and database `key` names (`<tier>/<db>_backup_`), the one just
 * before it and the one just after it by stamp (stamps sort as text): what a mistyped stamp meant.
 */
async function nearestKeys(deps: CatalogDeps, key: string): Promise<string[]> {
  if (keyDatabase(key) === undefined) return [];
  const prefix = key.slice(0, key.lastIndexOf('_backup_') + '_backup_'.length);
  const keys: string[] = [];
  let continuationToken: string | undefined;
  for (let page = 0; page < NEAREST_KEYS_PAGES; page++) {
    const listed = await s3Call(deps.bucket, `listing of ${prefix}`, () =>
      deps.s3.send(new ListObjectsV2Command({ Bucket: deps.bucket, Prefix: prefix, ContinuationToken: continuationToken }), { abortSignal: deps.signal }),
    );
    for (const object of listed.Contents ?? []) if (object.Key && isManifestKey(object.Key)) keys.push(object.Key);
    continuationToken = listed.IsTruncated ? listed.NextContinuationToken : undefined;
    if (!continuationToken) break;
  }
  const after = keys.findIndex((k) => k > key);
  return after === -1 ? keys.slice(-1) : keys.slice(Math.max(0, after - 1), after + 1);
}

/** `<tier>/<name>` for each tier that holds an object of that exact key. */
async function tierKeysOf(deps: CatalogDeps, name: string): Promise<string[]> {
  const found: string[] = [];
  for (const tier of BACKUP_TIERS) {
    const key = `${tier}/${name}`;
    const page = await s3Call(deps.bucket, `listing of ${key}`, () => deps.s3.send(new ListObjectsV2Command({ Bucket: deps.bucket, Prefix: key, MaxKeys: 1 }), { abortSignal: deps.signal }));
    if (page.Contents?.some((o) => o.Key === key)) found.push(key);
  }
  return found;
}

/** The keys the operator may have meant, to type again exactly, or '' when there are none. */
function didYouMean(keys: readonly string[]): string {
  return keys.length === 0 ? '' : `did you mean ${keys.map((k) => `"${k}"`).join(' or ')}? `;
}

/** Chooses the object to restore: the requested format, else custom (parallel restore), else plain. */
export function chooseObject(manifestKey: string, manifest: BackupManifest, format?: 'custom' | 'plain'): BackupObject {
  const wanted = format ? [format] : (['custom', 'plain'] as const);
  for (const f of wanted) {
    const object = manifest.objects.find((o) => o.format === f);
    if (object) return object;
  }
  throw new OperatorError(`manifest ${manifestKey} has no ${format} object; drop --format or pick another backup`, 2);
}

/**
 * The database a restore's backup is of, when known before its manifest is read: `latest`'s
 * (`latestDatabase`: --database or PGDATABASE), or the one a manifest key names, as the backup named
 * the key after its manifest's database (backupObjectKeys). What a refused --target-db of that name
 * is told: restore under an accepted name, then rename (checkTargetName).
 */
export function backedUpDatabase(refText: string, latestDatabase?: string): string | undefined {
  const ref = backupRef(refText);
  return ref === 'latest' ? latestDatabase : keyDatabase(splitS3Url(ref)?.key ?? ref);
}

/**
 * `<tier>/<db>_backup_<stamp>.manifest.json` to `<db>`: to filter a manifest that cannot be read.
 * The restore test's own backups are the same keys under RESTORE_TEST_BACKUP_PREFIX, real backups a
 * restore may be given. Undefined for a key of any other shape, a prefix that is not a tier among
 * them (yearly/, another folder above the tier): checkBackupRef suggests a key only when this names
 * its database.
 */
function keyDatabase(manifestKey: string): string | undefined {
  const key = manifestKey.startsWith(RESTORE_TEST_BACKUP_PREFIX) ? manifestKey.slice(RESTORE_TEST_BACKUP_PREFIX.length) : manifestKey;
  const match = /^([^/]+)\/([^/]+)_backup_\d{8}_\d{6}\.manifest\.json$/.exec(key);
  return match && isBackupTier(match[1]) ? match[2] : undefined;
}

async function s3Call<T>(bucket: string, what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isNoSuchBucket(error)) throw missingBucketError(bucket);
    throw s3Failure(what, bucket, error);
  }
}
