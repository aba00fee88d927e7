import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DescribeServicesCommand, ECSClient, UpdateServiceCommand } from '@aws-sdk/client-ecs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { RDSClient } from '@aws-sdk/client-rds';
import { GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { Client, ClientConfig } from 'pg';
import { KillswitchReading, readKillswitch, writeKillswitch } from '../killswitch/core';
import { OperatorError, oneLine } from '../shared/errors';
import { announce, publishRecoverySeconds, secondsBetween } from './announce';
import { CutoverStepReport, RECOVERY_EVENTS, RecoveryRecord } from './contract';
import { markReplacedInstance } from './rds';
import { StoreDeps, updateRecovery } from './store';

/**
 * The guided cutover, in the runbook's order: maintenance on, the API's database endpoint switched
 * to the recovered instance, the ECS services redeployed (their tasks read the endpoint at start),
 * `/ready` 200 and a write accepted by the new database, maintenance off. The old instance is then
 * renamed and tagged, never deleted. A failure half-way undoes what was done (endpoint back, tasks
 * redeployed on it, killswitch back to its previous value) and says what changed and what was undone.
 */
export type EndpointSwitch = { readonly kind: 'secretHost'; readonly secretArn: string } | { readonly kind: 'ssmParameter'; readonly parameterName: string };

export interface CutoverSettings {
  readonly killswitchParameter: string;
  readonly endpoint: EndpointSwitch;
  readonly ecs?: { readonly clusterArn: string; readonly serviceNames: readonly string[] };
  readonly readinessUrl?: string;
  readonly sourceInstance: string;
  readonly rtoObjectiveSeconds: number;
  /** How long the services may take to be stable again. @default 900 s */
  readonly serviceStableTimeoutSeconds?: number;
  /** How long /ready may take to answer 200. @default 300 s */
  readonly readinessTimeoutSeconds?: number;
  /** Poll interval of the waits. @default 10 s */
  readonly pollSeconds?: number;
}

export interface CutoverDeps {
  readonly ssm: SSMClient;
  readonly secretsManager: SecretsManagerClient;
  readonly ecs: ECSClient;
  readonly rds: RDSClient;
  readonly events: EventBridgeClient;
  readonly cloudwatch: CloudWatchClient;
  readonly store: StoreDeps;
  /** Connection to the recovered instance for the write check (credentials from the database secret). */
  readonly connectRecovered: (host: string, port: number) => Promise<ClientConfig>;
  readonly fetch?: typeof fetch;
  readonly now?: () => Date;
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface CutoverResult {
  readonly ok: boolean;
  readonly recoveryId: string;
  readonly steps: readonly CutoverStepReport[];
  readonly totalSeconds: number;
  readonly rtoObjectiveSeconds: number;
  readonly recoverySeconds?: number;
  readonly replacedInstance?: string;
  readonly error?: string;
}

/** A cutover can start only from these: the copy was verified (a failed cutover was fully undone). */
export const CUTOVER_FROM = ['verified', 'cutover-failed'] as const;

export async function cutover(deps: CutoverDeps, recoveryId: string, settings: CutoverSettings, actor: string): Promise<CutoverResult> {
  const now = () => (deps.now ?? (() => new Date()))();
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const record: RecoveryRecord = await updateRecovery(deps.store, recoveryId, { status: 'cutting-over' }, CUTOVER_FROM).catch(async (error: unknown) => {
    if (error instanceof OperatorError) {
      throw new OperatorError(`recover cutover: ${error.message.replace(/^recover: /, '')}: only a verified recovery can be cut over (see "atmr-dr recover status ${recoveryId}")`, 3);
    }
    throw error;
  });
  const host = record.newInstanceHost;
  const port = record.newInstancePort ?? 5432;
  if (!host) throw new OperatorError(`recover cutover: recovery ${recoveryId} has no endpoint recorded: it was never available`, 3);
  const started = now();
  await announce(deps.events, RECOVERY_EVENTS.cutoverStarted, {
    summary: `Recovery ${recoveryId}: cutover to ${record.newInstance} started by ${actor}`,
    at: started.toISOString(),
    recoveryId,
    actor,
  });

  const steps: CutoverStepReport[] = [];
  const run = async <T>(step: string, action: () => Promise<{ value: T; detail: string }>): Promise<T> => {
    const at = now();
    try {
      const { value, detail } = await action();
      steps.push({ step, startedAt: at.toISOString(), seconds: secondsBetween(at, now()), outcome: 'done', detail });
      return value;
    } catch (error) {
      steps.push({ step, startedAt: at.toISOString(), seconds: secondsBetween(at, now()), outcome: 'failed', detail: oneLine(error) });
      throw error;
    }
  };
  const undo = async (step: string, action: () => Promise<string>) => {
    const at = now();
    try {
      steps.push({ step, startedAt: at.toISOString(), seconds: 0, outcome: 'undone', detail: await action() });
    } catch (error) {
      steps.push({ step, startedAt: at.toISOString(), seconds: secondsBetween(at, now()), outcome: 'undo-failed', detail: `${oneLine(error)}: do it by hand` });
    }
    steps[steps.length - 1] = { ...steps[steps.length - 1], seconds: secondsBetween(at, now()) };
  };

  let killswitchBefore: KillswitchReading | undefined;
  let endpointBefore: string | undefined;
  let redeployed = false;
  const reason = `recovery ${recoveryId}: cutover to ${record.newInstance}`;
  try {
    killswitchBefore = await run('killswitch maintenance', async () => {
      const before = await readKillswitch(deps.ssm, settings.killswitchParameter);
      await writeKillswitch({ ssm: deps.ssm, now }, { parameterName: settings.killswitchParameter, mode: 'maintenance', reason, actor, expiresAt: null });
      return { value: before, detail: `was ${before.value?.mode ?? 'malformed'}` };
    });
    endpointBefore = await run('switch database endpoint', async () => {
      const before = await switchEndpoint(deps, settings.endpoint, { host, port });
      return { value: before, detail: `${describeEndpoint(settings.endpoint)}: ${before} -> ${host}:${port}` };
    });
    if (settings.ecs) {
      const { clusterArn, serviceNames } = settings.ecs;
      await run('redeploy ECS services', async () => {
        redeployed = true;
        await forceRedeploy(deps.ecs, clusterArn, serviceNames);
        await waitStable(deps.ecs, clusterArn, serviceNames, settings.serviceStableTimeoutSeconds ?? 900, (settings.pollSeconds ?? 10) * 1000, sleep, now);
        return { value: undefined, detail: `${serviceNames.join(', ')} stable on the new endpoint` };
      });
    }
    if (settings.readinessUrl) {
      const url = settings.readinessUrl;
      await run('check /ready', async () => {
        await waitReady(deps.fetch ?? fetch, url, settings.readinessTimeoutSeconds ?? 300, (settings.pollSeconds ?? 10) * 1000, sleep, now);
        return { value: undefined, detail: `${url} answered 200` };
      });
    }
    await run('check writes accepted', async () => {
      await writeCheck(await deps.connectRecovered(host, port));
      return { value: undefined, detail: `${host} accepted a write (rolled back)` };
    });
    await run('killswitch back', async () => {
      await restoreKillswitch(deps, settings.killswitchParameter, killswitchBefore!, actor, `recovery ${recoveryId}: cutover done`);
      return { value: undefined, detail: `back to ${killswitchBefore!.value?.mode ?? 'normal'}` };
    });
  } catch (error) {
    // Undo in the order that makes the API whole again: endpoint, then tasks re-read it, then traffic.
    if (endpointBefore !== undefined) {
      const previous = endpointBefore;
      await undo('switch database endpoint', async () => {
        await restoreEndpoint(deps, settings.endpoint, previous);
        return `${describeEndpoint(settings.endpoint)} set back to ${previous}`;
      });
    }
    if (redeployed && settings.ecs) {
      const { clusterArn, serviceNames } = settings.ecs;
      await undo('redeploy ECS services', async () => {
        await forceRedeploy(deps.ecs, clusterArn, serviceNames);
        return `${serviceNames.join(', ')} redeployed on the previous endpoint`;
      });
    }
    if (killswitchBefore) {
      const before = killswitchBefore;
      await undo('killswitch maintenance', async () => {
        await restoreKillswitch(deps, settings.killswitchParameter, before, actor, `recovery ${recoveryId}: cutover failed, restored`);
        return `back to ${before.value?.mode ?? 'normal'}`;
      });
    }
    const message = oneLine(error);
    const totalSeconds = secondsBetween(started, now());
    await updateRecovery(deps.store, recoveryId, { status: 'cutover-failed', cutover: steps, error: message }).catch(() => undefined);
    await announce(deps.events, RECOVERY_EVENTS.cutoverFailed, {
      summary: `Recovery ${recoveryId}: cutover FAILED (${message}); ${steps.filter((s) => s.outcome === 'undone').length} change(s) undone, ${steps.filter((s) => s.outcome === 'undo-failed').length} undo(s) failed`,
      at: now().toISOString(),
      recoveryId,
      steps,
    }).catch(() => undefined);
    return { ok: false, recoveryId, steps, totalSeconds, rtoObjectiveSeconds: settings.rtoObjectiveSeconds, error: message };
  }

  // Production now runs on the copy: the old instance is only renamed and tagged, whatever happens next.
  let replacedInstance: string | undefined;
  try {
    replacedInstance = await run('rename and tag old instance', async () => {
      const renamed = await markReplacedInstance(deps.rds, settings.sourceInstance, recoveryId, record.newInstance, now());
      return { value: renamed, detail: `${settings.sourceInstance} -> ${renamed} (kept, tagged atmr-dr:replaced-by=${record.newInstance})` };
    });
  } catch {
    // recorded in steps; the cutover itself succeeded
  }
  const finished = now();
  const totalSeconds = secondsBetween(started, finished);
  const recoverySeconds = secondsBetween(record.requestedAt, finished);
  await updateRecovery(deps.store, recoveryId, { status: 'cut-over', cutover: steps, recoverySeconds, ...(replacedInstance && { replacedInstance }) });
  await publishRecoverySeconds(deps.cloudwatch, 'cutover', recoverySeconds, finished);
  await announce(deps.events, RECOVERY_EVENTS.cutOver, {
    summary: `Recovery ${recoveryId}: production runs on ${record.newInstance} (as of ${record.toTime}); cutover ${totalSeconds} s, recovery ${recoverySeconds} s (RTO objective ${settings.rtoObjectiveSeconds} s)`,
    at: finished.toISOString(),
    recoveryId,
    newInstance: record.newInstance,
    replacedInstance,
    totalSeconds,
    recoverySeconds,
  });
  return { ok: true, recoveryId, steps, totalSeconds, recoverySeconds, rtoObjectiveSeconds: settings.rtoObjectiveSeconds, ...(replacedInstance && { replacedInstance }) };
}

function describeEndpoint(endpoint: EndpointSwitch): string {
  return endpoint.kind === 'secretHost' ? `secret ${endpoint.secretArn} host` : `parameter ${endpoint.parameterName}`;
}

/** Points the API at `target`; returns the previous value (`host:port`) to set back. */
async function switchEndpoint(deps: CutoverDeps, endpoint: EndpointSwitch, target: { host: string; port: number }): Promise<string> {
  if (endpoint.kind === 'ssmParameter') {
    const before = (await deps.ssm.send(new GetParameterCommand({ Name: endpoint.parameterName }))).Parameter?.Value ?? '';
    await deps.ssm.send(new PutParameterCommand({ Name: endpoint.parameterName, Value: `${target.host}:${target.port}`, Type: 'String', Overwrite: true }));
    return before;
  }
  const secret = await readSecretJson(deps.secretsManager, endpoint.secretArn);
  const before = `${String(secret.host ?? '')}:${String(secret.port ?? '')}`;
  await deps.secretsManager.send(new PutSecretValueCommand({ SecretId: endpoint.secretArn, SecretString: JSON.stringify({ ...secret, host: target.host, port: target.port }) }));
  return before;
}

async function restoreEndpoint(deps: CutoverDeps, endpoint: EndpointSwitch, previous: string): Promise<void> {
  if (endpoint.kind === 'ssmParameter') {
    await deps.ssm.send(new PutParameterCommand({ Name: endpoint.parameterName, Value: previous, Type: 'String', Overwrite: true }));
    return;
  }
  // Only host and port are set back (re-read first): a password rotated meanwhile is kept.
  const secret = await readSecretJson(deps.secretsManager, endpoint.secretArn);
  const separator = previous.lastIndexOf(':');
  const host = previous.slice(0, separator);
  const port = previous.slice(separator + 1);
  await deps.secretsManager.send(
    new PutSecretValueCommand({ SecretId: endpoint.secretArn, SecretString: JSON.stringify({ ...secret, host, ...(port && { port: Number(port) }) }) }),
  );
}

async function readSecretJson(client: SecretsManagerClient, secretArn: string): Promise<Record<string, unknown>> {
  const raw = (await client.send(new GetSecretValueCommand({ SecretId: secretArn }))).SecretString;
  try {
    const parsed = JSON.parse(raw ?? '') as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new OperatorError(`recover cutover: secret ${secretArn} is not a JSON object: the API's endpoint cannot be switched there; use recovery.endpoint.kind ssmParameter`);
}

async function restoreKillswitch(deps: CutoverDeps, parameterName: string, before: KillswitchReading, actor: string, reason: string): Promise<void> {
  const value = before.value;
  await writeKillswitch(
    { ssm: deps.ssm, now: deps.now },
    value && value.mode !== 'normal'
      ? { parameterName, mode: value.mode, reason: value.reason, actor: value.actor, expiresAt: value.expiresAt ? new Date(value.expiresAt) : null }
      : { parameterName, mode: 'normal', reason, actor, expiresAt: null },
  );
}

async function forceRedeploy(ecs: ECSClient, cluster: string, services: readonly string[]): Promise<void> {
  for (const service of services) await ecs.send(new UpdateServiceCommand({ cluster, service, forceNewDeployment: true }));
}

async function waitStable(
  ecs: ECSClient,
  cluster: string,
  services: readonly string[],
  timeoutSeconds: number,
  pollMs: number,
  sleep: (ms: number) => Promise<void>,
  now: () => Date,
): Promise<void> {
  const deadline = now().getTime() + timeoutSeconds * 1000;
  for (;;) {
    const described = (await ecs.send(new DescribeServicesCommand({ cluster, services: [...services] }))).services ?? [];
    const pending: string[] = [];
    for (const name of services) {
      const service = described.find((s) => s.serviceName === name);
      const primary = service?.deployments?.find((d) => d.status === 'PRIMARY');
      if (primary?.rolloutState === 'FAILED') throw new Error(`ECS service ${name}: deployment failed (${primary.rolloutStateReason ?? 'no reason given'})`);
      const done = primary && (primary.rolloutState === 'COMPLETED' || (service!.deployments!.length === 1 && primary.runningCount === primary.desiredCount));
      if (!done) pending.push(name);
    }
    if (pending.length === 0) return;
    if (now().getTime() >= deadline) throw new Error(`ECS services not stable after ${timeoutSeconds} s: ${pending.join(', ')}`);
    await sleep(pollMs);
  }
}

async function waitReady(
  fetchFn: typeof fetch,
  url: string,
  timeoutSeconds: number,
  pollMs: number,
  sleep: (ms: number) => Promise<void>,
  now: () => Date,
): Promise<void> {
  const deadline = now().getTime() + timeoutSeconds * 1000;
  let last = '';
  for (;;) {
    try {
      const response = await fetchFn(url, { signal: AbortSignal.timeout(10_000) });
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = oneLine(error);
    }
    if (now().getTime() >= deadline) throw new Error(`${url} did not answer 200 within ${timeoutSeconds} s (last: ${last})`);
    await sleep(pollMs);
  }
}

/** A real write on the new primary, rolled back: proves it is not read-only nor a replica in recovery. */
export async function writeCheck(connection: ClientConfig): Promise<void> {
  const client = new Client({ ...connection, statement_timeout: 15_000 });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('CREATE TABLE atmr_dr_write_check (id int)');
    await client.query('INSERT INTO atmr_dr_write_check VALUES (1)');
  } catch (error) {
    throw new Error(`the recovered database refused a write: ${oneLine(error)}`);
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  }
}
