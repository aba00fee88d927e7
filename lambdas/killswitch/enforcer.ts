import {
  Action,
  CreateRuleCommand,
  DeleteRuleCommand,
  DescribeRulesCommand,
  DescribeTagsCommand,
  ElasticLoadBalancingV2Client,
  ModifyRuleCommand,
  Rule,
  RuleCondition,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { SSMClient } from '@aws-sdk/client-ssm';
import { OperatorError } from '../shared/errors';
import { readKillswitch } from './core';
import { effectiveMode, KillswitchMode, MAINTENANCE_EXEMPT_PATHS } from './value';

/** Tag marking the listener rules this enforcer owns; a rule without it is never touched. */
export const RULE_TAG_KEY = 'atmr-dr:killswitch';
export type ManagedRoleName = 'exempt' | 'maintenance';

export interface EnforceSettings {
  readonly parameterName: string;
  readonly listenerArn: string;
  /** Priority P: P serves /health and /ready as usual, P+1 answers 503 to everything else. */
  readonly priority: number;
  /** Lambda target group of the maintenance responder: the 503 with Retry-After comes from there. */
  readonly maintenanceTargetGroupArn: string;
  /**
   * Target group of the API: the exempt rule forwards /health and /ready there, whatever the
   * listener's default action happens to be (a redirect or a fixed response would fail the checks).
   */
  readonly apiTargetGroupArn: string;
}

export interface EnforceDeps {
  readonly ssm: SSMClient;
  readonly elbv2: ElasticLoadBalancingV2Client;
  /** Clock (ms since epoch) that decides whether the value has expired. @default Date.now */
  readonly now?: () => number;
}

export interface EnforceResult {
  readonly mode: KillswitchMode;
  /** What changed on the listener: empty when it already matched (idempotent). */
  readonly changes: readonly string[];
}

/**
 * Everything but the exempt paths goes to the maintenance responder (a Lambda target): it answers
 * the 503 with the runbook body and a Retry-After, which an ALB fixed response cannot carry. No
 * fixed-response fallback: an ALB rule has no "if the target fails" branch, and a rule created by an
 * earlier version (fixed response) is upgraded by the drift repair below.
 */
export function maintenanceAction(targetGroupArn: string): Action {
  return { Type: 'forward', TargetGroupArn: targetGroupArn };
}
const EVERYTHING: RuleCondition[] = [{ Field: 'path-pattern', PathPatternConfig: { Values: ['*'] } }];
const EXEMPT: RuleCondition[] = [{ Field: 'path-pattern', PathPatternConfig: { Values: [...MAINTENANCE_EXEMPT_PATHS] } }];

/**
 * Makes the listener match the killswitch: in maintenance, two tagged rules (exempt paths go to the
 * API target group, everything else goes to the maintenance responder); otherwise none.
 * Re-running with the same mode changes nothing. A malformed value, and a value whose `expiresAt`
 * has passed (the expiry schedule is late or failed), count as normal, like every reader.
 */
export async function enforceKillswitch(deps: EnforceDeps, settings: EnforceSettings): Promise<EnforceResult> {
  const reading = await readKillswitch(deps.ssm, settings.parameterName);
  const now = (deps.now ?? Date.now)();
  const mode: KillswitchMode = reading.value ? effectiveMode(reading.value, now) : 'normal';
  const { managed, byPriority } = await listenerRules(deps.elbv2, settings.listenerArn);
  const changes: string[] = [];

  if (mode !== 'maintenance') {
    for (const [role, rule] of managed) {
      await deps.elbv2.send(new DeleteRuleCommand({ RuleArn: rule.RuleArn }));
      changes.push(`deleted ${role} rule ${rule.RuleArn}`);
    }
    return { mode, changes };
  }

  const wanted: { role: ManagedRoleName; priority: number; conditions: RuleCondition[]; actions: Action[] }[] = [
    { role: 'exempt', priority: settings.priority, conditions: EXEMPT, actions: [{ Type: 'forward', TargetGroupArn: settings.apiTargetGroupArn }] },
    { role: 'maintenance', priority: settings.priority + 1, conditions: EVERYTHING, actions: [maintenanceAction(settings.maintenanceTargetGroupArn)] },
  ];
  for (const want of wanted) {
    const existing = managed.get(want.role);
    if (existing) {
      if (!sameRule(existing, want.conditions, want.actions)) {
        await deps.elbv2.send(new ModifyRuleCommand({ RuleArn: existing.RuleArn, Conditions: want.conditions, Actions: want.actions }));
        changes.push(`modified ${want.role} rule ${existing.RuleArn}`);
      }
      continue;
    }
    const occupant = byPriority.get(String(want.priority));
    if (occupant) {
      throw new OperatorError(
        `killswitch: priority ${want.priority} on ${settings.listenerArn} is used by rule ${occupant.RuleArn}, not managed by atmr-dr: set killswitch.listenerRulePriority so that P and P+1 are free and lower than the API rules`,
      );
    }
    const created = await deps.elbv2.send(
      new CreateRuleCommand({
        ListenerArn: settings.listenerArn,
        Priority: want.priority,
        Conditions: want.conditions,
        Actions: want.actions,
        Tags: [{ Key: RULE_TAG_KEY, Value: want.role }],
      }),
    );
    changes.push(`created ${want.role} rule ${created.Rules?.[0]?.RuleArn ?? ''} at priority ${want.priority}`);
  }
  return { mode, changes };
}

async function listenerRules(
  elbv2: ElasticLoadBalancingV2Client,
  listenerArn: string,
): Promise<{ managed: Map<ManagedRoleName, Rule>; byPriority: Map<string, Rule> }> {
  const rules: Rule[] = [];
  let marker: string | undefined;
  do {
    const page = await elbv2.send(new DescribeRulesCommand({ ListenerArn: listenerArn, Marker: marker }));
    rules.push(...(page.Rules ?? []));
    marker = page.NextMarker;
  } while (marker);
  const candidates = rules.filter((r) => !r.IsDefault && r.RuleArn);
  const managed = new Map<ManagedRoleName, Rule>();
  for (let i = 0; i < candidates.length; i += 20) {
    const batch = candidates.slice(i, i + 20);
    const tags = await elbv2.send(new DescribeTagsCommand({ ResourceArns: batch.map((r) => r.RuleArn as string) }));
    for (const description of tags.TagDescriptions ?? []) {
      const role = description.Tags?.find((t) => t.Key === RULE_TAG_KEY)?.Value;
      const rule = batch.find((r) => r.RuleArn === description.ResourceArn);
      if (rule && (role === 'exempt' || role === 'maintenance')) managed.set(role, rule);
    }
  }
  return { managed, byPriority: new Map(candidates.map((r) => [r.Priority as string, r])) };
}

function sameRule(rule: Rule, conditions: RuleCondition[], actions: Action[]): boolean {
  const haveConditions = (rule.Conditions ?? []).map((c) => ({ Field: c.Field, Values: c.PathPatternConfig?.Values ?? c.Values ?? [] }));
  const wantConditions = conditions.map((c) => ({ Field: c.Field, Values: c.PathPatternConfig?.Values ?? [] }));
  return canonical(haveConditions) === canonical(wantConditions) && canonical((rule.Actions ?? []).map(essence)) === canonical(actions.map(essence));
}

/** What an action does, without the defaults ALB adds when it returns it (Order, stickiness off...). */
function essence(action: Action): unknown {
  const targetGroups = [action.TargetGroupArn, ...(action.ForwardConfig?.TargetGroups ?? []).map((g) => g.TargetGroupArn)]
    .filter((arn): arn is string => Boolean(arn));
  return {
    type: action.Type,
    fixed: action.FixedResponseConfig && [action.FixedResponseConfig.StatusCode, action.FixedResponseConfig.ContentType, action.FixedResponseConfig.MessageBody],
    targetGroups: [...new Set(targetGroups)].sort(),
    redirect: action.RedirectConfig,
  };
}

/** JSON with sorted keys and without undefined, to compare SDK shapes structurally. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}
