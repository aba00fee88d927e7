import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

type Version = [number, number, number];
const parse = (text: string): Version => {
  const [major = 0, minor = 0, patch = 0] = text.replace(/^v/, '').split('.').map((p) => (p === 'x' || p === '*' ? 0 : Number(p)));
  return [major, minor, patch];
};
const compare = (a: Version, b: Version) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** npm's engines ranges, as far as the locked packages use them: `||` of space-separated comparators. */
function satisfies(version: string, range: string): boolean {
  const v = parse(version);
  return range.split('||').some((alternative) =>
    alternative
      .trim()
      .replace(/(>=|<=|>|<|\^|~|=)\s+/g, '$1')
      .split(/\s+/)
      .filter((c) => c !== '' && c !== '*')
      .every((comparator) => {
        const match = /^(>=|<=|>|<|\^|~|=)?\s*v?([\d.x*]+)$/.exec(comparator);
        if (!match) throw new Error(`unsupported engines comparator "${comparator}" in "${range}"`);
        const bound = parse(match[2]);
        const diff = compare(v, bound);
        switch (match[1]) {
          case '>=':
            return diff >= 0;
          case '>':
            return diff > 0;
          case '<=':
            return diff <= 0;
          case '<':
            return diff < 0;
          case '^':
            return diff >= 0 && v[0] === bound[0];
          case '~':
            return diff >= 0 && v[0] === bound[0] && v[1] === bound[1];
          default:
            return match[2].includes('x') || match[2].split('.').length < 3 ? v[0] === bound[0] : diff === 0;
        }
      }),
  );
}
const minimum = (range: string): string => /^>=\s*([\d.]+)$/.exec(range.trim())?.[1] ?? 'unparsed';

interface PackageJson {
  engines: { node: string };
  devDependencies: Record<string, string>;
}
interface LockFile {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[] }>;
}

describe('one supported Node version everywhere', () => {
  const pkg = JSON.parse(read('package.json')) as PackageJson;
  const lock = JSON.parse(read('package-lock.json')) as LockFile;
  const nvmrc = read('.nvmrc').trim();

  it('states Node 22 in engines and .nvmrc, the Lambda runtime, the runner image and the bundles', () => {
    expect(nvmrc).toBe('22');
    expect(minimum(pkg.engines.node)).toMatch(/^22\./);
    expect(read('lib/constructs/house-function.ts')).toContain('lambda.Runtime.NODEJS_22_X');
    expect(read('lambdas/backup/Dockerfile')).toMatch(/^ARG LAMBDA_NODE_IMAGE=public\.ecr\.aws\/lambda\/nodejs:22@sha256:[0-9a-f]{64}$/m);
  });

  it('runs npm scripts and npx on a Node that the engines accept (the node devDependency)', () => {
    const installed = lock.packages['node_modules/node']?.version as string;

    expect(pkg.devDependencies.node).toMatch(/^\^22\./);
    expect(satisfies(installed, pkg.engines.node)).toBe(true);
  });

  it('accepts in engines every Node that the locked dependencies require at least', () => {
    // A dependency wanting a newer Node than engines allows would warn (EBADENGINE) on a supported Node.
    const floor = minimum(pkg.engines.node);
    const tooNew = Object.entries(lock.packages)
      .filter(([name, entry]) => name !== '' && typeof entry.engines === 'object' && !Array.isArray(entry.engines) && entry.engines.node)
      .filter(([, entry]) => !satisfies(floor, (entry.engines as { node: string }).node))
      .map(([name, entry]) => `${name} wants node ${(entry.engines as { node: string }).node}`);

    expect(tooNew).toEqual([]);
  });
});
