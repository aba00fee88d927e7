import * as net from 'node:net';

/** A TCP proxy in front of PostgreSQL that loses the answer to one statement. */
export interface CuttingProxy {
  readonly port: number;
  /** The text of the statement whose answer was lost, once it was (undefined before). */
  readonly cut: string | undefined;
  stop(): Promise<void>;
}

/**
 * Forwards every byte of every connection to PostgreSQL on `upstream`, except on the connection
 * that sends the first statement whose text matches `statement`: that statement reaches the server,
 * which carries it out, and the connection is cut as its answer comes back, the answer dropped (a
 * network blip or a failover at the worst moment: the client never hears what the server did).
 * With `silentAfterCut`, every connection opened after the cut logs in, but its
 * statements never reach the server (a server that accepts connections and no longer answers: a
 * failover half done, a network that drops the packets). With `deliver: false`, the connection is
 * cut before the statement reaches the server instead (the client cannot tell that from the other
 * case). With `silence`, the connection is not cut: the statement (simple or extended protocol) and
 * everything after it on that connection never reach the server, and the connection stays open (a
 * server that accepted the connection and stopped answering it); other connections go through.
 * With `pass`, the first `pass` statements that match go through before the one silenced (a
 * statement every connection sends, the second time: a session that connects again). With
 * `refuseStartupParameters`, a startup packet that sets any of them is answered as a default
 * PgBouncer answers it (FATAL "unsupported startup parameter: <name>") and closed.
 */
export async function startCuttingProxy(
  upstream: { host: string; port: number },
  statement: RegExp,
  options: { silentAfterCut?: boolean; deliver?: boolean; silence?: boolean; pass?: number; refuseStartupParameters?: readonly string[] } = {},
): Promise<CuttingProxy> {
  let cut: string | undefined;
  let toPass = options.pass ?? 0;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    sockets.add(client);
    client.on('error', () => undefined);
    const server = net.connect(upstream.port, upstream.host);
    sockets.add(server);
    server.on('error', () => undefined);
    let cutting = false;
    // The startup and login go through; from the first statement (a simple Query 'Q', or an
    // extended protocol's Parse 'P'), nothing more does.
    const silent = cut !== undefined && options.silentAfterCut;
    let silenced = false;
    client.on('data', (chunk: Buffer) => {
      if (silenced || (silent && (chunk[0] === 0x51 || chunk[0] === 0x50))) {
        silenced = true;
        return;
      }
      // A simple-protocol Query message: 'Q', its length, the statement's text.
      const text = chunk.toString('latin1');
      // A startup packet (its length, then protocol 3.0) names its parameters as name\0value\0 pairs.
      const refused = chunk.length > 8 && chunk.readInt32BE(4) === 196608 ? options.refuseStartupParameters?.find((name) => text.slice(8).split('\0').includes(name)) : undefined;
      if (refused) {
        const fields = `SFATAL\0C08P01\0Munsupported startup parameter: ${refused}\0\0`;
        const answer = Buffer.alloc(5 + Buffer.byteLength(fields, 'latin1'));
        answer.write('E', 0, 'latin1');
        answer.writeInt32BE(answer.length - 1, 1);
        answer.write(fields, 5, 'latin1');
        client.end(answer);
        server.destroy();
        return;
      }
      if (options.silence && cut === undefined && (text.startsWith('Q') || text.startsWith('P')) && statement.test(text) && toPass-- <= 0) {
        // An extended-protocol Parse message: 'P', its length, the statement's name, its text.
        cut = text.slice(5).split('\0')[text.startsWith('P') ? 1 : 0];
        silenced = true;
        return;
      }
      if (cut === undefined && text.startsWith('Q') && statement.test(text)) {
        cut = text.slice(5).replace(/\0$/, '');
        cutting = true;
        if (options.deliver === false) {
          client.destroy();
          server.destroy();
          return;
        }
      }
      server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (!cutting) {
        client.write(chunk);
        return;
      }
      client.destroy();
      server.destroy();
    });
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    port: (proxy.address() as net.AddressInfo).port,
    get cut() {
      return cut;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        proxy.close(() => resolve());
      }),
  };
}
