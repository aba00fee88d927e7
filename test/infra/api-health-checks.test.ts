import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import { ApiServiceHealthChecks } from '../../lib/constructs/api-health-checks';

/** A team's API service defined in CDK with the runbook's probes applied. */
function apiServiceTemplate(): Template {
  const stack = new Stack(new App(), 'Api', { env: { account: '111111111111', region: 'eu-west-3' } });
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 0 });
  const cluster = new ecs.Cluster(stack, 'Cluster', { vpc });
  const checks = new ApiServiceHealthChecks(stack, 'HealthChecks');
  const taskDefinition = new ecs.FargateTaskDefinition(stack, 'Task');
  taskDefinition.addContainer('api', {
    image: ecs.ContainerImage.fromRegistry('atmr/api:1.0.0'),
    portMappings: [{ containerPort: 5000 }],
    healthCheck: checks.containerHealthCheck,
  });
  const service = new ecs.FargateService(stack, 'Service', { cluster, taskDefinition, ...checks.serviceProps });
  const alb = new elbv2.ApplicationLoadBalancer(stack, 'Alb', { vpc });
  const listener = alb.addListener('Http', { port: 80 });
  const targetGroup = listener.addTargets('Api', { port: 5000, protocol: elbv2.ApplicationProtocol.HTTP, targets: [service] });
  checks.configureTargetGroup(targetGroup);
  return Template.fromStack(stack);
}

describe('ApiServiceHealthChecks: the runbook probes on ECS', () => {
  const template = apiServiceTemplate();

  // ECS replaces a task that fails its load balancer health check: on /ready (PostgreSQL and Redis)
  // a database or Redis outage would have every API task replaced in a loop.
  it('turns the liveness probe into the ALB health check, which decides restarts on ECS: /health every 10 s, 5 s timeout, unhealthy after 3, never /ready', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      HealthCheckPath: '/health',
      HealthCheckIntervalSeconds: 10,
      HealthCheckTimeoutSeconds: 5,
      UnhealthyThresholdCount: 3,
      HealthyThresholdCount: 2,
      Matcher: { HttpCode: '200' },
    });
    const paths = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup')).map((r) => (r as { Properties: { HealthCheckPath?: string } }).Properties.HealthCheckPath);
    expect(paths).toEqual(['/health']);
  });

  it('turns the liveness probe into the container health check: /health every 10 s, 5 s timeout, 3 retries, 30 s start', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          HealthCheck: {
            Command: ['CMD-SHELL', Match.stringLikeRegexp("http://localhost:5000/health', timeout=4")],
            Interval: 10,
            Timeout: 5,
            Retries: 3,
            StartPeriod: 30,
          },
        }),
      ],
    });
  });

  it('turns on the deployment circuit breaker with rollback and a 30 s grace period', () => {
    template.hasResourceProperties('AWS::ECS::Service', {
      DeploymentConfiguration: Match.objectLike({ DeploymentCircuitBreaker: { Enable: true, Rollback: true } }),
      HealthCheckGracePeriodSeconds: 30,
    });
  });
});

/**
 * The README's "Without CDK" commands are what a team whose service is not in CDK copies: they must
 * set what the construct sets. A copy that checked /ready (PostgreSQL and Redis) would have ECS
 * replace every API task during a database blip, and Backout-ApiNoHealthyHosts roll back a good release.
 */
describe("the README's health checks without CDK", () => {
  const template = apiServiceTemplate();
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');

  it('sets the target group as the construct does: /health every 10 s, 5 s timeout, unhealthy after 3, healthy after 2', () => {
    // Arrange: the command of the bash block (a line of its own), its continuation lines joined.
    const command = /^aws elbv2 modify-target-group (?:[^\n]*\\\n)*[^\n]*/m.exec(readme)?.[0].replace(/\\\n/g, ' ');
    expect(command).toBeDefined();
    const flag = (name: string) => new RegExp(`--${name} (\\S+)`).exec(command as string)?.[1];
    const [targetGroup] = Object.values(template.findResources('AWS::ElasticLoadBalancingV2::TargetGroup')) as { Properties: Record<string, unknown> }[];

    // Assert
    expect({
      path: flag('health-check-path'),
      interval: Number(flag('health-check-interval-seconds')),
      timeout: Number(flag('health-check-timeout-seconds')),
      unhealthy: Number(flag('unhealthy-threshold-count')),
      healthy: Number(flag('healthy-threshold-count')),
      matcher: flag('matcher'),
    }).toEqual({
      path: targetGroup.Properties.HealthCheckPath,
      interval: targetGroup.Properties.HealthCheckIntervalSeconds,
      timeout: targetGroup.Properties.HealthCheckTimeoutSeconds,
      unhealthy: targetGroup.Properties.UnhealthyThresholdCount,
      healthy: targetGroup.Properties.HealthyThresholdCount,
      matcher: `HttpCode=${(targetGroup.Properties.Matcher as { HttpCode: string }).HttpCode}`,
    });
  });

  it("sets the container health check as the construct does", () => {
    const block = /"healthCheck": (\{[\s\S]*?\n\})/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const readmeCheck = JSON.parse(block as string) as Record<string, unknown>;
    const [taskDefinition] = Object.values(template.findResources('AWS::ECS::TaskDefinition')) as { Properties: { ContainerDefinitions: { HealthCheck: Record<string, unknown> }[] } }[];
    const check = taskDefinition.Properties.ContainerDefinitions[0].HealthCheck;
    expect(readmeCheck).toEqual({ command: check.Command, interval: check.Interval, timeout: check.Timeout, retries: check.Retries, startPeriod: check.StartPeriod });
  });
});
