import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** A pass-through that computes the SHA-256 and the byte count of what flows through it. */
export class HashingStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;
  private digest: string | undefined;

  constructor(options: { readonly highWaterMark?: number } = {}) {
    super({ highWaterMark: options.highWaterMark });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.digest = this.hash.digest('hex');
    callback();
  }

  get bytes(): number {
    return this.count;
  }

  /** Hex SHA-256 of everything written; only once the stream has ended. */
  get sha256(): string {
    if (this.digest === undefined) throw new Error('the SHA-256 is known only after the stream has ended');
    return this.digest;
  }
}
