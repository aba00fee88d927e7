import * as fs from 'node:fs';
import * as os from 'node:os';
import { OperatorError, oneLine } from '../shared/errors';
import { operatorCommand } from '../shared/constants';
import type { BackupManifest } from '../shared/manifest';
import { formatBytes, takenAgo } from '../shared/format';
import { boundText, type PgConnection, type ReadBounds } from '../shared/pg-connection';
import { isRefusedStatement, READ_ONLY_SQL_TRANSACTION, sqlState } from '../shared/pg-errors';
import { dropDatabaseStatement, quoteIdent } from '../shared/postgres';
import { makeDownloadDir } from '../shared/temp-dir';
import { backedUpDatabase, CatalogDeps, chooseObject, resolveBackup } from './catalog';
import { checkRowCounts, ROW_COUNT_BOUNDS } from './check';
import { DownloadResult, SpaceCheck, downloadObject } from './download';
import { checkRoles, checkTarget, checkTargetName, guardProduction, guardSystemDatabase } from './guards';
import { checkLeftovers, keepCheckedCopy, stagingName } from './leftovers';
import { checkArchiveReadable, loadBackup } from './load';
import { giveBackupProperties, keepDatabaseProperties, warnIfReadOnly } from './properties';
import { Unsettled, backupOwnerToGive, createDatabase, databaseOwner, dropDatabase, NoAnswer, openAdminSession, runOrUnsettled, SessionNotBack, stopOnNoAnswer } from './session';
import { swapIn } from './swap';

export { siblingPrefix, stagingName } from './leftovers';

/**
 * Verified restore, one step after the other, data flowing one way:
 *   resolve the manifest (catalog.ts) -> guards on the target (guards.ts) and leftovers of a
 *   killed restore (leftovers.ts), then the roles the manifest says the backup names (load.ts)
 *   -> download with parallel ranged GETs while hashing, size + sha256 verified (download.ts)
 *   -> `pg_restore` pre-data (where a role the server lacks fails in milliseconds), then data and
 *   post-data `-j <cores>` (or psql) into a staging database beside the target (load.ts)
 *   -> row counts against the manifest (check.ts) -> the replaced database's own settings, grants,
 *   connection limit and comment given to the staging database (into a new name, the backed-up
 *   database's, from the manifest) (properties.ts) -> swap it in (swap.ts), the
 *   database it replaced kept beside it unless dropReplaced.
 * The steps on the server run their statements on the restore's session, which holds the target's
 * lock (session.ts).
 * Any failure, and an abort (Ctrl-C, SIGTERM, a deadline), drops the staging database and leaves
 * the target exactly as it was; a swap that cannot tell what the server did, or left the target
 * missing (Unsettled), drops nothing and says what is where.
 */
export interface RestoreDeps extends CatalogDeps, SpaceCheck {
  /** The server to restore on; its `database` is not written to. */
  readonly connection: PgConnection;
  /** A database to connect to for CREATE/ALTER/DROP DATABASE. @default 'postgres' */
  readonly maintenanceDatabase?: string;
  /** Directory of pg_restore/psql; default: on PATH. */
  readonly pgBinDir?: string;
  /** Parent of the download directory. @default os.tmpdir() */
  readonly tempDir?: string;
  /** pg_restore -j, and sessions counting rows. @default os.availableParallelism() */
  readonly jobs?: number;
  /** Download tuning (ranged GETs). @default download.ts DEFAULT_PART_BYTES / DEFAULT_DOWNLOAD_CONCURRENCY */
  readonly partBytes?: number;
  readonly downloadConcurrency?: number;
  /** Progress lines (one per phase; stderr on the CLI, the logger in Lambda). */
  readonly log?: (line: string) => void;
  /** What asks the operator to act (leftovers of a killed restore): always shown on the CLI, logger.warn in Lambda. @default log */
  readonly warn?: (line: string) => void;
  /**
   * The staging database's name, just before it is created, and the statement that drops it for
   * the restoring role (dropDatabaseStatement): a CLI that quits at once (a second Ctrl-C) can name both.
   */
  readonly onStaging?: (name: string, drop: string) => void;
  /**
   * The name the target's data takes, just before the swap renames it out of the way: until the
   * restored copy takes the target's name (at most the 5 s PostgreSQL waits for the copy's last
   * sessions), the target is missing, and a CLI that quits at once must say where its data is.
   */
  readonly onSwapAside?: (previous: string) => void;
  /**
   * With --terminate-connections: true just before the swap closes the target to connections
   * (ALLOW_CONNECTIONS false, which stays with its data under the name it is renamed to), false
   * once a database that accepts connections has the target name again. A CLI that quits at once
   * must then say how to reopen it, or the application cannot connect to the target put back.
   */
  readonly onTargetClosed?: (closed: boolean) => void;
  /**
   * 'underway' just before the swap starts, 'done' once it ended with the restored copy in place:
   * the swap does not stop for an abort (cut half-way, it would leave the target missing), and a
   * CLI interrupted meanwhile says at once that it finishes it first. 'failed' once it failed saying
   * what it left (a guard refusing at swap time, the target put back), before the staging database
   * is dropped: a stop during that drop stops a cleanup, not a swap.
   */
  readonly onSwap?: (state: 'underway' | 'done' | 'failed') => void;
  /**
   * With dropReplaced: the database the swap drops once the restored copy is in place, and the
   * statement that drops it for the restoring role, just before that drop (minutes, maybe).
   */
  readonly onDropReplaced?: (previous: string, drop: string) => void;
  /**
   * Asks whether to go on, once the backup is known and the guards before the download passed (the
   * CLI's confirmation of an overwrite of production: it names the backup and its age, and is not
   * asked for a restore those guards refuse). Throws to stop: nothing is created before it.
   */
  readonly confirm?: (backup: { readonly manifestKey: string; readonly manifest: BackupManifest; readonly targetExists: boolean }) => Promise<void>;
  /**
   * Without terminateConnections, asks whether to end the sessions that connected to the target
   * during the load, found at the swap (`who`: sessionsWho), the restored copy loaded and checked:
   * true ends them as terminateConnections does, false refuses (exit 3). The CLI's question at a
   * terminal. @default none: refused (swap.ts SwapOptions.askEndSessions)
   */
  readonly askEndSessions?: (who: string, count: number) => Promise<boolean>;
  /** Download progress: bytes received of the object's size. */
  readonly onDownloadProgress?: (bytes: number, total: number) => void;
  /**
   * The load's start, with its phase (`pg_restore into <staging>`); the function it returns is
   * called when the load ends. The CLI shows the phase and its elapsed time from a timer: no read
   * of the server, whose answer the load would otherwise wait on.
   */
  readonly onLoad?: (phase: string) => () => void;
  /** The bounds of each row count's statement (the CLI's --count-timeout: rowCountBounds). @default check.ts ROW_COUNT_BOUNDS */
  readonly rowCountBounds?: ReadBounds;
  /** The option that gives each row count longer (the CLI's --count-timeout), named on the line of a count its statement_timeout ended. @default none (restore-test and the Lambda have no such option) */
  readonly countTimeoutOption?: string;
}

export interface RestoreOptions {
  /** `latest` or a manifest key. */
  readonly ref: string;
  /** With `latest`: the tier's latest instead of the newest of any tier. */
  readonly tier?: string;
  /** With `latest`: the database whose newest backup is restored (PGDATABASE or --database on the CLI). */
  readonly database?: string;
  readonly targetDb: string;
  /** Replace a non-empty target. */
  readonly force?: boolean;
  /** Restore this format (default: custom when present, else plain). */
  readonly format?: 'custom' | 'plain';
  /** Database names that are refused as a target unless `allowProductionOverwrite` (production). */
  readonly protectedDatabases?: readonly string[];
  readonly allowProductionOverwrite?: boolean;
  /** Terminate sessions connected to the target at swap time instead of refusing. */
  readonly terminateConnections?: boolean;
  /** Drop the database the swap replaced; by default it is kept (RestoreResult.replacedKeptAs). */
  readonly dropReplaced?: boolean;
  /**
   * Every object owned by the restoring role (pg_restore --no-owner) instead of its owner in the
   * backup, which needs the restoring role to be a member of those roles, and the roles to exist.
   * Custom format only: the plain SQL gives each object to its owner itself.
   */
  readonly noOwner?: boolean;
  /** Stops the restore: the child is killed, the staging database dropped, the reason rethrown. */
  readonly signal?: AbortSignal;
  /**
   * When (Date.now() ms) `signal` stops the restore for the function's deadline (the Lambda's): the
   * check line then says that the deadline, minutes away, ends the counts long before their own hour.
   * @default none (the CLI: only an operator's Ctrl-C or SIGTERM stops it)
   */
  readonly deadlineAt?: number;
  /**
   * What the lines say of a target the restore left as it was. The restore test's scratch database
   * does not exist until the swap creates it: "not created", not "untouched", which says it exists.
   * @default 'target "<targetDb>" untouched'
   */
  readonly untouched?: string;
  /**
   * How the caller takes noOwner, for the advice of a load that stopped on an owner; null: it does
   * not (the restore test). Offered with the custom format only. @default '--no-owner' (the CLI)
   */
  readonly noOwnerOption?: string | null;
}

export interface RestoreTimings {
  readonly downloadSeconds: number;
  readonly restoreSeconds: number;
  readonly verifySeconds: number;
  readonly swapSeconds: number;
}

export interface RestoreResult {
  readonly manifestKey: string;
  readonly manifest: BackupManifest;
  readonly object: { readonly key: string; readonly format: 'custom' | 'plain'; readonly bytes: number };
  readonly targetDb: string;
  /** A previous database of that name was replaced. */
  readonly replaced: boolean;
  /**
   * The database that holds what the target was before this restore (`<target>_old_<mark>_<id>`):
   * kept unless dropReplaced, or left when its drop failed (a warning says so); null when none is left.
   */
  readonly replacedKeptAs: string | null;
  /** dropReplaced: the database replaced is known dropped; false when its drop failed or its answer was lost (a warning says which). */
  readonly replacedDropped: boolean;
  /** The restored database's owner: the replaced database's, else the backed-up database's when this role may give it, else the restoring role. */
  readonly owner: string;
  readonly tablesRestored: number;
  readonly rowsRestored: number;
  /** Every warning the restore gave (also given to RestoreDeps.warn as it came), e.g. a copy read-only for the application. */
  readonly warnings: readonly string[];
  readonly timings: RestoreTimings;
  /**
   * Wall time of the whole restore (resolve, download, load, check, swap), seconds, but the
   * operator's time at the confirmation prompt and at the swap question: the tool's time, what the
   * restore test measures (it asks neither), not how long someone took to answer.
   */
  readonly rtoSeconds: number;
}

export async function restoreBackup(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now();
  const log = deps.log ?? (() => undefined);
  // Every warning is also in the result (the CLI's --json): a line on stderr is lost to a script.
  const warnings: string[] = [];
  const warn = (line: string): void => {
    warnings.push(line);
    (deps.warn ?? log)(line);
  };
  const signal = options.signal;
  const target = options.targetDb;
  const untouched = options.untouched ?? `target "${target}" untouched`;
  checkTargetName(target, backedUpDatabase(options.ref, options.database));
  guardProduction(target, options.protectedDatabases ?? [], options.allowProductionOverwrite);
  const maintenance = deps.maintenanceDatabase ?? 'postgres';
  guardSystemDatabase(target, maintenance);

  // A failure before the staging database exists (the manifest, the download) changed nothing: its
  // line says so, as every later step's does. Its class stays (the restore test tells a missing
  // backup and a corrupt upload by it).
  const leftUntouched = (error: unknown): never => {
    // An interrupt is said by the restore's own line (restore interrupted ...).
    if (signal?.aborted) throw error;
    if (!(error instanceof OperatorError)) throw new OperatorError(`${oneLine(error)}; ${untouched}`);
    error.message = `${error.message}; ${untouched}`;
    throw error;
  };

  // 1. The manifest.
  const { manifestKey, manifest } = await resolveBackup({ ...deps, signal }, options.ref, { tier: options.tier, database: options.database }).catch((error: unknown) => {
    if (signal?.aborted) throw new OperatorError(`restore interrupted (${abortReason(signal)}) while reading the manifest: nothing created; ${untouched}`, 130);
    return leftUntouched(error);
  });
  guardProduction(target, [manifest.database], options.allowProductionOverwrite);
  const object = chooseObject(manifestKey, manifest, options.format);
  if (options.noOwner && object.format === 'plain') {
    throw new OperatorError(
      `--no-owner works with the custom format only (pg_restore --no-owner): the plain SQL of ${manifestKey} gives each object to its owner itself; ${options.format === 'plain' ? 'drop --format plain' : 'this backup has no custom dump: restore it without --no-owner, as a member of its owners'}; nothing was done`,
      2,
    );
  }
  const otherCopy = manifest.objects.find((o) => o.format !== object.format);

  // Holds the target's lock until the end, and reconnects if the server restarted meanwhile.
  const admin = await openAdminSession(deps.connection, maintenance, target);
  const staging = stagingName(target);
  let stagingCreated = false;
  let dropFailed = false;
  let swapping = false;
  let dir: string | undefined;
  try {
    // Made in the try, after the session opened: a failure here (TMPDIR missing, full) must end
    // the session and so free the target's lock, which a reused Lambda process would keep.
    dir = makeDownloadDir(deps.tempDir ?? os.tmpdir(), 'atmr-dr-restore-');
    // 2. The guards, before any download (they run again at swap time). Leftovers of a killed
    // restore first: a target missing because its data sits under `_old_` must not be recreated.
    await checkLeftovers(await admin.client(), target, warn);
    const { exists: targetExists } = await checkTarget(await admin.client(), deps.connection, target, options);
    // How a restore refused for an owner may be told to leave the owners out: never the plain SQL,
    // nor a restore that already leaves them out.
    const noOwnerOption = options.noOwnerOption === undefined ? '--no-owner' : options.noOwnerOption;
    const noOwnerAdvice = object.format === 'custom' && noOwnerOption !== null && !options.noOwner ? `pass ${noOwnerOption}` : undefined;
    // Roles are not in a pg_dump: a new server's missing one refused in seconds, not after the download or the load.
    await checkRoles(await admin.client(), manifest.roles, { manifestKey, restorer: deps.connection.user, noOwner: options.noOwner, noOwnerAdvice, untouched });
    // Which backup, and how old, once the checks passed and before anything is downloaded: `latest`
    // may be days old, or already after the damage.
    log(`backup: ${manifestKey}, ${takenAgo(manifest.startedAt)}`);
    // The operator's time at the prompt is not the restore's: the RTO leaves it out.
    const promptStarted = performance.now();
    await deps.confirm?.({ manifestKey, manifest, targetExists });
    const promptSeconds = (performance.now() - promptStarted) / 1000;

    // 3. Download and verify.
    log(`download: ${object.key} (${formatBytes(object.bytes)})`);
    const download: DownloadResult = await downloadObject(deps, object, dir, {
      statfs: deps.statfs,
      factor: deps.factor,
      signal,
      partBytes: deps.partBytes,
      concurrency: deps.downloadConcurrency,
      onProgress: deps.onDownloadProgress,
      otherCopy,
    }).catch(leftUntouched);
    log(`download: verified sha256 ${download.sha256.slice(0, 12)}... in ${download.seconds.toFixed(1)} s`);

    signal?.throwIfAborted();
    const toc = object.format === 'custom' ? await checkArchiveReadable({ file: download.file, pgBinDir: deps.pgBinDir, signal, otherCopy, environmentName: deps.environmentName, madeBy: manifest.pgDumpVersion }, untouched) : '';

    // 4. Load into the staging database.
    signal?.throwIfAborted();
    const loadStarted = performance.now();
    deps.onStaging?.(staging, dropDatabaseStatement(staging, admin.superuser));
    // The database keeps its owner: the application's role, whose migrations need CREATE on
    // public, which PostgreSQL 15 gives the database's owner. checkTarget made sure this role may
    // give it (the owner or a member of it). A new name gets the backed-up database's owner when
    // this role may give it (a superuser, or a member of it), from the manifest, whichever format
    // is loaded: the objects' owners need CREATE on public to be given their objects by a role that
    // is not a superuser, as they had it at the source. Else, and with --no-owner or a manifest
    // taken before backups recorded it, the restoring role's.
    // Before the staging database is created: a read unanswered leaves nothing on the server.
    const ownerClient = await admin.client();
    const owner = await stopOnNoAnswer(
      async () => (await databaseOwner(ownerClient, target)) ?? (options.noOwner ? undefined : await backupOwnerToGive(ownerClient, manifest.databaseProperties?.owner)),
      (why) => `cannot read which role is to own the staging database ${staging}: ${why}, then rerun the restore; nothing was created: ${untouched}`,
    );
    const unknown = (lost: string): string =>
      `cannot tell whether the staging database ${staging} was created: ${lost}: once it has ended there, look with SELECT datname FROM pg_database WHERE datname = '${staging}', and if it is there ${dropDatabaseStatement(staging, admin.superuser)}; ${untouched}`;
    // Its answer lost: Unsettled, and the restore drops nothing (the server may still be creating it).
    await runOrUnsettled(admin, `CREATE DATABASE ${quoteIdent(staging)}`, unknown, (client) => createDatabase(client, staging, owner)).catch((error: unknown) => {
      if (error instanceof OperatorError) throw error;
      // A server that refuses writes (a standby, default_transaction_read_only from the server's
      // configuration or the role): the runbook's command that tells which, and what lifts it.
      const readOnly = sqlState(error) === READ_ONLY_SQL_TRANSACTION;
      throw new OperatorError(
        `cannot create the staging database ${staging} (${oneLine(error)}); ${untouched}${readOnly ? `; the server refuses writes: "${operatorCommand(deps.environmentName, 'db read-write')}" (same PG* settings) shows why and what lifts it` : ''}`,
      );
    });
    stagingCreated = true;
    const tool = object.format === 'custom' ? `pg_restore pre-data, then data and post-data -j ${deps.jobs ?? os.availableParallelism()},` : 'psql';
    log(`load: ${tool} into staging database ${staging}`);
    // pg_restore says nothing until it ends, which on a large database is minutes.
    const loadShown = deps.onLoad?.(`${object.format === 'custom' ? 'pg_restore' : 'psql'} into ${staging}`);
    // A stop ends the load's status at once: the load is being stopped, and a time that went on
    // counting past the stop's line read as a load that had not heard it.
    let loadShowing = loadShown !== undefined;
    const loadEnded = (): void => {
      if (loadShowing) loadShown?.();
      loadShowing = false;
    };
    signal?.addEventListener('abort', loadEnded, { once: true });
    try {
      await loadBackup({ connection: deps.connection, database: staging, file: download.file, format: object.format, jobs: deps.jobs, pgBinDir: deps.pgBinDir, noOwner: options.noOwner, signal, otherCopy, environmentName: deps.environmentName, newTarget: owner === undefined ? target : undefined, backupOwner: manifest.databaseProperties?.owner, noOwnerAdvice, toc });
    } finally {
      signal?.removeEventListener('abort', loadEnded);
      loadEnded();
    }
    fs.rmSync(download.file, { force: true });
    const restoreSeconds = (performance.now() - loadStarted) / 1000;
    if (options.noOwner) {
      // A restore that succeeds while the application's role is locked out of its tables is an
      // outage the result must name. REASSIGN OWNED would also give away the role's databases.
      const you = deps.connection.user;
      warn(
        `--no-owner: every object restored into "${target}" is owned by "${you}", not by its owner in the backup: any other role (the application's) cannot read or change them until each is given back (ALTER TABLE ... OWNER TO <its owner>, and so for each object; not REASSIGN OWNED BY ${quoteIdent(you)}, which also gives away every database "${you}" owns)`,
      );
    }

    // 5. Row counts against the manifest.
    signal?.throwIfAborted();
    const countBounds = deps.rowCountBounds ?? ROW_COUNT_BOUNDS;
    const byDeadline = options.deadlineAt === undefined ? '' : `, and by the function's deadline in ${inTime(options.deadlineAt - Date.now())}`;
    log(`check: row counts against the manifest (each table's count bounded to ${boundText(countBounds.statement_timeout)}${byDeadline})`);
    const checkStarted = performance.now();
    const rowsRestored = await checkRowCounts({ ...deps.connection, database: staging }, manifest, manifestKey, deps.jobs, signal, {
      bounds: countBounds,
      longerAdvice: deps.countTimeoutOption && `give each count longer: ${deps.countTimeoutOption} <more than ${boundText(countBounds.statement_timeout)}>`,
    });
    const verifySeconds = (performance.now() - checkStarted) / 1000;

    // 6. What the replaced database has set on itself (settings, grants, connection limit,
    // comment), which the load does not carry: the copy keeps them as it keeps the owner. Into a
    // new name, the backed-up database's, from the manifest.
    signal?.throwIfAborted();
    // The session's connection again first, outside the catch: one that cannot come back says what it left (SessionNotBack).
    const propertiesClient = await admin.client();
    const giveProperties = async (): Promise<void> => {
      if (await keepDatabaseProperties(propertiesClient, target, staging, warn)) return warnIfReadOnly(propertiesClient, staging, target, warn);
      if (manifest.databaseProperties !== undefined) {
        await giveBackupProperties(propertiesClient, manifest.databaseProperties, manifest.database, target, staging, warn);
        return warnIfReadOnly(propertiesClient, staging, target, warn);
      }
      // A new name without the backed-up database's properties: its owner is not known either, and
      // the copy is the restoring role's, which the application's migrations may need changed.
      const ownedBy = `"${target}" has none of them, and is owned by "${owner ?? deps.connection.user}" (the restoring role), not by the backed-up database's owner`;
      const byHand = `or set them by hand (ALTER DATABASE ${quoteIdent(target)} OWNER TO <its owner>, ...)`;
      warn(
        `backup ${manifestKey} does not record the backed-up "${manifest.database}"'s owner, own settings, role settings, comment and grants (taken before backups recorded them): ${ownedBy}; restore a newer backup to get them, ${byHand}`,
      );
    };
    await giveProperties().catch((error: unknown) => {
      throw new OperatorError(`${oneLine(error)}; ${untouched}`, error instanceof OperatorError ? error.exitCode : 1);
    });

    // 7. Swap.
    signal?.throwIfAborted();
    log(`swap: ${staging} -> ${target}`);
    const swapStarted = performance.now();
    swapping = true;
    deps.onSwap?.('underway');
    // The operator's time at the swap question is not the restore's either, as the prompt's.
    let questionSeconds = 0;
    const ask = deps.askEndSessions;
    const askEndSessions =
      ask &&
      (async (who: string, count: number): Promise<boolean> => {
        const asked = performance.now();
        try {
          return await ask(who, count);
        } finally {
          questionSeconds += (performance.now() - asked) / 1000;
        }
      });
    const swapped = await swapIn(admin, deps.connection, staging, target, { ...options, askEndSessions }, warn, { onAside: deps.onSwapAside, onClosed: deps.onTargetClosed, onDropping: deps.onDropReplaced, log });
    deps.onSwap?.('done');
    stagingCreated = false;
    const swapSeconds = (performance.now() - swapStarted) / 1000 - questionSeconds;
    log(`restored ${manifestKey} into ${target}`);

    return {
      manifestKey,
      manifest,
      object: { key: object.key, format: object.format, bytes: object.bytes },
      targetDb: target,
      replaced: swapped.replaced,
      replacedKeptAs: swapped.kept ?? null,
      replacedDropped: swapped.dropped === true,
      owner: owner ?? deps.connection.user,
      tablesRestored: manifest.tables.length,
      rowsRestored,
      warnings,
      timings: { downloadSeconds: download.seconds, restoreSeconds, verifySeconds, swapSeconds },
      rtoSeconds: (performance.now() - started) / 1000 - promptSeconds - questionSeconds,
    };
  } catch (error) {
    // A lost answer, or a target left missing: the staging database may be the copy the target
    // needs (or still being created), and the message says what is where. Nothing is dropped.
    if (error instanceof Unsettled) {
      const interrupted = signal?.aborted ? `restore interrupted (${abortReason(signal)}): ` : '';
      throw new Unsettled(`${interrupted}${swapping ? 'swap stopped after the load: ' : ''}${error.message}`, signal?.aborted ? 130 : error.exitCode);
    }
    if (swapping) deps.onSwap?.('failed');
    // A guard that passed before the download and refuses now (exit 2): someone changed the target
    // during the load (a client connected, a database created), a conflict with another actor (exit
    // 3). The swap changed nothing, and the copy is loaded and checked: it is kept, with the
    // statements that put it in place, not dropped (hours of load on a large database). Unless it
    // cannot be marked as complete (the server gone): then it is dropped as on any failure.
    if (swapping && stagingCreated && !signal?.aborted && error instanceof OperatorError && !(error instanceof SessionNotBack) && error.exitCode === 2) {
      const kept = await admin
        .client()
        .then((client) => keepCheckedCopy(client, staging, target, manifestKey, admin.superuser))
        .catch(() => undefined);
      if (kept !== undefined) {
        stagingCreated = false;
        throw new OperatorError(`${error.message} (found at swap time, after the load: ${kept})`, 3);
      }
    }
    // The staging database goes first, so that the line below says what is left.
    let cleanup = 'no staging database was created';
    if (stagingCreated) {
      stagingCreated = false;
      // DROP ... WITH (FORCE) waits for the locks others hold on the database: say what is running.
      log(`dropping staging database ${staging} ...`);
      // A fresh session when the server dropped the restore's own (a restart, a failover).
      cleanup = await admin
        .client()
        .then((client) => dropDatabase(client, staging))
        .catch(async (dropError: unknown) => {
          // The session cut (pg_terminate_backend, a failover) as the restore failed is handed out
          // until the driver sees its end, and the drop dies with it: once more on a fresh session.
          // A refusal would come again, an unanswered drop may still run, and a session that could
          // not connect again has said why: those are the line's.
          if (dropError instanceof OperatorError || dropError instanceof NoAnswer || isRefusedStatement(dropError)) throw dropError;
          await dropDatabase(await admin.fresh(), staging);
        })
        .then(
          () => `staging database ${staging} dropped`,
          (dropError: unknown) => {
            dropFailed = true;
            // The server gone, the drop fails as the restore did: its words once in the line are enough.
            const why = oneLine(dropError) === oneLine(error) ? 'the same error' : oneLine(dropError);
            return `could not drop staging database ${staging} (${why}): drop it with ${dropDatabaseStatement(staging, admin.superuser)}`;
          },
        );
      // A drop that failed is said once, in the last line, with its DROP.
      if (!dropFailed) log(cleanup);
    }
    if (signal?.aborted) {
      // The swap does not stop for an interrupt: one that arrives while it fails must not hide the
      // state it left the target in (swapIn's message says it: put back, or missing with the fix).
      if (swapping && error instanceof OperatorError && error.exitCode !== 2) {
        throw new OperatorError(`restore interrupted (${abortReason(signal)}) during the swap, which failed: ${error.message}; the restored copy was not swapped in, ${cleanup}`, 130);
      }
      throw new OperatorError(`restore interrupted (${abortReason(signal)}): ${cleanup}; ${untouched}`, 130);
    }
    // A failure at swap time comes after a whole load, which the operator must know is lost. The
    // guards (exit 2) run again there: the same refusal before the download cost nothing.
    if (!swapping) {
      // The line of a session that could not connect again names no database: it says what is left.
      if (error instanceof SessionNotBack) throw new OperatorError(`${error.message}; ${cleanup}; ${untouched}`, error.exitCode);
      // A staging database that could not be dropped is named in the last line, with its DROP.
      if (!dropFailed) throw error;
      throw new OperatorError(`${oneLine(error)}; ${cleanup}`, error instanceof OperatorError ? error.exitCode : 1);
    }
    // The swap's own steps say what they changed; anything else failed before the first of them,
    // the session's connection again for the first included (swapIn's later steps catch that one):
    // the target is as it was, and with --terminate-connections still open to its clients.
    const asItWas = `${untouched}${options.terminateConnections ? ', still open to connections (the swap had not closed it)' : ''}`;
    if (!(error instanceof OperatorError) || error instanceof SessionNotBack) {
      throw new OperatorError(`swap failed after the load: ${oneLine(error)}; the restored copy was not swapped in, ${cleanup}; ${asItWas}`, error instanceof OperatorError ? error.exitCode : 1);
    }
    // A guard that passed before the download and refuses now: someone changed the target during
    // the load (a client connected, a database created), a conflict with another actor (exit 3).
    if (error.exitCode === 2) {
      throw new OperatorError(`${error.message} (found at swap time, after the load: the restored copy was not swapped in, ${cleanup}; rerun the restore)`, 3);
    }
    // swapIn's message says in which state it left the target.
    throw new OperatorError(`swap failed after the load: ${error.message}; the restored copy was not swapped in, ${cleanup}`, error.exitCode);
  } finally {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    await admin.end();
  }
}

/**
 * "8 min", "45 s": how long until a moment, in whole minutes once it is minutes away, rounded down:
 * a bound said is never later than the real one.
 */
function inTime(ms: number): string {
  return ms >= 120_000 ? `${Math.floor(ms / 60_000)} min` : `${Math.max(0, Math.floor(ms / 1000))} s`;
}

function abortReason(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  return reason instanceof Error && reason.name === 'TimeoutError' ? 'timed out' : oneLine(reason);
}
