import { execFileSync, spawn } from 'node:child_process';
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
// s3rver ships no types.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver') as new (options: Record<string, unknown>) => {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
};

/** A real S3 protocol server (s3rver) on 127.0.0.1 with one bucket, for integration tests. */
export interface LocalS3 {
  readonly endpoint: string;
  readonly bucket: string;
  readonly directory: string;
  /** SDK environment for child processes (the CLI) and for in-process clients. */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

/** SDK environment for child processes (the CLI) and for in-process clients, against s3rver. */
function sdkEnv(endpoint: string, bucket: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_REGION: 'eu-west-3',
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    BACKUP_BUCKET: bucket,
  };
}

export async function startLocalS3(bucket = 'atmr-dr-test-backups'): Promise<LocalS3> {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-s3-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    directory,
    env: sdkEnv(endpoint, bucket),
    async stop() {
      await server.close();
      fs.rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** A LocalS3 served by s3rver in its own node process (benches): its CPU is measurable apart. */
export interface LocalS3Process extends LocalS3 {
  readonly pid: number;
  /** user + system CPU seconds the server process has used so far (from /proc). */
  cpuSeconds(): number;
}

const S3RVER_PROCESS_SCRIPT = `
const S3rver = require('s3rver');
const [directory, bucket] = process.argv.slice(1);
new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] })
  .run()
  .then(({ port }) => process.stdout.write(JSON.stringify({ port }) + '\\n'), (e) => { console.error(e); process.exit(1); });
process.on('SIGTERM', () => process.exit(0));
`;

/**
 * Starts s3rver in a separate node process, as S3 is a separate machine in production: the bench
 * process (timing, RSS sampling) and the server do not share an event loop.
 */
export async function startLocalS3Process(bucket = 'atmr-dr-test-backups'): Promise<LocalS3Process> {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'atmr-dr-s3-'));
  const child = spawn(process.execPath, ['-e', S3RVER_PROCESS_SCRIPT, directory, bucket], {
    cwd: path.join(__dirname, '..', '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('\n')) resolve((JSON.parse(out) as { port: number }).port);
    });
    child.on('exit', (code) => reject(new Error(`s3rver process exited with code ${code} before listening`)));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return {
    endpoint,
    bucket,
    directory,
    pid: child.pid!,
    env: sdkEnv(endpoint, bucket),
    cpuSeconds() {
      const stat = fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the command name).
      return (Number(fields[11]) + Number(fields[12])) / clockTicks;
    },
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
      fs.rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** A TCP proxy in front of an S3 endpoint that holds back some answers until `release()`. */
export interface HoldingProxy {
  readonly endpoint: string;
  /** Settles once the first request matching `held` has been sent on: its answer is now held back. */
  readonly holding: Promise<void>;
  /** Sends the answers held so far, and every later one at once. */
  release(): void;
  /** The request line of every request sent through so far (`GET /bucket?list-type=2&prefix=... HTTP/1.1`), in order. */
  readonly requests: readonly string[];
  stop(): Promise<void>;
}

/**
 * Holds back the answers on every connection from the first request whose request line matches
 * `held` (e.g. the GET of a .dump): the client has sent the request and waits for the bytes, so a
 * test can change the world at that exact point (fill the local disk) before they arrive.
 */
export async function startHoldingProxy(endpoint: string, held: RegExp): Promise<HoldingProxy> {
  const upstream = new URL(endpoint);
  let released = false;
  let onHolding: () => void = () => undefined;
  const holding = new Promise<void>((resolve) => (onHolding = resolve));
  const flushes: (() => void)[] = [];
  const sockets = new Set<net.Socket>();
  const requests: string[] = [];
  const proxy = net.createServer((client) => {
    const server = net.connect(Number(upstream.port), upstream.hostname);
    sockets.add(client).add(server);
    client.on('error', () => undefined);
    server.on('error', () => undefined);
    let holding = false;
    let ended = false;
    const pending: Buffer[] = [];
    client.on('data', (chunk: Buffer) => {
      server.write(chunk);
      const line = chunk.toString('latin1').split('\r\n')[0];
      if (/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line)) requests.push(line);
      if (held.test(line)) {
        holding = true;
        onHolding();
      }
    });
    client.on('end', () => server.end());
    server.on('data', (chunk: Buffer) => (holding && !released ? pending.push(chunk) : client.write(chunk)));
    server.on('end', () => (holding && !released ? (ended = true) : client.end()));
    flushes.push(() => {
      for (const chunk of pending.splice(0)) client.write(chunk);
      if (ended) client.end();
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    holding,
    requests,
    release() {
      released = true;
      for (const flush of flushes) flush();
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}
