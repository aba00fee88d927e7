/**
 * A test-only matcher of EventBridge event patterns, for the operators this repository's rules use
 * (exact values, `prefix`, `anything-but` with a value or a list of strings or numbers, `$or`),
 * written from the Amazon EventBridge User Guide ("Amazon EventBridge event patterns", "Arrays in
 * Amazon EventBridge event patterns", "Content filtering in Amazon EventBridge event patterns") and
 * the README of aws/event-ruler, the library EventBridge matches with:
 *
 * - the event must hold every field the pattern names, nested the same way; other fields are ignored;
 * - a field's pattern is an array of values, and it matches if any of them matches;
 * - an array in the event matches if any of its elements does (the intersection is not empty), and
 *   the objects in an array are matched one by one against the pattern below the array's field
 *   ("crushed out"; a match never takes two fields from two elements, as rulesForJSONEvent);
 * - `anything-but` matches a value present and not among the ones given (a missing field does not
 *   match: the event must hold the field), `null` included;
 * - `$or` holds alternatives (objects) of which one must match, beside the other fields.
 *
 * No npm package implements this here (eb-patterns, the one found, is not on the registry). An
 * operator it does not know throws, so a rule changed to use one cannot pass a test by mistake.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type PatternObject = { [key: string]: unknown };

const isObject = (value: unknown): value is PatternObject => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Whether `event` matches `pattern`, both as EventBridge sees them (parsed JSON). */
export function matchesEventPattern(pattern: unknown, event: unknown): boolean {
  if (!isObject(pattern)) throw new Error(`an event pattern is a JSON object, got ${JSON.stringify(pattern)}`);
  return matchObject(pattern, event as Json);
}

function matchObject(pattern: PatternObject, value: Json | undefined): boolean {
  if (Array.isArray(value)) return value.some((element) => matchObject(pattern, element));
  if (!isObject(value)) return false;
  return Object.entries(pattern).every(([key, expected]) => {
    if (key === '$or') {
      if (!Array.isArray(expected) || expected.length < 2 || !expected.every(isObject)) {
        throw new Error(`$or takes two or more pattern objects, got ${JSON.stringify(expected)}`);
      }
      return expected.some((alternative) => matchObject(alternative, value));
    }
    const field = (value as { [key: string]: Json })[key];
    if (Array.isArray(expected)) return field !== undefined && leafValues(field).some((v) => expected.some((e) => matchLeaf(e, v)));
    if (isObject(expected)) return field !== undefined && matchObject(expected, field);
    throw new Error(`the pattern of "${key}" must be an array of values or an object, got ${JSON.stringify(expected)}`);
  });
}

/** The values an event field offers to a leaf pattern: itself, or the elements of its (nested) arrays. */
function leafValues(field: Json): Json[] {
  return Array.isArray(field) ? field.flatMap(leafValues) : [field];
}

function matchLeaf(expected: unknown, value: Json): boolean {
  if (expected === null || typeof expected === 'string' || typeof expected === 'number' || typeof expected === 'boolean') return value === expected;
  if (!isObject(expected) || Object.keys(expected).length !== 1) throw new Error(`unsupported pattern value ${JSON.stringify(expected)}`);
  const [[operator, operand]] = Object.entries(expected);
  switch (operator) {
    case 'prefix':
      if (typeof operand !== 'string') throw new Error(`prefix takes a string, got ${JSON.stringify(operand)}`);
      return typeof value === 'string' && value.startsWith(operand);
    case 'anything-but': {
      const excluded: unknown[] = Array.isArray(operand) ? operand : [operand];
      const allStrings = excluded.every((e) => typeof e === 'string');
      const allNumbers = excluded.every((e) => typeof e === 'number');
      if (excluded.length === 0 || !(allStrings || allNumbers)) {
        throw new Error(`this matcher takes anything-but of a string, a number or a list of only strings or only numbers, got ${JSON.stringify(operand)}`);
      }
      return (value === null || typeof value !== 'object') && !excluded.some((e) => e === value);
    }
    default:
      throw new Error(`operator "${operator}" is not implemented by this test matcher`);
  }
}
