import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Client } from 'pg';

/**
 * A pg_dump held at its start, and the application's TRUNCATE caught between a backup run's locks
 * and pg_dump's (lambdas/backup/lock-wait.ts: LockCycle), for the tests of the backup core and of
 * the scheduled runner alike.
 */
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 50 ms until it holds; throws naming `what` after `ms`. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await sleep(50);
  }
}

/** The session's wait_event_type ('Lock' while it queues behind another session's lock). */
export async function waitOf(watcher: Client, pid: number): Promise<string | null> {
  return (await watcher.query<{ wait: string | null }>('SELECT wait_event_type AS wait FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.wait ?? null;
}

/**
 * A pg_dump that, on each start, creates `<dir>/started-<n>` and waits for `<dir>/go-<n>` before
 * it runs the real one: the test decides what other sessions do between the run's locks and
 * pg_dump's. With the real pg_restore beside it (the plain format). Returns `dir`, a pgBinDir.
 * `holdEnd`: once told to stop (SIGTERM, the run ending the attempt), it stops the real pg_dump,
 * creates `<dir>/stopping-<n>` and ends only once `<dir>/end-<n>` exists, so that the test acts
 * while the attempt is still ending: the run waits for pg_dump's 'close' (its exit and its output
 * closed). The wait is a background subshell holding that output open, so the hold also outlasts
 * the SIGKILL the run sends KILL_GRACE_MS (5 s) after the SIGTERM, however slow the machine. Both
 * waits also end once `dir` is removed (a test that failed before writing `go-<n>` or `end-<n>`) or
 * the process that started pg_dump is gone (jest killed mid-hold): never left behind.
 */
export function heldPgDump(dir: string, { holdEnd = false } = {}): string {
  // Each wait also ends once `dir` is removed or the process that started pg_dump (the run, the
  // jest worker) is gone: a jest killed mid-hold leaves no loop behind. $PPID stays that process's
  // id in the background subshell too (sh does not reset it there).
  const alive = `[ -d "${dir}" ] && kill -0 $PPID 2>/dev/null`;
  const real = (tool: string): string => execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
  const run = holdEnd
    ? `trap 'kill $c 2>/dev/null; touch "${dir}/stopping-$n"; (while ${alive} && [ ! -e "${dir}/end-$n" ]; do sleep 0.05; done) & wait $!; exit 143' TERM\n` +
      `"${real('pg_dump')}" "$@" & c=$!\nwait $c\n`
    : `exec "${real('pg_dump')}" "$@"\n`;
  fs.writeFileSync(
    path.join(dir, 'pg_dump'),
    `#!/bin/sh\n[ "$1" = --version ] && exec "${real('pg_dump')}" --version\nn=1; while [ -e "${dir}/started-$n" ]; do n=$((n + 1)); done\n` +
      `touch "${dir}/started-$n"\nwhile ${alive} && [ ! -e "${dir}/go-$n" ]; do sleep 0.05; done\n[ -e "${dir}/go-$n" ] || exit 143\n${run}`,
    { mode: 0o755 },
  );
  fs.symlinkSync(real('pg_restore'), path.join(dir, 'pg_restore'));
  return dir;
}

/**
 * Once the run's attempt `n` has started pg_dump (heldPgDump: its snapshot holds every table), the
 * application (`app`) truncates t, which queues behind the snapshot's lock; then pg_dump goes on.
 * How long the TRUNCATE waited, once it has run.
 */
export async function truncateBeforePgDump(dir: string, n: number, app: Client, watcher: Client): Promise<{ truncated: Promise<number> }> {
  await waitFor(`pg_dump's start ${n}`, () => fs.existsSync(path.join(dir, `started-${n}`)));
  const appPid = (await app.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  const started = Date.now();
  const truncated = app.query('TRUNCATE t').then(() => Date.now() - started);
  truncated.catch(() => undefined);
  await waitFor('the TRUNCATE to queue', async () => (await waitOf(watcher, appPid)) === 'Lock');
  fs.writeFileSync(path.join(dir, `go-${n}`), '');
  return { truncated };
}

/** How long `truncated` took, or Infinity once it has waited 15 s. */
export function withinBound(truncated: Promise<number>): Promise<number> {
  return Promise.race([truncated, new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), 15_000).unref())]);
}
