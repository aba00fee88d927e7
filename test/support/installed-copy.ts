import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

/** cdk.json's environments, as a test edits them. */
export type CdkEnvironments = Record<string, Record<string, unknown>>;

/** An operator's install: its root (cdk.json, package.json), the bundle and the launcher that runs it. */
export interface InstalledCopy {
  readonly root: string;
  readonly bundle: string;
  /** `bin/atmr-dr.cjs`, what `npx atmr-dr` runs (package.json "bin"): the bundle behind its signal handling and exit. */
  readonly launcher: string;
}

/**
 * An operator's install of the CLI with its own cdk.json: package.json, the bundle
 * (`dist/atmr-dr.cjs`, built by `npm ci`'s prepare or `npm run build`), its launcher
 * (`bin/atmr-dr.cjs`) and this repository's cdk.json with its environments edited by `edit`. The
 * caller removes `root` when done.
 */
export function installedCopy(prefix: string, edit: (environments: CdkEnvironments) => void): InstalledCopy {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const cdkJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'cdk.json'), 'utf8')) as { context: { environments: CdkEnvironments } };
  edit(cdkJson.context.environments);
  fs.writeFileSync(path.join(root, 'cdk.json'), JSON.stringify(cdkJson));
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'atmr-dr' }));
  fs.mkdirSync(path.join(root, 'dist'));
  fs.copyFileSync(path.join(ROOT, 'dist', 'atmr-dr.cjs'), path.join(root, 'dist', 'atmr-dr.cjs'));
  fs.mkdirSync(path.join(root, 'bin'));
  fs.copyFileSync(path.join(ROOT, 'bin', 'atmr-dr.cjs'), path.join(root, 'bin', 'atmr-dr.cjs'));
  return { root, bundle: path.join(root, 'dist', 'atmr-dr.cjs'), launcher: path.join(root, 'bin', 'atmr-dr.cjs') };
}
