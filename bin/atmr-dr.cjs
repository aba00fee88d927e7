#!/usr/bin/env node
'use strict';
/**
 * `npx atmr-dr` (package.json "bin"): runs the operator CLI, bin/atmr-dr.ts, as one esbuild bundle on
 * plain node, the same bundling as the runner image, with V8's compile cache. A command then starts in about 0.2 s, in one
 * process (through tsx: about 1.5 s and two more node processes, ~80 MiB). The bundle lives in
 * node_modules/.cache and is rebuilt whenever one of its source files is newer than it, so an edited
 * checkout never runs stale code. `ATMR_DR_CLI_BUNDLE` points elsewhere (tests).
 */
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const bundle = process.env.ATMR_DR_CLI_BUNDLE || path.join(root, 'node_modules', '.cache', 'atmr-dr', 'atmr-dr.cjs');
const inputsFile = `${bundle}.inputs.json`;

/** Options shared with bench/ (and equal to the runner image's esbuild flags). */
const BUILD_OPTIONS = {
  entryPoints: [path.join(root, 'bin', 'atmr-dr.ts')],
  bundle: true,
  platform: 'node',
  target: 'node22',
  format: 'cjs',
  minify: true,
  // pg's optional native binding is never used.
  external: ['pg-native'],
  logLevel: 'error',
};

function isStale() {
  let builtAt;
  let inputs;
  try {
    builtAt = fs.statSync(bundle).mtimeMs;
    inputs = JSON.parse(fs.readFileSync(inputsFile, 'utf8'));
  } catch {
    return true;
  }
  return inputs.some((file) => {
    try {
      return fs.statSync(path.join(root, file)).mtimeMs > builtAt;
    } catch {
      return true;
    }
  });
}

function build() {
  const { buildSync } = require('esbuild');
  fs.mkdirSync(path.dirname(bundle), { recursive: true });
  // Written beside, then renamed: two commands started at once never load a half-written bundle.
  const temporary = `${bundle}.${process.pid}.tmp`;
  const result = buildSync({ ...BUILD_OPTIONS, absWorkingDir: root, outfile: temporary, metafile: true });
  fs.writeFileSync(`${inputsFile}.${process.pid}.tmp`, JSON.stringify(Object.keys(result.metafile.inputs)));
  fs.renameSync(`${inputsFile}.${process.pid}.tmp`, inputsFile);
  fs.renameSync(temporary, bundle);
}

if (require.main === module) {
  try {
    if (isStale()) build();
  } catch (error) {
    process.stderr.write(`atmr-dr: cannot build the CLI bundle (${String(error && error.message).split('\n')[0]}); run npm ci, or run npx tsx bin/atmr-dr.ts\n`);
    process.exit(1);
  }
  // V8's code cache for the bundle (Node >= 22.1): compiling 1.5 MB of JavaScript is most of a start.
  const nodeModule = require('node:module');
  if (typeof nodeModule.enableCompileCache === 'function') nodeModule.enableCompileCache(path.join(path.dirname(bundle), 'v8-cache'));
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
}

module.exports = { BUILD_OPTIONS, bundle, build, isStale };
