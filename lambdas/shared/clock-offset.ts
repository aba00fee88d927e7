/**
 * The AWS service's clock minus this machine's (ms), as the SDK keeps it on a client
 * (`config.systemClockOffset`): it sets it from the Date header of every answer, to sign with the
 * service's time, so after one call it says how far off this machine's clock is (to the second of
 * that header). Undefined for a client that does not sign with SigV4 (it has no such setting).
 */
export function systemClockOffsetMs(client: { readonly config: unknown }): number | undefined {
  return (client.config as { systemClockOffset?: number } | undefined)?.systemClockOffset;
}

/** Now by the service's clock, as of the client's last answer (this machine's before any). */
export function serviceNow(client: { readonly config: unknown }): Date {
  return new Date(Date.now() + (systemClockOffsetMs(client) ?? 0));
}
