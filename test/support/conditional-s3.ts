import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { LocalS3 } from './s3';

/**
 * S3 conditional writes in front of s3rver, which ignores `If-None-Match`: a PutObject or
 * CompleteMultipartUpload carrying `If-None-Match: *` on a key that exists gets S3's own answer,
 * 412 PreconditionFailed; every other request goes to s3rver unchanged (headers too, so its
 * signature check still holds). Existence is read from s3rver's directory, where each object of the
 * path-style bucket is a `<key>._S3rver_object` file.
 */
export interface ConditionalS3 {
  readonly endpoint: string;
  /** SDK environment of `s3`, pointed at this proxy. */
  readonly env: Record<string, string>;
  /** Conditional writes refused so far, by key. */
  readonly refused: string[];
  stop(): Promise<void>;
}

const PRECONDITION_FAILED_XML =
  '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-None-Match</Condition></Error>';

export async function startConditionalS3(s3: LocalS3): Promise<ConditionalS3> {
  const target = new URL(s3.endpoint);
  const refused: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', s3.endpoint);
    // PutObject, or CompleteMultipartUpload; S3 checks the condition there, not on UploadPart.
    const isWrite = url.searchParams.has('uploadId') ? req.method === 'POST' : req.method === 'PUT';
    const objectFile = path.join(s3.directory, decodeURIComponent(url.pathname).slice(1) + '._S3rver_object');
    if (isWrite && req.headers['if-none-match'] === '*' && fs.existsSync(objectFile)) {
      refused.push(decodeURIComponent(url.pathname).slice(`/${s3.bucket}/`.length));
      req.resume();
      res.writeHead(412, { 'content-type': 'application/xml' }).end(PRECONDITION_FAILED_XML);
      return;
    }
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    endpoint,
    env: { ...s3.env, AWS_ENDPOINT_URL_S3: endpoint },
    refused,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
