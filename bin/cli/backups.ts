import { Command } from 'commander';
import type { CatalogDeps, CatalogEntry, PointedDatabases } from '../../lambdas/restore/catalog';
import { countOf, formatBytes } from '../../lambdas/shared/format';
import type { BackupManifest } from '../../lambdas/shared/manifest';
import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { OperatorError, oneLine } from '../../lambdas/shared/errors';
import { commandTempDir, interruptibly, ownsStopSignals } from './interrupt';
import { latestDatabase, resolveBackupBucket, withBucketOptions } from './resolve';

/** `backups list` and `backups verify`: the read-only catalog of the backup bucket. */
export function registerBackupsCommands(program: Command): void {
  const backups = program.command('backups').description('the backup catalog in BACKUP_BUCKET (read-only)');

  withBucketOptions(backups.command('list'))
    .description('backups, newest first (from their manifests)')
    .option('--tier <tier>', 'only this tier: hourly, daily, weekly or monthly')
    .option('--database <name>', 'only the backups of this database')
    .option('--json', 'print JSON')
    .action(async (opts: { tier?: string; database?: string; json?: boolean; bucket?: string; env?: string }) => {
      // The filter is checked before the bucket is looked for: a typo is what the operator hears first.
      if (opts.tier !== undefined) (await import('../../lambdas/shared/tiers')).parseBackupTier(opts.tier);
      const bucket = await resolveBackupBucket(opts);
      // The catalog's code (the S3 SDK, the manifest schemas) is loaded on use, not with the
      // module: a usage error, --help or a missing bucket answers without evaluating it.
      const [{ listBackups }, { createS3Client }] = await Promise.all([import('../../lambdas/restore/catalog'), import('../../lambdas/shared/aws')]);
      const deps = { s3: createS3Client(), bucket, environmentName: opts.env };
      const entries = await listBackups(deps, { tier: opts.tier, database: opts.database });
      const { marks, pointed } = await latestMarks(deps, entries, opts.tier, opts.database);
      if (opts.json) {
        // `latest` stays what `restore latest` with the same --tier restores.
        const latest = opts.tier === undefined ? LATEST : `${LATEST} ${opts.tier}`;
        process.stdout.write(`${JSON.stringify(entries.map((e) => summary(e, marks.get(e.manifestKey)?.includes(latest) ?? false)), null, 2)}\n`);
      } else if (entries.length === 0) {
        process.stdout.write(`no backups in s3://${bucket}${opts.tier ? `/${opts.tier}/` : ''}${opts.database ? ` of database ${opts.database}${await otherDatabases(deps, opts.database, opts.tier, pointed)}` : ''}\n`);
      } else {
        process.stdout.write(table(entries, marks));
      }
      // A manifest that could not be read is neither good nor bad: the list above is incomplete, and
      // a script must not take it for the whole catalog (exit 1, after what could be read).
      const unreadable = entries.filter((e) => e.unreadable !== undefined);
      if (unreadable.length > 0) {
        throw new OperatorError(`the list is incomplete: ${countOf(unreadable.length, 'manifest')} could not be read (${unreadable[0].unreadable}); retry once that is fixed`);
      }
    });

  withBucketOptions(ownsStopSignals(backups.command('verify')))
    .description('checks sizes and sha256 of every object against the manifest, and that the archives are readable to the end (pg_restore, gunzip); no database needed')
    // Optional for the parser, required by the action: its own message says where a key comes from.
    .argument('[manifest-key|latest]', 'a manifest key from "backups list", or latest')
    .usage('[options] <manifest-key|latest>')
    .option('--tier <tier>', 'with latest: the latest backup of this tier')
    .option('--database <name>', 'with latest: the database whose newest backup to verify (default: PGDATABASE)')
    .option('--json', 'print JSON')
    .action(async (ref: string | undefined, opts: { tier?: string; database?: string; json?: boolean; bucket?: string; env?: string }) => {
      if (ref === undefined) {
        throw new OperatorError(`backups verify needs the backup to check: a manifest key (${OPERATOR_CLI} backups list) or latest (with --database NAME or PGDATABASE)`, 2);
      }
      // --database and --tier choose among backups with latest; with a key, --database would be
      // ignored (--tier is checked against the key's tier).
      if (ref !== 'latest' && opts.database !== undefined) {
        throw new OperatorError(`backups verify: --database chooses the backup with latest only; ${ref} names its own: drop --database, or verify latest --database ${opts.database}`, 2);
      }
      const database = latestDatabase(ref, opts.database);
      // The reference is checked before the bucket is looked for: a typo is what the operator hears first.
      const { checkBackupRef, manifestKeyIn } = await import('../../lambdas/restore/catalog');
      checkBackupRef(ref, opts.tier, opts.env);
      const bucket = await resolveBackupBucket(opts);
      const key = manifestKeyIn(ref, bucket, opts.env);
      const [{ verifyBackup }, { createS3Client }] = await Promise.all([import('../../lambdas/restore/verify'), import('../../lambdas/shared/aws')]);
      // Its downloads are whole backup objects: Ctrl-C / SIGTERM / SIGHUP stop the check and remove
      // them (node's default would exit at once and leave a partial download in TMPDIR), as restore does.
      const tempDir = commandTempDir();
      const result = await interruptibly(
        (signal) => verifyBackup({ s3: createS3Client(), bucket, environmentName: opts.env, tempDir: tempDir.path, signal }, key, { tier: opts.tier, database }),
        () => tempDir.remove(),
      ).finally(() => tempDir.remove());
      if (opts.json) {
        const { ok, manifestKey, objects, seconds, summary } = result;
        process.stdout.write(`${JSON.stringify({ ok, manifestKey, objects, seconds, summary }, null, 2)}\n`);
      } else {
        for (const o of result.objects) {
          if (!o.ok) {
            process.stdout.write(`BAD ${o.key}  ${o.reason}: ${o.problem}\n`);
            continue;
          }
          const detail = o.format === 'custom' ? `${o.detail.tocEntries} archive entries` : `${formatBytes(o.detail.sqlBytes ?? 0)} of SQL`;
          process.stdout.write(`ok  ${o.key}  ${formatBytes(o.bytes)}  sha256 ${o.sha256.slice(0, 12)}  ${detail}\n`);
        }
        if (result.ok) process.stdout.write(`verified ${result.manifestKey} in ${result.seconds.toFixed(1)} s: ${result.objects.length} of ${result.objects.length} objects good\n`);
      }
      // A bad object: the objects above, then the summary as the one error line (exit 1).
      if (!result.ok) throw new OperatorError(result.summary);
    });
}

const LATEST = 'latest';

/**
 * For a --database with no backups (a typo, often): the databases that have some, from the latest
 * pointers (the same the refusal of `restore latest` names), as ` (the databases with backups ...)`;
 * '' when there are none or the bucket cannot be listed.
 */
async function otherDatabases(deps: CatalogDeps, database: string, tier: string | undefined, listed: PointedDatabases | undefined): Promise<string> {
  const [{ databasesNamed, pointedDatabases }, { parseBackupTier }] = await Promise.all([import('../../lambdas/restore/catalog'), import('../../lambdas/shared/tiers')]);
  const pointed = listed ?? (await pointedDatabases(deps));
  if (pointed === undefined) return '';
  const others = databasesNamed(pointed, database, tier === undefined ? undefined : parseBackupTier(tier));
  return others === '' ? '' : ` (the databases with ${tier === undefined ? '' : `${tier} `}backups there: ${others})`;
}

/**
 * Each listed backup that a `latest` pointer names, with the marks that say which: `latest` (the
 * backup `restore latest` restores, pointer latest/<db>.json) and `latest <tier>` (what `restore
 * latest --tier <tier>` restores, latest/<db>/<tier>.json), per database listed; with --tier, that
 * tier's mark only. Each is the restore's own resolution (resolveBackup: the pointers, not the
 * newest line), so a mark and the restore cannot disagree. A pointer that does not resolve marks
 * nothing, and one line on stderr says why: that `restore latest` would fail. The database of
 * --database is looked up even with none of its backups listed: its pointer may outlive them
 * (deleted, expired), and the line says so; that it has no pointer either, the list says already.
 * With it comes the `latest/` listing that database's refusal read (NoBackupError.pointed): the line
 * that names the databases with backups uses it instead of listing the pointers a second time.
 */
async function latestMarks(
  deps: CatalogDeps,
  entries: readonly CatalogEntry[],
  tier: string | undefined,
  named: string | undefined,
): Promise<{ marks: ReadonlyMap<string, readonly string[]>; pointed?: PointedDatabases }> {
  const { NoBackupError, resolveBackup } = await import('../../lambdas/restore/catalog');
  const listed = entries.flatMap((e) => (e.manifest ? [e.manifest] : []));
  const unlisted = named !== undefined && !listed.some((m) => m.database === named) ? [{ database: named, tier, mark: tier === undefined ? LATEST : `${LATEST} ${tier}` }] : [];
  const lookups = [...new Set(listed.map((m) => m.database))].flatMap((database) => {
    const tiers = tier !== undefined ? [tier] : [undefined, ...new Set(listed.filter((m) => m.database === database).map((m) => m.tier))];
    return tiers.map((t) => ({ database, tier: t, mark: t === undefined ? LATEST : `${LATEST} ${t}` }));
  });
  lookups.push(...unlisted);
  const resolved = await Promise.all(
    lookups.map(({ database, tier }) =>
      resolveBackup(deps, 'latest', { database, tier }).then(
        (backup) => ({ key: backup.manifestKey }),
        (error: unknown) => ({ error }),
      ),
    ),
  );
  const marks = new Map<string, string[]>();
  let pointed: PointedDatabases | undefined;
  resolved.forEach((result, i) => {
    const { database, mark } = lookups[i];
    if ('error' in result && result.error instanceof NoBackupError && unlisted.some((u) => u.database === database)) {
      pointed = result.error.pointed;
      return;
    }
    if ('error' in result) process.stderr.write(`atmr-dr: no backup marked ${mark} for database "${database}": ${oneLine(result.error)}\n`);
    else marks.set(result.key, [...(marks.get(result.key) ?? []), mark]);
  });
  return { marks, pointed };
}

function summary(entry: CatalogEntry, latest: boolean) {
  if (entry.unreadable !== undefined) return { manifestKey: entry.manifestKey, unreadable: entry.unreadable };
  if (!entry.manifest) return { manifestKey: entry.manifestKey, invalid: entry.invalid };
  const m = entry.manifest;
  return {
    manifestKey: entry.manifestKey,
    database: m.database,
    tier: m.tier,
    startedAt: m.startedAt,
    finishedAt: m.finishedAt,
    durationMs: m.durationMs,
    bytes: totalBytes(m),
    formats: m.objects.map((o) => o.format),
    tables: m.tables.length,
    rows: totalRows(m),
    latest,
  };
}

const totalBytes = (m: BackupManifest) => m.objects.reduce((sum, o) => sum + o.bytes, 0);
const totalRows = (m: BackupManifest) => m.tables.reduce((sum, t) => sum + t.rows, 0);

const HEADER = ['MANIFEST', 'DATABASE', 'TIER', 'STARTED', 'SIZE', 'FORMATS', 'TABLES', 'ROWS', 'LATEST'];

/** The text listing: a header, then a backup a line in aligned columns, its marks last. */
function table(entries: readonly CatalogEntry[], marks: ReadonlyMap<string, readonly string[]>): string {
  const rows = entries.map((entry): string | string[] => {
    // The reason names the key already (every manifest error does): once on the line is enough.
    if (entry.unreadable !== undefined) return `UNREADABLE: ${entry.unreadable}`;
    if (!entry.manifest) return `INVALID: ${entry.invalid}`;
    const m = entry.manifest;
    const cells = [m.database, m.tier, m.startedAt, formatBytes(totalBytes(m)), m.objects.map((o) => o.format).join('+'), countOf(m.tables.length, 'table'), countOf(totalRows(m), 'row')];
    return [entry.manifestKey, ...cells, (marks.get(entry.manifestKey) ?? []).join(', ')];
  });
  const cells = [HEADER, ...rows.filter((r) => typeof r !== 'string')];
  const widths = HEADER.map((_, i) => Math.max(...cells.map((c) => c[i].length)));
  const text = (row: string | readonly string[]) => (typeof row === 'string' ? row : row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
  return [HEADER, ...rows].map((row) => `${text(row)}\n`).join('');
}
