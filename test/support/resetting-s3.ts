import * as http from 'node:http';
import { listenOnLoopback } from './refusing-s3';
import type { LocalS3 } from './s3';

/**
 * A proxy to s3rver that cuts the connection of the GETs `cuts` picks (given the key and the Range
 * header) after the headers and `afterBytes` bytes of the body, as a network reset mid-body does,
 * and passes every other request on unchanged. The bytes are sent before the connection closes, so
 * the client always has the headers (an SDK retries a request only until then).
 */
export async function startResettingS3(s3: LocalS3, cuts: (key: string, range: string | undefined) => boolean, afterBytes: number): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const target = new URL(s3.endpoint);
  const proxy = http.createServer((req, res) => {
    const key = decodeURIComponent(new URL(req.url ?? '/', s3.endpoint).pathname).replace(`/${s3.bucket}/`, '');
    const cut = req.method === 'GET' && cuts(key, req.headers.range);
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      if (!cut) return void answer.pipe(res);
      let sent = 0;
      answer.on('data', (chunk: Buffer) => {
        if (sent >= afterBytes) return;
        const part = chunk.subarray(0, afterBytes - sent);
        sent += part.length;
        // Closed once the bytes are written: the client reads them, then a connection that ended
        // short of its Content-Length, which Node's client reports as a reset (ECONNRESET).
        res.write(part, () => {
          if (sent >= afterBytes) {
            answer.destroy();
            req.socket.destroy();
          }
        });
      });
      // A body shorter than afterBytes goes whole.
      answer.on('end', () => {
        if (sent < afterBytes) res.end();
      });
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  return listenOnLoopback(proxy);
}
