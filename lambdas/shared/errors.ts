/**
 * An error an operator can act on: its message is one line naming the problem and the fix.
 * The CLI prints it alone on stderr and exits with `exitCode`; handlers fail the invocation.
 */
export class OperatorError extends Error {
  // A string, not the literal: a subclass may name itself (a Lambda's error type, which Step Functions matches).
  override readonly name: string = 'OperatorError';
  constructor(
    message: string,
    readonly exitCode = 1,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * A resource AWS answered does not exist, or a stack not deployed: `subject` says which ("parameter X
 * does not exist"), `fix` the setting that names it. A setting (exit 2). The CLI says in which region
 * it was looked for between the two, and first of all when cdk.json puts the environment in another
 * region (bin/cli/region.ts, notFoundLine): the flag alone would look in the wrong region too.
 */
export class NotFoundError extends OperatorError {
  constructor(
    readonly subject: string,
    readonly fix: string,
    options?: ErrorOptions,
  ) {
    super(`${subject}: ${fix}`, 2, options);
  }
}

/** One line, whatever was thrown: for stderr and logs. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/\s+/g, ' ').trim();
}

/** `<error name>: <one line>`: an AWS error's name (ThrottlingException, AccessDenied...) says most of what to do. */
export function namedLine(error: unknown): string {
  return `${(error as { name?: string } | null)?.name ?? 'Error'}: ${oneLine(error)}`;
}
