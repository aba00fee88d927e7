import * as http from 'node:http';
import type * as net from 'node:net';
import type { LocalS3 } from './s3';

/**
 * A proxy to s3rver that answers the requests `refuses` picks with S3's error `code` and `status`
 * (as S3 would: an XML error body), and passes every other request on unchanged.
 */
export async function startRefusingS3(s3: LocalS3, refuses: (method: string, url: URL) => boolean, status: number, code: string): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const target = new URL(s3.endpoint);
  const proxy = http.createServer((req, res) => {
    if (refuses(req.method ?? '', new URL(req.url ?? '/', s3.endpoint))) {
      // Answered once the body is in: an answer sent mid-body, and the connection closed behind it,
      // reaches the client as EPIPE on its write instead of as S3's error.
      // And the connection closed after it: the SDK's retry on a kept-alive socket that the proxy drops
      // meanwhile would fail with a reset (EPIPE) instead of meeting the same answer.
      req.on('end', () => res.writeHead(status, { 'content-type': 'application/xml', connection: 'close' }).end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${code}</Message></Error>`));
      req.resume();
      return;
    }
    passOn(req, res, target);
  });
  return listenOnLoopback(proxy);
}

/** Passes a request on to s3rver (`target`) unchanged, and its answer back. */
export function passOn(req: http.IncomingMessage, res: http.ServerResponse, target: URL): void {
  const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on('error', () => res.destroy());
  req.pipe(upstream);
}

/** A proxy in front of s3rver, listening on 127.0.0.1 and a free port: its endpoint, and stop. */
export async function listenOnLoopback(proxy: http.Server): Promise<{ endpoint: string; stop(): Promise<void> }> {
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    async stop() {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}
