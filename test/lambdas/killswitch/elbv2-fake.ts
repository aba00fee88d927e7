import {
  Action,
  CreateRuleCommand,
  DeleteRuleCommand,
  DescribeListenersCommand,
  DescribeRulesCommand,
  DescribeTagsCommand,
  ElasticLoadBalancingV2Client,
  ModifyRuleCommand,
  Rule,
  Tag,
} from '@aws-sdk/client-elastic-load-balancing-v2';
import type { AwsClientStub } from 'aws-sdk-client-mock';

export const LISTENER_ARN = 'arn:aws:elasticloadbalancing:eu-west-3:111111111111:listener/app/atmr-api/0123456789abcdef/fedcba9876543210';
export const TARGET_GROUP_ARN = 'arn:aws:elasticloadbalancing:eu-west-3:111111111111:targetgroup/atmr-api/0011223344556677';
/** The killswitch's own Lambda target group (the maintenance responder). */
export const MAINTENANCE_TARGET_GROUP_ARN = 'arn:aws:elasticloadbalancing:eu-west-3:111111111111:targetgroup/atmr-ks-maintenance/8899aabbccddeeff';
const RULE_PREFIX = LISTENER_ARN.replace(':listener/', ':listener-rule/');

/** How ALB hands actions back: with an Order, and a forward expanded into a ForwardConfig. */
function asReturnedByAlb(actions: Action[]): Action[] {
  return actions.map((action, index) => ({
    ...action,
    Order: index + 1,
    ...(action.Type === 'forward' && {
      ForwardConfig: { TargetGroups: [{ TargetGroupArn: action.TargetGroupArn, Weight: 1 }], TargetGroupStickinessConfig: { Enabled: false } },
    }),
  }));
}

/** An in-memory ALB listener behind the mocked ELBv2 client (rules, tags, default action). */
export function fakeListener(elbv2: AwsClientStub<ElasticLoadBalancingV2Client>, options: { defaultActions?: Action[] } = {}) {
  let next = 1;
  const rules: Rule[] = [{ RuleArn: `${RULE_PREFIX}/default`, Priority: 'default', IsDefault: true, Conditions: [], Actions: [] }];
  const tags = new Map<string, Tag[]>();
  const defaultActions = asReturnedByAlb(options.defaultActions ?? [{ Type: 'forward', TargetGroupArn: TARGET_GROUP_ARN }]);

  elbv2.on(DescribeListenersCommand).callsFake(() => ({ Listeners: [{ ListenerArn: LISTENER_ARN, DefaultActions: defaultActions }] }));
  elbv2.on(DescribeRulesCommand).callsFake(() => ({ Rules: structuredClone(rules) }));
  elbv2.on(DescribeTagsCommand).callsFake((input: { ResourceArns: string[] }) => ({
    TagDescriptions: input.ResourceArns.map((arn) => ({ ResourceArn: arn, Tags: tags.get(arn) ?? [] })),
  }));
  elbv2.on(CreateRuleCommand).callsFake((input: { Priority: number; Conditions: Rule['Conditions']; Actions: Action[]; Tags?: Tag[] }) => {
    if (rules.some((r) => r.Priority === String(input.Priority))) throw Object.assign(new Error('PriorityInUse'), { name: 'PriorityInUseException' });
    const rule: Rule = { RuleArn: `${RULE_PREFIX}/${next++}`, Priority: String(input.Priority), IsDefault: false, Conditions: input.Conditions, Actions: asReturnedByAlb(input.Actions) };
    rules.push(rule);
    tags.set(rule.RuleArn as string, input.Tags ?? []);
    return { Rules: [rule] };
  });
  elbv2.on(DeleteRuleCommand).callsFake((input: { RuleArn: string }) => {
    rules.splice(rules.findIndex((r) => r.RuleArn === input.RuleArn), 1);
    tags.delete(input.RuleArn);
    return {};
  });
  elbv2.on(ModifyRuleCommand).callsFake((input: { RuleArn: string; Conditions: Rule['Conditions']; Actions: Action[] }) => {
    const rule = rules.find((r) => r.RuleArn === input.RuleArn) as Rule;
    rule.Conditions = input.Conditions;
    rule.Actions = asReturnedByAlb(input.Actions);
    return { Rules: [rule] };
  });

  return {
    rules: () => rules.filter((r) => !r.IsDefault),
    tagsOf: (arn: string) => tags.get(arn) ?? [],
    /** A rule someone else created (the API's own routing), untagged. */
    addForeignRule(priority: number) {
      const rule: Rule = { RuleArn: `${RULE_PREFIX}/${next++}`, Priority: String(priority), IsDefault: false, Conditions: [{ Field: 'path-pattern', Values: ['/api/*'] }], Actions: defaultActions };
      rules.push(rule);
      return rule;
    },
  };
}
