import * as net from 'node:net';

/** A TCP proxy in front of PostgreSQL behind which the server goes away at one exact moment. */
export interface GoingAwayProxy {
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Forwards every connection to PostgreSQL on `upstream` until the answer to the first statement
 * (simple protocol) whose text matches `statement` comes back. That answer is held while `goAway`
 * runs (the test stops the server); then every other connection is closed and the proxy stops
 * listening (a new connection is refused, as the stopped server refuses it), and only after a
 * moment, for the client to see its other connections closed, is the answer delivered. The client
 * goes on from that answer to a server that is gone: e.g. a restore's last row count answered,
 * then the swap's connection refused. An answer the server sends in one piece (a short result).
 */
export async function startGoingAwayProxy(upstream: { host: string; port: number }, statement: RegExp, goAway: () => void): Promise<GoingAwayProxy> {
  let matched = false;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const server = net.connect(upstream.port, upstream.host);
    sockets.add(client).add(server);
    client.on('error', () => undefined);
    server.on('error', () => undefined);
    let holding = false;
    client.on('data', (chunk: Buffer) => {
      // A simple-protocol Query message: 'Q', its length, the statement's text.
      if (!matched && chunk[0] === 0x51 && statement.test(chunk.toString('latin1'))) matched = holding = true;
      server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (!holding) {
        client.write(chunk);
        return;
      }
      goAway();
      proxy.close();
      for (const socket of sockets) if (socket !== client) socket.destroy();
      setTimeout(() => client.end(chunk), 200);
    });
    client.on('close', () => server.destroy());
    server.on('close', () => {
      if (!holding) client.destroy();
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    // Closed already when the server went away: close() then calls back at once (ERR_SERVER_NOT_RUNNING).
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        proxy.close(() => resolve());
      }),
  };
}
