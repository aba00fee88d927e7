#!/usr/bin/env node
'use strict';
/**
 * `npx atmr-dr` (package.json "bin"): runs the operator CLI from its bundle, dist/atmr-dr.cjs, which
 * `npm ci` builds once (the `prepare` script runs `npm run build`: esbuild, bin/atmr-dr.ts and
 * everything it imports in one file). One plain node process, no TypeScript compiler at run time.
 * After editing the sources, `npm run build` refreshes the bundle (or run `npx tsx bin/atmr-dr.ts`).
 */
// On a Node older than 22 the CLI still runs (the bundle needs nothing newer), but the AWS SDK
// prints a 9-line NodeVersionSupportWarning about its *future* releases, which this build, with its
// SDK pinned by the lockfile, does not use: nine lines that bury the command's one-line answer on
// stderr. The SDK's own switch turns it off. `npx atmr-dr` runs the project's own Node 22 anyway.
if (Number(process.versions.node.split('.')[0]) < 22) process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const fs = require('node:fs');
const path = require('node:path');

const bundle = path.join(__dirname, '..', 'dist', 'atmr-dr.cjs');

if (!fs.existsSync(bundle)) {
  process.stderr.write(`atmr-dr: the CLI is not built (${path.relative(process.cwd(), bundle) || bundle} is missing): run npm ci, or npm run build\n`);
  process.exit(1);
}
// V8's code cache (Node >= 22.1): compiling the 1.7 MB bundle is most of a start; cached, it is skipped.
const nodeModule = require('node:module');
if (typeof nodeModule.enableCompileCache === 'function') nodeModule.enableCompileCache(path.join(__dirname, '..', 'node_modules', '.cache', 'atmr-dr-v8'));
// A failed command exits as soon as its line is out (exitWhenFailed): a request it abandoned, to an S3
// that stopped answering, would otherwise keep the process alive for minutes.
// A bundle built before exitWhenFailed existed (a `git pull` without `npm run build`) still sets the
// exit code: a failed command must never end with 0.
// Loading the bundle is most of the first second: without a listener, a Ctrl-C or SIGTERM then would
// end node at once with no line at all (the shell shows 130). With one, node holds the signal until
// its event loop runs again, after the (synchronous) load: main() has installed the bundle's own
// handler of the start (bin/cli/interrupt.ts) by then, before its first await, and this one is
// removed just after, so that there is no moment without one. Nothing is done yet: its line says so.
const whileLoading = (signal) => {
  // After a hangup the terminal is gone: a failed write must not end the process otherwise.
  process.stderr.on('error', () => undefined);
  process.stderr.write(`atmr-dr: interrupted (received ${signal}) while starting, before the command did anything: nothing done\n`);
  process.exit(128 + require('node:os').constants.signals[signal]);
};
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];
for (const signal of STOP_SIGNALS) process.on(signal, whileLoading);
const cli = require(bundle);
// endWith (a bundle of now): every command, a success too, ends once its output is written (see bin/atmr-dr.ts).
const exit = typeof cli.endWith === 'function' ? cli.endWith : typeof cli.exitWhenFailed === 'function' ? cli.exitWhenFailed : (code) => (process.exitCode = code);
const ran = cli.main(process.argv);
for (const signal of STOP_SIGNALS) process.off(signal, whileLoading);
ran.then(exit, (error) => {
  process.stderr.write(`atmr-dr: ${String(error && error.message)}\n`);
  exit(1);
});
