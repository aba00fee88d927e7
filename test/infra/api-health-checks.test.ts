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
