import { byOptionHelp, resolveCliActor } from '../../bin/cli/killswitch';

/**
 * The name recorded when AWS cannot say who the operator is, against what the --by help says of it:
 * the help's order is read off the help itself, so a help naming another order than the code's fails.
 */
describe('the actor without STS', () => {
  const saved = { ...process.env };
  let stderr: jest.SpyInstance;

  beforeAll(() => {
    // STS on a closed port (refused at once), never the real AWS.
    Object.assign(process.env, { AWS_REGION: 'eu-west-3', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:9' });
    stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  });

  afterAll(() => {
    process.env = saved;
    stderr.mockRestore();
  });

  it('is the first one set of the variables the --by help names, in its order, else its last word', async () => {
    const order = /when AWS cannot say who you are, as NAME, else (.*)$/.exec(byOptionHelp('who'))?.[1].split(', else ') ?? [];
    const variables = order.filter((word) => word.startsWith('$')).map((word) => word.slice(1));
    const fallback = order.at(-1);

    expect(variables).toEqual(['ATMR_OPERATOR', 'USER', 'LOGNAME']);
    expect(fallback).toBe('unknown-operator');
    for (const [i, variable] of variables.entries()) {
      // This variable and every one after it set: this one wins.
      const env = Object.fromEntries(variables.slice(i).map((name) => [name, `name-from-${name}`]));
      expect(await resolveCliActor(undefined, env)).toBe(`name-from-${variable}`);
    }
    expect(await resolveCliActor(undefined, {})).toBe(fallback);
    expect(await resolveCliActor('Marie', { ATMR_OPERATOR: 'Jean' })).toBe('Marie');
  });
});
