import * as net from 'node:net';

/** A TCP proxy on 127.0.0.1 that drops some connections and forwards the others. */
export interface DroppingProxy {
  readonly port: number;
  /** Connections accepted so far (dropped or forwarded). */
  readonly connections: number;
  /** Drops the next `count` connections (a lost connection, a reset: the client gets no answer). */
  drop(count: number): void;
  stop(): Promise<void>;
}

/**
 * Forwards every connection to `upstreamPort` on 127.0.0.1, except the ones `drop` asks for: those
 * are accepted and closed at once, before a byte is exchanged (a dependency that cannot be reached
 * for one connection, while the next one gets through).
 */
export async function startDroppingProxy(upstreamPort: number): Promise<DroppingProxy> {
  let toDrop = 0;
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    connections++;
    sockets.add(client);
    client.on('error', () => undefined).on('close', () => sockets.delete(client));
    if (toDrop > 0) {
      toDrop--;
      client.destroy();
      return;
    }
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('error', () => client.destroy()).on('close', () => (sockets.delete(upstream), client.destroy()));
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const { port } = proxy.address() as net.AddressInfo;
  return {
    port,
    get connections() {
      return connections;
    },
    drop: (count) => {
      toDrop = count;
    },
    stop: async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}
