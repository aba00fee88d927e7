import { buildSync } from 'esbuild';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { HOUSE_FUNCTION_NAMING } from '../../lib/constructs/house-function';

// Error lines print an error's name, which ioredis' ReplyError (as pg's DatabaseError) takes from
// its class: bundled with the house functions' esbuild options, the name must survive minification.
describe('house function bundling', () => {
  const nameInBundle = (naming: { minify: boolean; keepNames: boolean }) => {
    const { outputFiles } = buildSync({
      stdin: { contents: "const { ReplyError } = require('ioredis'); module.exports = new ReplyError('WRONGPASS invalid').name;", resolveDir: path.join(__dirname, '../..') },
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: 'cjs',
      write: false,
      ...naming,
    });
    const module = { exports: {} as unknown };
    vm.runInNewContext(outputFiles[0].text, { module, exports: module.exports, require, process, Buffer, setTimeout, clearTimeout, setImmediate, __dirname, __filename: 'bundle.js' });
    return module.exports;
  };

  it("keeps class names, so a Redis refusal reads ReplyError, not the minifier's name", () => {
    expect(nameInBundle(HOUSE_FUNCTION_NAMING)).toBe('ReplyError');
  });
});
