import { classifyError } from './targets';

/**
 * Credentials read from a secret (the database's, the Redis AUTH token's), kept `maxAgeMs` between
 * reads so that a run every minute does not call Secrets Manager each time, and read again at once
 * when the server refuses them. A rotation changes the password on the server and in the secret
 * within seconds: kept credentials would otherwise be refused until they aged out (15 minutes of
 * DatabaseUp 0 and no DbReadOnly, which Database-ReadOnly counts as breaching, after every rotation
 * of an RDS-managed secret, weekly).
 */
export class CachedCredentials<T> {
  private cached: { readonly value: T; readonly at: number } | undefined;

  constructor(
    private readonly read: () => Promise<T>,
    private readonly maxAgeMs: number,
  ) {}

  /**
   * Runs `connect` with the credentials. When the server refuses kept ones (reason `auth`: PostgreSQL
   * SQLSTATE class 28, Redis WRONGPASS or NOAUTH), the secret is read again, once, and `connect`
   * made once more with what it holds now; `onReread` is told why. Credentials refused just after
   * being read are not read a second time in the same run (the secret holds nothing newer). Refused
   * credentials are never kept: the next run reads the secret again, so a wrong secret costs one read a
   * run, and its fix is seen within a minute.
   */
  async use<R>(connect: (credentials: T) => Promise<R>, onReread?: (refusal: { reason: string; detail: string }) => void): Promise<R> {
    const kept = this.cached && Date.now() - this.cached.at < this.maxAgeMs ? this.cached.value : undefined;
    try {
      return await connect(kept ?? (await this.fetch()));
    } catch (error) {
      const refusal = this.dropIfRefused(error);
      if (!refusal || kept === undefined) throw error;
      onReread?.(refusal);
    }
    try {
      return await connect(await this.fetch());
    } catch (error) {
      this.dropIfRefused(error);
      throw error;
    }
  }

  private async fetch(): Promise<T> {
    const value = await this.read();
    this.cached = { value, at: Date.now() };
    return value;
  }

  /** The refusal, with the kept credentials dropped, when `error` is the server refusing them. */
  private dropIfRefused(error: unknown): { reason: string; detail: string } | undefined {
    const classified = classifyError(error);
    if (classified.reason !== 'auth') return undefined;
    this.cached = undefined;
    return classified;
  }
}
