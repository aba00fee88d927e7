#!/usr/bin/env node
'use strict';
/**
 * `npx atmr-dr` (package.json "bin"): runs the operator CLI from its bundle, dist/atmr-dr.cjs, which
 * `npm ci` builds once (the `prepare` script runs `npm run build`: esbuild, bin/atmr-dr.ts and
 * everything it imports in one file). One plain node process, no TypeScript compiler at run time.
 * After editing the sources, `npm run build` refreshes the bundle (or run `npx tsx bin/atmr-dr.ts`).
 */
// Before anything else: on an older Node the AWS SDK prints a 9-line NodeVersionSupportWarning
// before the CLI's own output, and the bundle targets Node 22. `npx atmr-dr` runs the project's own
// Node 22 (the node@22 devDependency's node_modules/.bin comes before the system's directories on
// npx's PATH); `node bin/atmr-dr.cjs` runs whatever node the shell finds, often an older system one.
const nodeMajor = Number(process.versions.node.split('.')[0]);
if (nodeMajor < 22) {
  process.stderr.write(`atmr-dr: Node ${process.version} is too old: use Node 22 or newer (npx atmr-dr runs the project's own Node 22)\n`);
  process.exit(2);
}
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
require(bundle)
  .main(process.argv)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (error) => {
      process.stderr.write(`atmr-dr: ${String(error && error.message)}\n`);
      process.exitCode = 1;
    },
  );
