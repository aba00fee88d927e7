/** The time now, from the deps' clock when they carry one (tests, a drill's fixed instant), else the machine's. */
export const nowOf = (deps: { readonly now?: () => Date }): Date => (deps.now ?? (() => new Date()))();
