import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { LocalS3 } from './s3';

/**
 * S3 conditional writes in front of s3rver, which ignores `If-None-Match` and `If-Match`: a
 * PutObject or CompleteMultipartUpload carrying `If-None-Match: *` on a key that exists, or
 * `If-Match: <etag>` on a key whose ETag differs, gets S3's own answer, 412 PreconditionFailed (an
 * `If-Match` on a key that does not exist: 404 NoSuchKey, as S3); every other request goes to
 * s3rver unchanged (headers too, so its signature check still holds). Existence and ETag are read
 * from s3rver's directory, where each object of the path-style bucket is a `<key>._S3rver_object`
 * file and its ETag the quoted MD5 in `<key>._S3rver_object.md5`.
 *
 * `beforeWrite(key, headers)`, when given, runs before each such write is looked at: a test makes
 * another run's write land there, between what the client read and what it writes, or reads the
 * headers a CLI in another process sent. `loseAnswer(key)`, when given, picks writes whose answer
 * is lost: s3rver stores the write and answers, and the proxy closes the client's connection
 * instead of passing the answer on (a reset after the write landed; the SDK retries). `served` counts
 * the body bytes of each key's GetObject answers that went to the client.
 *
 * Writes of one key are taken one at a time, from the check to s3rver's answer, as S3 decides
 * them: without that, two writes arriving together both find the key free and both land, the
 * second overwriting the first, where S3 keeps the first and refuses the second.
 */
export interface ConditionalS3 {
  readonly endpoint: string;
  /** SDK environment of `s3`, pointed at this proxy. */
  readonly env: Record<string, string>;
  /** Conditional writes refused so far, by key. */
  readonly refused: string[];
  /** Bytes of object bodies passed on to the client so far (GetObject answers), by key. */
  readonly served: Map<string, number>;
  stop(): Promise<void>;
}

const errorXml = (code: string, message: string): string => `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;

export async function startConditionalS3(
  s3: LocalS3,
  beforeWrite?: (key: string, headers: http.IncomingHttpHeaders) => Promise<void>,
  loseAnswer?: (key: string) => boolean,
): Promise<ConditionalS3> {
  const target = new URL(s3.endpoint);
  const refused: string[] = [];
  const served = new Map<string, number>();
  /** Per key, the end of the last write queued on it. */
  const writing = new Map<string, Promise<void>>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', s3.endpoint);
    // PutObject, or CompleteMultipartUpload; S3 checks the condition there, not on UploadPart.
    const isWrite = url.searchParams.has('uploadId') ? req.method === 'POST' : req.method === 'PUT';
    const key = decodeURIComponent(url.pathname).slice(`/${s3.bucket}/`.length);
    const objectFile = path.join(s3.directory, decodeURIComponent(url.pathname).slice(1) + '._S3rver_object');
    // This write's turn comes when the one queued before it on the key has been answered.
    let turn = Promise.resolve();
    if (isWrite) {
      let answered = (): void => undefined;
      const mine = new Promise<void>((resolve) => (answered = resolve));
      turn = writing.get(key) ?? turn;
      const last = turn.then(() => mine);
      writing.set(key, last);
      res.on('close', () => {
        answered();
        if (writing.get(key) === last) writing.delete(key);
      });
    }
    const refuse = (status: number, code: string, message: string): void => {
      refused.push(key);
      req.resume();
      res.writeHead(status, { 'content-type': 'application/xml' }).end(errorXml(code, message));
    };
    const pass = (): void => {
      const upstream = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          if (isWrite && loseAnswer?.(key)) {
            answer.resume();
            answer.on('end', () => req.socket.destroy());
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          // Counted as the client takes them: the pipe stops pulling when the client stops reading,
          // and the answer is dropped when the client closes the connection (its body unread).
          if (req.method === 'GET') answer.on('data', (chunk: Buffer) => served.set(key, (served.get(key) ?? 0) + chunk.length));
          res.on('close', () => answer.destroy());
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    void (async () => {
      await turn;
      if (isWrite && beforeWrite) await beforeWrite(key, req.headers);
      const ifMatch = req.headers['if-match'];
      if (isWrite && req.headers['if-none-match'] === '*' && fs.existsSync(objectFile)) {
        return refuse(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      }
      if (isWrite && ifMatch !== undefined) {
        if (!fs.existsSync(objectFile)) return refuse(404, 'NoSuchKey', 'The specified key does not exist.');
        if (JSON.stringify(fs.readFileSync(`${objectFile}.md5`, 'utf8').trim()) !== ifMatch) {
          return refuse(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
        }
      }
      pass();
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    endpoint,
    env: { ...s3.env, AWS_ENDPOINT_URL_S3: endpoint },
    refused,
    served,
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
