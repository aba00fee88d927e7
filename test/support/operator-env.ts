import * as os from 'node:os';

/**
 * The environment of an operator running the real CLI in a child process: the PATH and HOME it
 * needs, a region and throwaway credentials (every AWS endpoint a test uses is on 127.0.0.1), and no
 * instance metadata lookup; nothing else of the test runner's environment leaks in.
 */
export function operatorEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME ?? os.tmpdir(),
    USER: 'alice',
    AWS_REGION: 'eu-west-3',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret',
    AWS_EC2_METADATA_DISABLED: 'true',
    ...extra,
  };
}
