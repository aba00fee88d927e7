import * as os from 'node:os';

/**
 * The environment of an operator running the real CLI in a child process: the PATH and HOME it
 * needs, a region and throwaway credentials (every AWS endpoint a test uses is on 127.0.0.1; STS on
 * a closed port, so the audit trail's identity falls back to USER), and no instance metadata
 * lookup; nothing else of the test runner's environment leaks in.
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
    // STS too (the caller's identity for the audit trail): a closed port, never the real AWS; not
    // over a test's own AWS_ENDPOINT_URL, whose recording server must see every call, STS's too.
    ...(extra.AWS_ENDPOINT_URL === undefined && { AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:9' }),
    ...extra,
  };
}
