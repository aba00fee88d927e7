import { build } from 'esbuild';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

describe('the CLI bundle', () => {
  it('leaves out the CDK, whose modules made up most of the bundle and of every start', async () => {
    // The same entry and settings as `npm run build`, without writing the file.
    const result = await build({
      entryPoints: [path.join(ROOT, 'bin', 'atmr-dr.ts')],
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: 'cjs',
      external: ['pg-native'],
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs);

    expect(inputs.some((input) => input.includes('bin/cli/restore.ts'))).toBe(true);
    expect(inputs.filter((input) => /node_modules\/(aws-cdk-lib|constructs|@aws-cdk)\//.test(input))).toEqual([]);
  });
});
