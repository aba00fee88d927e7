import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { operatorCommand } from '../shared/constants';
import { OperatorError, oneLine } from '../shared/errors';
import { isIncidentId } from './model';
import { acknowledgeIncident, getIncident, IncidentStore, recordTimeline } from './store';

/**
 * Signed acknowledgement links: `<url>?i=<incident>&l=<level>&e=<expiry epoch s>&n=<nonce>&s=<hmac>`.
 * The HMAC-SHA256 (key from Secrets Manager) covers every other field, so nobody can forge one or
 * move it to another incident or level; the expiry bounds a leaked link; the nonce is consumed on
 * use, so a link acknowledges once. No AWS credentials are needed to use it.
 */
export interface AckLinkFields {
  readonly incidentId: string;
  readonly level: number;
  readonly expiresAt: number;
  readonly nonce: string;
}

const payload = (f: AckLinkFields): string => `v1|${f.incidentId}|${f.level}|${f.expiresAt}|${f.nonce}`;

export function signAckLink(key: string, f: AckLinkFields): string {
  return createHmac('sha256', key).update(payload(f)).digest('hex');
}

export function ackLinkUrl(baseUrl: string, key: string, fields: Omit<AckLinkFields, 'nonce'> & { nonce?: string }): string {
  const full: AckLinkFields = { ...fields, nonce: fields.nonce ?? randomBytes(12).toString('hex') };
  const url = new URL(baseUrl);
  url.searchParams.set('i', full.incidentId);
  url.searchParams.set('l', String(full.level));
  url.searchParams.set('e', String(full.expiresAt));
  url.searchParams.set('n', full.nonce);
  url.searchParams.set('s', signAckLink(key, full));
  return url.toString();
}

export type LinkCheck = { readonly ok: true; readonly fields: AckLinkFields } | { readonly ok: false; readonly status: number; readonly why: string };

/**
 * Signature first (nothing else is looked at for a forged link), then the expiry. An expired link
 * names the other ways to acknowledge: Slack's `/incident ack` only when that command is deployed.
 */
export function verifyAckLink(params: URLSearchParams, key: string, nowSeconds: number, slackIncidentCommand = false, environmentName?: string): LinkCheck {
  const incidentId = params.get('i') ?? '';
  const level = Number(params.get('l'));
  const expiresAt = Number(params.get('e'));
  const nonce = params.get('n') ?? '';
  const signature = params.get('s') ?? '';
  if (!isIncidentId(incidentId) || !Number.isInteger(level) || !Number.isInteger(expiresAt) || !/^[0-9a-f]{16,64}$/.test(nonce) || !/^[0-9a-f]{64}$/.test(signature)) {
    return { ok: false, status: 400, why: 'malformed acknowledgement link' };
  }
  const fields: AckLinkFields = { incidentId, level, expiresAt, nonce };
  const expected = Buffer.from(signAckLink(key, fields), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) return { ok: false, status: 403, why: 'invalid signature: this link was not issued by atmr-dr' };
  if (nowSeconds > expiresAt) {
    const expired = `link expired at ${new Date(expiresAt * 1000).toISOString()}`;
    const cli = operatorCommand(environmentName, `incident ack ${incidentId}`);
    const why = slackIncidentCommand ? `${expired}: use \`/incident ack ${incidentId}\` in Slack or the CLI (\`${cli}\`)` : `${expired}: acknowledge from the atmr-dr checkout with \`${cli}\``;
    return { ok: false, status: 410, why };
  }
  return { ok: true, fields };
}

export interface AckLinkDeps {
  readonly store: IncidentStore;
  readonly key: () => Promise<string>;
  readonly levelNames: readonly string[];
  /** The Slack `/incident` command is deployed: an expired link may name it. @default false */
  readonly slackIncidentCommand?: boolean;
  readonly nowSeconds?: () => number;
}

export interface AckLinkRequest {
  readonly method: string;
  /** The query string (GET) or the url-encoded form body (POST). */
  readonly params: URLSearchParams;
}

export interface AckLinkReply {
  readonly statusCode: number;
  readonly html: string;
}

const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (statusCode: number, title: string, body: string): AckLinkReply => ({
  statusCode,
  html: `<!doctype html><html lang="fr"><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`,
});

/**
 * GET shows a confirmation form and changes nothing (mail scanners and chat unfurlers open links);
 * POST, from that form, consumes the nonce and acknowledges.
 */
export async function handleAckLink(deps: AckLinkDeps, request: AckLinkRequest): Promise<AckLinkReply> {
  const nowSeconds = (deps.nowSeconds ?? (() => Math.floor(Date.now() / 1000)))();
  const check = verifyAckLink(request.params, await deps.key(), nowSeconds, deps.slackIncidentCommand, deps.store.environmentName);
  if (!check.ok) return page(check.status, 'Lien refusé', `<p>${escape(check.why)}</p>`);
  const { incidentId, level, nonce } = check.fields;
  const levelName = deps.levelNames[level - 1] ?? `level ${level}`;

  if (request.method === 'GET') {
    const hidden = ['i', 'l', 'e', 'n', 's'].map((k) => `<input type="hidden" name="${k}" value="${escape(request.params.get(k) ?? '')}">`).join('');
    return page(
      200,
      `Acquitter l'incident ${incidentId}`,
      `<form method="post">${hidden}<label>Votre nom <input name="by" maxlength="80"></label> <button type="submit">Acquitter (niveau ${level}, ${escape(levelName)})</button></form>`,
    );
  }
  if (request.method !== 'POST') return page(405, 'Méthode refusée', '<p>GET or POST only</p>');

  const consumed = await recordTimeline(deps.store, incidentId, `link#${nonce}`, {
    at: new Date(nowSeconds * 1000).toISOString(),
    kind: 'note',
    text: `Acknowledgement link of level ${level} used`,
    level,
  });
  // Used already: the nonce is recorded before the acknowledgement is written, and that write may
  // have failed (throttled past the SDK's retries, the Lambda's timeout), the person shown an error.
  // An incident still OPEN was not acknowledged by that use (acknowledged is never undone): this use
  // acknowledges, which stays once per incident (the write is conditional on OPEN).
  const retried = !consumed && (await getIncident(deps.store, incidentId))?.status === 'OPEN';
  if (!consumed && !retried) return page(409, 'Lien déjà utilisé', '<p>This acknowledgement link was already used: each link acknowledges once.</p>');
  const name = (request.params.get('by') ?? '').replace(/[^\p{L}\p{N} .'@_-]/gu, '').trim().slice(0, 80);
  try {
    await acknowledgeIncident(deps.store, incidentId, { by: name || `${levelName} (level ${level})`, via: 'link', level });
  } catch (error) {
    if (error instanceof OperatorError) return page(error.exitCode === 4 ? 404 : 409, 'Acquittement refusé', `<p>${escape(error.message)}</p>`);
    return page(500, 'Erreur', `<p>${escape(oneLine(error))}</p>`);
  }
  const earlier = retried ? "<p>Ce lien avait déjà été utilisé sans acquitter l'incident (erreur) : il vient de l'acquitter.</p>" : '';
  return page(200, `Incident ${incidentId} acquitté`, `${earlier}<p>Escalade arrêtée ; des rappels suivent tant que l'alarme reste en ALARM.</p>`);
}
