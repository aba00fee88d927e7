import { synthesizeApp } from '../support/app';

/** The dashboard body is a JSON string built from tokens: resolve it to text to inspect it. */
function dashboardBody(): string {
  const { ops, opsTemplate } = synthesizeApp();
  const dashboards = opsTemplate.findResources('AWS::CloudWatch::Dashboard');
  const [dashboard] = Object.values(dashboards) as { Properties: { DashboardName: string; DashboardBody: unknown } }[];
  expect(dashboard.Properties.DashboardName).toBe('atmr-dr-example');
  return JSON.stringify(ops.resolve(dashboard.Properties.DashboardBody));
}

describe('on-call dashboard', () => {
  const body = dashboardBody();

  it('shows the killswitch mode with the degraded and maintenance levels', () => {
    expect(body).toContain('KillswitchMode');
    expect(body).toMatch(/\\"label\\":\\"maintenance\\",\\"value\\":2|\\"value\\":2,\\"label\\":\\"maintenance\\"/);
  });

  it('shows hourly backup successes, PITR, and restore-test RTO/RPO against their objectives', () => {
    expect(body).toContain('BackupSuccess');
    expect(body).toContain('PitrEnabled');
    expect(body).toContain('RtoSeconds');
    expect(body).toContain('RpoSeconds');
    expect(body).toMatch(/RTO objective\\",\\"value\\":1800|\\"value\\":1800,\\"label\\":\\"RTO objective/);
  });

  it('starts with the status of every backup and restore-test alarm', () => {
    const { opsTemplate } = synthesizeApp();
    const alarmIds = Object.keys(opsTemplate.findResources('AWS::CloudWatch::Alarm')).filter((id) => /^(Backups|RestoreTest)/.test(id));

    expect(body.indexOf('Runbook alarms')).toBeLessThan(body.indexOf('KillswitchMode'));
    expect(alarmIds.length).toBeGreaterThanOrEqual(8);
    for (const id of alarmIds) expect(body).toContain(`"Fn::GetAtt":["${id}","Arn"]`);
  });

  it('shows the status of every alarm of the ops stack, the backout, escalation, recovery and any composite ones included', () => {
    const { opsTemplate } = synthesizeApp();
    const alarmIds = Object.keys({ ...opsTemplate.findResources('AWS::CloudWatch::Alarm'), ...opsTemplate.findResources('AWS::CloudWatch::CompositeAlarm') });

    expect(alarmIds.filter((id) => /^(Rollback|Escalation|Recovery)/.test(id)).length).toBeGreaterThanOrEqual(8);
    const missing = alarmIds.filter((id) => !body.includes(`"Fn::GetAtt":["${id}","Arn"]`));
    expect(missing).toEqual([]);
  });
});
