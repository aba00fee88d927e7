import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { heldPgDump, waitFor } from '../support/held-pg-dump';

/**
 * The held pg_dump (test/support/held-pg-dump.ts) waits in shell loops; a jest killed mid-hold (a
 * timeout, Ctrl-C) must not leave them polling forever on a machine others share. Its parent here
 * is a shell that the test kills, as jest's death would end the worker that started pg_dump.
 */
describe('held pg_dump (test support)', () => {
  let dir: string;
  let server: net.Server;
  let port: number;
  const sockets: net.Socket[] = [];

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'held-pg-dump-'));
    // A server that accepts and never answers: the real pg_dump waits there, connecting, until stopped.
    server = net.createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });

  afterEach(async () => {
    // Removing the directory ends the loops of a run where this test failed.
    fs.rmSync(dir, { recursive: true, force: true });
    for (const socket of sockets.splice(0)) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** The processes still running the held pg_dump (its script and its background wait). */
  const heldProcesses = (): string[] =>
    execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.includes(`${dir}/pg_dump`));

  /** A shell that starts the held pg_dump in the background, records its pid, and waits for it. */
  function startParent(): number {
    const parent = spawn('sh', ['-c', `"${dir}/pg_dump" --no-password --host=127.0.0.1 --port=${port} --username=probe probe & echo $! > "${dir}/pid"; wait`], {
      stdio: 'ignore',
    });
    return parent.pid!;
  }

  it('a parent killed while pg_dump waits for go-<n>: no process is left once it is gone, the directory still there', async () => {
    // Arrange
    heldPgDump(dir, { holdEnd: true });
    const parent = startParent();
    await waitFor('the held start', () => fs.existsSync(path.join(dir, 'started-1')));
    expect(heldProcesses().length).toBeGreaterThan(0);

    // Act
    process.kill(parent, 'SIGKILL');

    // Assert
    await waitFor('the held processes to end', () => heldProcesses().length === 0, 5_000);
    expect(fs.existsSync(dir)).toBe(true);
    expect(sockets).toHaveLength(0);
  });

  it('a parent killed while the stopped pg_dump holds its end (holdEnd): no process is left once it is gone, the directory still there', async () => {
    // Arrange: the real pg_dump started (connected), then told to stop: the hold begins
    heldPgDump(dir, { holdEnd: true });
    const parent = startParent();
    await waitFor('the held start', () => fs.existsSync(path.join(dir, 'started-1')));
    fs.writeFileSync(path.join(dir, 'go-1'), '');
    await waitFor("the real pg_dump's connection", () => sockets.length > 0);
    process.kill(Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8')), 'SIGTERM');
    await waitFor('the hold', () => fs.existsSync(path.join(dir, 'stopping-1')));
    expect(heldProcesses().length).toBeGreaterThan(0);

    // Act
    process.kill(parent, 'SIGKILL');

    // Assert
    await waitFor('the held processes to end', () => heldProcesses().length === 0, 5_000);
    expect(fs.existsSync(dir)).toBe(true);
    expect(fs.existsSync(path.join(dir, 'end-1'))).toBe(false);
  });
});
