import * as net from 'node:net';

/** A local endpoint for the CLI's AWS variables (AWS_ENDPOINT_URL...), and what reached it. */
export interface LocalEndpoint {
  readonly url: string;
  /** Connections received so far. */
  readonly received: () => number;
  stop(): Promise<void>;
}

/**
 * An endpoint that accepts every connection and never answers a byte: a black-holed VPC endpoint,
 * a hung proxy. Only a timeout of the client's own ends a request to it.
 */
export async function startSilentEndpoint(): Promise<LocalEndpoint> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received: () => sockets.length,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
