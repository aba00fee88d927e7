import { Command, Option } from 'commander';
import { RESTORE_TEST_DEFAULTS } from '../../lambdas/restore/contract';
import type { RestoreResult } from '../../lambdas/restore/restore';
import type { RestoreTestReport } from '../../lambdas/restore/restore-test';
import { OPERATOR_CLI } from '../../lambdas/shared/constants';
import { OperatorError } from '../../lambdas/shared/errors';
import { durationSeconds } from '../../lambdas/shared/duration';
import { backupAgeSeconds, countOf, takenAgo, utcSecond } from '../../lambdas/shared/format';
import { quoteIdent, reopenDatabaseStatement } from '../../lambdas/shared/postgres';
import { removedTempDirLine } from '../../lambdas/shared/temp-dir';
import { loadStatus, stderrProgress } from './progress';
import { asksAtSwap, ConfirmationInterrupted, confirmer } from './confirm';
import { commandTempDir, exitCodeOf, interruptible, ownsStopSignals, sayWhileStarting } from './interrupt';
import { latestDatabase, resolveBackupBucket, withBucketOptions } from './resolve';

/** `restore` (verified restore into --target-db) and `restore-test` (the runbook's test, RTO/RPO). */
export function registerRestoreCommands(program: Command): void {
  withBucketOptions(ownsStopSignals(program.command('restore')))
    .description('verified restore of a backup into --target-db on PGHOST: checksum before touching the server, restore into a staging database, row counts checked, then swapped in')
    // Optional for the parser, required by the action: its own message says what to pass.
    .argument('[manifest-key|latest]', 'a manifest key from "backups list", or latest')
    .usage('[options] <manifest-key|latest> --target-db <name>')
    // Not requiredOption: the action's own line for a missing --target-db comes after the backup's
    // (a restore without either is told both, in that order, as "restore needs the backup ... and --target-db").
    .option('--target-db <name>', '(required) database to restore into (created, or replaced with --force)')
    .option('--force', 'replace the target database when it exists and is not empty (what it held is kept beside it unless --drop-replaced)')
    .addOption(new Option('--format <format>', 'restore this format of the backup (default: custom when the backup has it, else plain)').choices(['custom', 'plain']))
    .option('--tier <tier>', 'with latest: the latest backup of this tier')
    .option('--database <name>', 'with latest: the database whose newest backup to restore (default: PGDATABASE)')
    .option('--terminate-connections', 'end the sessions connected to the target at swap time instead of refusing')
    .option('--drop-replaced', 'drop the database the restore replaced once the restored copy is in place (by default it is kept as <target>_old_<mark>_<id>, and the result line gives its DROP)')
    // commander reads --no-owner as `owner: false` (true when absent).
    .option('--no-owner', 'every restored object owned by the connecting role instead of its owner in the backup (custom format only); without it, that role must be a superuser or a member of the owners')
    .option('--i-understand-this-overwrites-production', 'allow --target-db to be the production/source database (PGDATABASE or the backup\'s own database); asks to type the database name unless --yes')
    .option('--yes', 'confirm the overwrite of production without asking (required with the flag above when standard input is not a terminal)')
    .option('--database-secret <arn>', 'read the connection from this Secrets Manager secret instead of PG* variables')
    .option('--count-timeout <duration>', "longest one table's row count may take, e.g. 90m, 3h, from 2m to 7d (default 1h; counts run one per core at a time and share the disk's throughput)")
    .option('--progress', 'progress on stderr even when it is not a terminal (at a terminal it is always shown)')
    .option('--json', 'print the result as JSON')
    // Wrapped by hand within 80 columns, the command on one line to copy: commander does not wrap a command's afterword.
    .addHelpText(
      'after',
      `\nrestore has no --dry-run: to check a backup without restoring it,\n${OPERATOR_CLI} backups verify <manifest-key|latest>\nchecks its objects' sizes and checksums, and that they read to the end,\nwithout a database.`,
    )
    .action(
      async (
        ref: string | undefined,
        opts: {
          targetDb?: string;
          force?: boolean;
          format?: 'custom' | 'plain';
          tier?: string;
          database?: string;
          terminateConnections?: boolean;
          dropReplaced?: boolean;
          owner?: boolean;
          iUnderstandThisOverwritesProduction?: boolean;
          yes?: boolean;
          databaseSecret?: string;
          countTimeout?: string;
          progress?: boolean;
          json?: boolean;
          bucket?: string;
          env?: string;
        },
      ) => {
        if (ref === undefined) {
          throw new OperatorError(`restore needs the backup to restore: latest (with --database NAME or PGDATABASE) or a manifest key from "${OPERATOR_CLI} backups list", and --target-db NAME`, 2);
        }
        // --database and --tier choose among backups with latest; a manifest key names its backup,
        // database included, so --database would be ignored (--tier is checked against the key's tier).
        // The database restored into is --target-db, never --database.
        if (ref !== 'latest' && opts.database !== undefined) {
          throw new OperatorError(
            `restore: --database chooses the backup with latest only; ${ref} names its own (the database restored into is --target-db): drop --database, or restore latest --database ${opts.database}`,
            2,
          );
        }
        if (opts.targetDb === undefined) throw new OperatorError('--target-db is required: name the database to restore into, e.g. --target-db atmr_restored', 2);
        // A week at most: PostgreSQL's statement_timeout stops at about 24 days, and a count longer
        // than a week is a disk to fix, not a bound to raise. Over the counts' minute of lock_timeout:
        // a count waiting on a lock ends on the first of the two, statement_timeout when they are
        // equal, and its line would then ask for a longer count instead of naming the lock.
        const countSeconds = opts.countTimeout === undefined ? undefined : (durationSeconds(opts.countTimeout) ?? 0);
        if (countSeconds !== undefined && !(countSeconds >= 120 && countSeconds <= 7 * 86400)) {
          throw new OperatorError(`restore: --count-timeout "${opts.countTimeout}" must be a duration from 2m to 7d, such as 90m or 3h`, 2);
        }
        // Until restoreBackup takes the signals over (interruptible below), an interrupt ends the
        // command at once: nothing is created before it, and the line says where it was.
        let phase = 'checking the arguments';
        const untouchedTarget = opts.targetDb;
        sayWhileStarting((signal) => `restore interrupted (received ${signal}) while ${phase}, before the restore began: nothing created; target "${untouchedTarget}" untouched`);
        // The arguments are checked before the bucket and the connection are looked for: a typo in
        // them is what the operator hears first, not a missing PGHOST.
        const [{ backedUpDatabase, checkBackupRef, manifestKeyIn }, { checkTargetName }] = await Promise.all([import('../../lambdas/restore/catalog'), import('../../lambdas/restore/guards')]);
        checkBackupRef(ref, opts.tier, opts.env);
        // The database latest stands for, when it is known before the connection settings are read,
        // or the one a manifest key names.
        checkTargetName(opts.targetDb, backedUpDatabase(ref, opts.database ?? process.env.PGDATABASE));
        phase = 'looking up the backup bucket';
        const bucket = await resolveBackupBucket(opts);
        ref = manifestKeyIn(ref, bucket, opts.env);
        // The restore's code is loaded as it is needed, not with the module: a usage error, --help
        // or a missing setting answers without evaluating the S3 SDK and the catalog.
        phase = 'reading the connection settings';
        const { resolveConnection } = await import('../../lambdas/shared/pg-connection');
        // The databases the settings name (PGDATABASE, the secret's dbname) are production's: both are
        // protected below, and the first names the backup `latest` stands for. Only when neither names
        // one does the connection fall back to the maintenance database (the swap works from it anyway,
        // and guardSystemDatabase refuses it as a target).
        const connection = await resolveConnection({ secretArn: opts.databaseSecret, fallbacks: { database: 'postgres' } });
        const productionNames = [...new Set([process.env.PGDATABASE, connection.database])].filter((d): d is string => d !== undefined && d !== '' && d !== 'postgres');
        // Before the temp directory: a latest that names no database is refused first.
        const database = latestDatabase(ref, opts.database, productionNames[0]);
        const target = opts.targetDb;
        phase = 'loading the restore';
        const [{ restoreBackup, siblingPrefix, stagingName }, { rowCountBounds }, { createS3Client }] = await Promise.all([
          import('../../lambdas/restore/restore'),
          import('../../lambdas/restore/check'),
          import('../../lambdas/shared/aws'),
        ]);
        const showProgress = opts.progress === true || process.stderr.isTTY === true;
        const progress = stderrProgress(showProgress);
        // A second Ctrl-C quits before the restore's own cleanup: the download's directory goes then,
        // and the staging database, if it was not dropped yet, is named with the statement that
        // drops it (its pg_restore may still be loading it).
        const tempDir = commandTempDir();
        reportSwept(tempDir.swept);
        let staging: string | undefined;
        // The statement that drops it, which depends on the restoring role (a superuser or not).
        let dropStaging: string | undefined;
        let aside: string | undefined;
        // With --drop-replaced, once the restored copy is in place: the replaced database being
        // dropped, and the statement that drops it for the restoring role.
        let dropping: { readonly name: string; readonly drop: string } | undefined;
        let closed = false;
        let stoppedDuringSwap: NodeJS.Signals | undefined;
        // From the swap's end (the restored copy in place) to the restore's: a stop has nothing left to stop.
        const doneAlready = (signal: NodeJS.Signals): string => `received ${signal} after the restore was done: nothing left to stop`;
        // With --drop-replaced the swap ends with the drop of the database it replaced, if any: minutes, maybe.
        const lasts = opts.dropReplaced ? 'a few statements, then the drop of the database it replaces, if any, which may take minutes' : 'a few statements, seconds at most';
        const duringSwap = (signal: NodeJS.Signals): string => `received ${signal} during the swap: finishing it (${lasts}) before stopping: cut half-way, it would leave "${target}" missing`;
        const interrupt = interruptible(() => {
          // Quitting between the swap's two renames leaves the target missing: where its data is
          // comes first, as the next restore into it would say. A --terminate-connections swap has
          // closed the target first, and the rename back keeps it closed: the application could
          // not connect to it until it is reopened too.
          const reopen = closed ? ` and ${reopenDatabaseStatement(target)}` : '';
          // The client gone, the server may carry on with the DROP it was sent, or not have it yet
          // (a role not a superuser ends the sessions first): since the minor releases of August
          // 2023 (15.4, 14.9, ...) a drop cut short leaves the database invalid, which only a DROP
          // DATABASE removes.
          const left = dropping
            ? `the restored copy is in place as "${target}"; the drop of "${dropping.name}", what "${target}" was before this restore, was under way and the server may still finish it: look with SELECT datname FROM pg_database WHERE datname = '${dropping.name}': if it is still there (a drop cut short leaves it invalid, no connection to it), ${dropping.drop} removes it`
            : aside
            ? `the swap was under way: if "${target}" is missing, its data is in "${aside}": put it back with ALTER DATABASE ${quoteIdent(aside)} RENAME TO ${quoteIdent(target)}${reopen}; the restored copy "${staging}" may be left too (the next restore into ${target} names both)`
            : staging
              ? `${closed ? `the swap was under way: "${target}" may be closed to connections: reopen it with ${reopenDatabaseStatement(target)}; ` : ''}the staging database "${staging}" may be left: drop it with ${dropStaging} (the next restore into ${target} names it too)`
              : 'no staging database was created yet';
          return `${tempDir.remove()}; ${left}`;
        });
        const result = await restoreBackup(
          {
            s3: createS3Client(),
            bucket,
            environmentName: opts.env,
            connection,
            tempDir: tempDir.path,
            log: (line) => progress.line(line),
            warn: stderrWarning,
            onStaging: (name, drop) => {
              staging = name;
              dropStaging = drop;
            },
            // With --drop-replaced, once the restored copy is in place, the drop of the database it
            // replaced, which may take minutes (a checkpoint of the whole server, then its files): a
            // stop then is told that, not "seconds at most".
            onDropReplaced: (name, drop) => {
              dropping = { name, drop };
              interrupt.finishing(
                (signal) =>
                  `received ${signal} while the swap drops "${name}", what "${target}" was before this restore (--drop-replaced): the restored copy is already in place as "${target}"; the drop may take minutes and is let finish, then the result is printed; Ctrl-C again quits at once, leaving the drop to the server`,
              );
            },
            onSwapAside: (name) => (aside = name),
            onTargetClosed: (isClosed) => (closed = isClosed),
            // The swap is not stopped (cut half-way, the target is missing): a stop that comes during
            // it, which would hear nothing for seconds, is told at once that it waits for the swap;
            // the restore then ends with its result and the stop's exit code (below). A swap that
            // failed is over: a stop during the staging drop that follows is one like any other.
            onSwap: (state) => {
              if (state === 'underway') {
                interrupt.finishing(duringSwap);
              } else if (state === 'done') {
                stoppedDuringSwap = interrupt.received;
                interrupt.finishing(doneAlready);
              } else {
                interrupt.finishing(undefined);
              }
            },
            // Overwriting production cannot be undone: asked once the backup is known (which one
            // `latest` is, and how old: the newest may hold the damage) and the guards before the
            // download passed (no backup, a client connected: refused before anybody types), with
            // nothing created yet.
            confirm: opts.iUnderstandThisOverwritesProduction
              ? async ({ manifestKey, manifest, targetExists }) => {
                  // A dropped production (the database lost) is created: nothing is replaced or kept.
                  // The swap names the replaced database when it makes it: its prefix is known now.
                  const where = opts.dropReplaced ? 'they are dropped with it (--drop-replaced)' : `they are in ${siblingPrefix(target, 'old')}... (kept until you drop it)`;
                  const what = !targetExists ? 'which is missing: the restore creates it' : `${opts.dropReplaced ? 'erasing' : 'replacing'} what it holds: ${writesAfter(target, manifest.startedAt, where)}`;
                  const question = `restore ${manifestKey} (backup ${takenAgo(manifest.startedAt)}) ${targetExists ? 'over' : 'into'} database "${target}" on ${connection.host}:${connection.port}, ${what}`;
                  const confirmed = await confirmer(opts.yes)(question, target, interrupt.signal).catch((error: unknown) => {
                    // Ctrl-C at the prompt (confirm.ts): the restore's own line, which names the target.
                    if (!(error instanceof ConfirmationInterrupted)) throw error;
                    throw new OperatorError(`restore interrupted (Ctrl-C) while asking for the confirmation, before the restore began: nothing created; target "${target}" untouched`, 130);
                  });
                  if (!confirmed) throw new OperatorError(`restore: not confirmed, "${target}" untouched`, 1);
                }
              : undefined,
            // A client that connected to the target during the load would cost the whole load: the
            // operator at the terminal is asked instead. Any answer but yes (Ctrl-C, Ctrl-D, a stop
            // signal) is a no: the refusal, exit 3, and the staging database dropped, as without the
            // question. The swap has not begun: a stop meanwhile is not told it is let finish.
            askEndSessions: asksAtSwap(opts)
              ? async (who, count) => {
                  const question = `target database "${target}" has ${countOf(count, 'connection')} opened during the restore (${who}); the restored copy ${staging} is loaded, its row counts checked, and waits to be swapped in: end ${count === 1 ? 'it' : 'them'} and swap now`;
                  interrupt.finishing(undefined);
                  try {
                    return await confirmer(false)(question, undefined, interrupt.signal).catch(() => false);
                  } finally {
                    interrupt.finishing(duringSwap);
                  }
                }
              : undefined,
            onDownloadProgress: (bytes, total) => progress.meter('download', bytes, total),
            onLoad: loadStatus(progress),
            ...(countSeconds !== undefined && { rowCountBounds: rowCountBounds(countSeconds) }),
            countTimeoutOption: '--count-timeout',
          },
          {
            ref,
            tier: opts.tier,
            database,
            signal: interrupt.signal,
            targetDb: opts.targetDb,
            force: opts.force,
            format: opts.format,
            terminateConnections: opts.terminateConnections,
            dropReplaced: opts.dropReplaced,
            noOwner: opts.owner === false,
            protectedDatabases: productionNames,
            allowProductionOverwrite: opts.iUnderstandThisOverwritesProduction,
          },
        )
          .catch((error: unknown) => {
            throw interrupt.interrupted(error);
          })
          .finally(() => {
            interrupt.done();
            tempDir.remove();
          });
        process.stdout.write(opts.json ? `${JSON.stringify(restoreJson(result), null, 2)}\n` : `${restoreText(result, stagingName(result.targetDb, 'undone'))}\n`);
        // Done, but not as asked: whoever sent the stop (an operator, ECS, systemd) hears that it came
        // too late to stop the restore, with its exit code.
        if (stoppedDuringSwap) {
          throw new OperatorError(`restore done, then stopped: ${stoppedDuringSwap} came during the swap, which finished first: "${target}" is the restored copy (result above)`, exitCodeOf(stoppedDuringSwap));
        }
      },
    );

  const defaults = RESTORE_TEST_DEFAULTS;
  withBucketOptions(ownsStopSignals(program.command('restore-test')))
    .description('the runbook\'s test_backup_restore: back up PGDATABASE (under restore-tests/, never anybody\'s latest), restore into a scratch database, verify row counts and point in time, drop it; reports RTO and RPO. Writes nothing to PGDATABASE')
    .option('--tier <tier>', 'tier of the backup the test takes', 'hourly')
    .option('--critical-query <sql...>', 'queries that must succeed on the restored copy (the defaults are skipped when their table is absent, a query given here is not; a test where none ran fails)', [...defaults.criticalQueries])
    .option('--rto-objective <seconds>', 'recovery time objective', String(defaults.rtoObjectiveSeconds))
    .option('--rpo-objective <seconds>', 'recovery point objective', String(defaults.rpoObjectiveSeconds))
    .option('--database-secret <arn>', 'read the connection from this Secrets Manager secret instead of PG* variables')
    .option('--progress', 'progress on stderr even when it is not a terminal (at a terminal it is always shown)')
    .option('--json', 'print the report as one JSON object')
    .action(async (opts: { tier: string; criticalQuery: string[]; rtoObjective: string; rpoObjective: string; databaseSecret?: string; progress?: boolean; json?: boolean; bucket?: string; env?: string }) => {
      // The test's code is loaded as it is needed, as in `restore` above (the backup pipeline too).
      // The arguments are checked before the bucket is looked for.
      const { parseBackupTier } = await import('../../lambdas/shared/tiers');
      const tier = parseBackupTier(opts.tier, '--tier');
      const rto = positiveSeconds('--rto-objective', opts.rtoObjective, defaults.rtoObjectiveSeconds);
      const rpo = positiveSeconds('--rpo-objective', opts.rpoObjective, defaults.rpoObjectiveSeconds);
      const bucket = await resolveBackupBucket(opts);
      const { resolveConnection } = await import('../../lambdas/shared/pg-connection');
      const source = await resolveConnection({ secretArn: opts.databaseSecret });
      // The restore's own progress (download meter, load status), as `restore` shows it.
      const showProgress = opts.progress === true || process.stderr.isTTY === true;
      const progress = stderrProgress(showProgress);
      const tempDir = commandTempDir();
      reportSwept(tempDir.swept);
      let scratch: string | undefined;
      let stoppedDuringCleanup: NodeJS.Signals | undefined;
      const interrupt = interruptible(
        () =>
          `${tempDir.remove()}; ${scratch ? `the scratch database "${scratch}" (and its staging copy ${scratch}_restore_...) may be left: drop it with DROP DATABASE IF EXISTS ${quoteIdent(scratch)} WITH (FORCE)` : 'no scratch database was created'}`,
      );
      const [{ runRestoreTest, restoreTestText }, { createS3Client }] = await Promise.all([import('../../lambdas/restore/restore-test'), import('../../lambdas/shared/aws')]);
      const report = await runRestoreTest(
        {
          s3: createS3Client(),
          bucket,
          environmentName: opts.env,
          source,
          target: source,
          tempDir: tempDir.path,
          log: (line) => progress.line(line),
          warn: stderrWarning,
          signal: interrupt.signal,
          onScratch: (name) => (scratch = name),
          // The drop of the scratch database is not stopped (cut, it would leave the database): a
          // stop that comes during it is told so at once, and the test ends with the stop's code (below).
          onCleanup: (underway) => {
            if (underway) {
              interrupt.finishing((signal) => `received ${signal} while dropping the scratch database "${scratch}": finishing the drop before stopping, so as not to leave it`);
            } else {
              interrupt.finishing(undefined);
              stoppedDuringCleanup ??= interrupt.received;
            }
          },
          onDownloadProgress: (bytes, total) => progress.meter('download', bytes, total),
          onLoad: loadStatus(progress),
        },
        { takeBackup: true, tier, criticalQueries: opts.criticalQuery, rtoObjectiveSeconds: rto, rpoObjectiveSeconds: rpo },
      ).finally(() => {
        interrupt.done();
        tempDir.remove();
      });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(restoreTestJson(report))}\n`);
      } else {
        process.stdout.write(restoreTestText(report, { database: source.database, bucket, environmentName: opts.env }));
      }
      if (!report.ok) throw interrupt.interrupted(new OperatorError(`restore test failed: ${report.error}`, report.errorExitCode));
      // Passed, but not as asked: whoever sent the stop hears that it came too late to stop the test.
      if (stoppedDuringCleanup) {
        throw new OperatorError(`restore test done, then stopped: ${stoppedDuringCleanup} came while it dropped its scratch database, which finished first (report above)`, exitCodeOf(stoppedDuringCleanup));
      }
    });
}

/** Warnings ask the operator to act: on stderr even without --progress. */
function stderrWarning(line: string): void {
  process.stderr.write(`atmr-dr: warning: ${line}\n`);
}

/** The temp directories of killed runs that commandTempDir removed: where the disk space came back from. */
function reportSwept(swept: readonly string[]): void {
  for (const dir of swept) process.stderr.write(`atmr-dr: ${removedTempDirLine(dir)}\n`);
}

/** A whole number of seconds; the example in the refusal is the flag's own default. */
function positiveSeconds(flag: string, value: string, example: number): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new OperatorError(`${flag} "${value}" is not a whole number of seconds; pass e.g. ${flag} ${example} (the default)`, 2);
  // A whole number all the same: what is wrong with it is its size.
  if (n < 1) throw new OperatorError(`${flag} "${value}" must be at least 1 (seconds); pass e.g. ${flag} ${example} (the default)`, 2);
  return n;
}

/**
 * The report as `restore-test --json` prints it: DESIGN.md's contract names ok, rtoSeconds,
 * rpoSeconds and tablesRestored, so a run stopped before it measured them (a wrong password, a
 * failed backup) has them as null, not absent: a script reading `.rtoSeconds` gets a value it can test.
 */
function restoreTestJson(report: RestoreTestReport) {
  // The exit code says it already.
  const { errorExitCode: _exitCode, ...printed } = report;
  return { ...printed, rtoSeconds: report.rtoSeconds ?? null, rpoSeconds: report.rpoSeconds ?? null, tablesRestored: report.tablesRestored ?? null };
}

function restoreJson(result: RestoreResult) {
  const { manifest, ...rest } = result;
  return { ok: true, ...rest, database: manifest.database, backupStartedAt: manifest.startedAt, backupAgeSeconds: backupAgeSeconds(manifest.startedAt) };
}

/**
 * What a restore over an existing database leaves out, said at its prompt and in its result line:
 * whatever was written to the target after the backup (the bad DELETE and everything else) is not
 * in the restored copy, only in the database it replaces (`where`).
 */
function writesAfter(target: string, startedAt: string, where: string): string {
  return `writes to ${target} after ${utcSecond(Date.parse(startedAt))} are not in the restored copy: ${where}`;
}

/** `undoneAs`: a free `_undone_` name for the restored copy, set aside by the undo line's first rename. */
function restoreText(result: RestoreResult, undoneAs: string): string {
  const t = result.timings;
  const kept = result.replacedKeptAs;
  // Replaced and nothing kept is --drop-replaced: the operator must know there is no way back, or
  // that the drop's answer was lost (the warning above says how to look).
  const dropLine = result.replacedDropped ? 'what it held was dropped, --drop-replaced' : 'the drop of what it held (--drop-replaced) got no answer: it may have been dropped, see the warning above';
  const replaced = !result.replaced ? '' : kept === null ? ` (replaced; ${dropLine})` : ' (replaced)';
  return [
    `restored ${result.manifestKey} (${result.object.format}, ${takenAgo(result.manifest.startedAt)}) into ${result.targetDb}${replaced}: ${countOf(result.tablesRestored, 'table')}, ${countOf(result.rowsRestored, 'row')}, row counts match the manifest${kept === null ? '' : `; ${writesAfter(result.targetDb, result.manifest.startedAt, `they are in ${kept} (kept until you drop it)`)}`}`,
    // What the target held until now (what was written since the backup too) is the operator's way
    // back: named, then the renames that put it back (the restored copy then set aside under an
    // `_undone_` name, which the next restore names as such with its DROP, not as what the target
    // was), then its DROP, last, as it ends that way back. The renames are one transaction: run
    // alone, the first succeeds and the second fails when a session is still connected to the copy
    // kept (someone reading the writes since the backup), which left no database under the
    // target's name at all.
    ...(kept === null
      ? []
      : [
          `what ${result.targetDb} held before this restore is kept as database ${kept}`,
          `to undo this restore (no session may be connected to either database; both renames or neither): BEGIN; ALTER DATABASE ${quoteIdent(result.targetDb)} RENAME TO ${quoteIdent(undoneAs)}; ALTER DATABASE ${quoteIdent(kept)} RENAME TO ${quoteIdent(result.targetDb)}; COMMIT`,
          `once ${kept} is no longer needed (dropping it ends the way back): DROP DATABASE ${quoteIdent(kept)}`,
        ]),
    // A replaced database kept its owner; a new one has the backed-up database's when this role could give it, else this role's, which the application's may not be.
    ...(result.replaced ? [] : [`database ${result.targetDb} is new and owned by "${result.owner}": if the application connects as another role, ALTER DATABASE ${quoteIdent(result.targetDb)} OWNER TO <its role>`]),
    // A copy restored beside production is usually checked, then put in its place: the steps
    // (close, rename, reopen) are manual, and only the docs say them.
    ...(result.replaced ? [] : [`to put ${result.targetDb} in place of another database once checked: docs/restore.md, "Putting a checked copy in place"`]),
    `download ${t.downloadSeconds.toFixed(1)} s, restore ${t.restoreSeconds.toFixed(1)} s, verify ${t.verifySeconds.toFixed(1)} s, swap ${t.swapSeconds.toFixed(1)} s; RTO ${result.rtoSeconds.toFixed(1)} s`,
  ].join('\n');
}
