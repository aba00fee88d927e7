// A module of its own, with no import: lib/config.ts (which the CLI loads for every command) uses it
// without loading the SNS client the subscriptions check needs.

/**
 * What an endpoint looks like in a log line: an e-mail address as is (the on-call must know whom to
 * chase), an HTTPS URL cut after its host (the path and query carry the integration key), a phone
 * number reduced to its last two digits.
 */
export function maskEndpoint(protocol: string, endpoint: string): string {
  if (protocol === 'email') return endpoint;
  if (protocol === 'https' || protocol === 'http') {
    try {
      const url = new URL(endpoint);
      const rest = `${url.pathname}${url.search}${url.hash}`;
      return `${url.protocol}//${url.host}${rest === '/' || rest === '' ? '' : '/…'}`;
    } catch {
      return `${protocol}://…`;
    }
  }
  return `…${endpoint.slice(-2)}`;
}
