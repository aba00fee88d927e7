import { App, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, ServerlessChecks } from 'cdk-nag';

/** Runs the AwsSolutions and Serverless packs on every synth; any unacknowledged finding fails it. */
export function applyNagPacks(app: App): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }), new ServerlessChecks(app, { verbose: true }));
}

/** A value as cdk-nag prints it in findings: Ref as <Name>, GetAtt as <Id.Attr>, imports by name. */
export function nagRender(stack: Stack, value: string): string {
  const render = (part: unknown): string => {
    if (typeof part === 'string') return part;
    const p = part as Record<string, unknown>;
    if (p.Ref !== undefined) return `<${String(p.Ref)}>`;
    if (Array.isArray(p['Fn::GetAtt'])) return `<${(p['Fn::GetAtt'] as string[]).join('.')}>`;
    if (p['Fn::ImportValue'] !== undefined) return String(p['Fn::ImportValue']);
    if (Array.isArray(p['Fn::Join'])) {
      const [separator, parts] = p['Fn::Join'] as [string, unknown[]];
      return parts.map(render).join(separator);
    }
    return JSON.stringify(part);
  };
  return render(stack.resolve(value));
}
