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
 * - `exists` matches on the presence (true) or the absence (false) of a leaf value: a field missing,
 *   an empty array or an object (not a leaf) is absent, and so is every field below a missing one
 *   ("Exists matching only works on the leaf nodes"). Absence in an array of two or more objects
 *   (whether one element without the field is enough) is not documented: it throws;
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
  if (Array.isArray(value)) {
    if (value.length > 1 && asksAbsence(pattern)) throw new Error(`"exists": false below an array of ${value.length} elements is not implemented by this test matcher`);
    return value.length === 0 ? matchObject(pattern, undefined) : value.some((element) => matchObject(pattern, element));
  }
  // A missing field, or a leaf where the pattern goes deeper, holds no field below it.
  const fields: { [key: string]: Json } = isObject(value) ? (value as { [key: string]: Json }) : {};
  return Object.entries(pattern).every(([key, expected]) => {
    if (key === '$or') {
      if (!Array.isArray(expected) || expected.length < 2 || !expected.every(isObject)) {
        throw new Error(`$or takes two or more pattern objects, got ${JSON.stringify(expected)}`);
      }
      return expected.some((alternative) => matchObject(alternative, value));
    }
    const field = fields[key];
    if (Array.isArray(expected)) {
      const leaves = field === undefined ? [] : leafValues(field).filter((v) => !isObject(v));
      return expected.some((e) => (isExists(e) ? (leaves.length > 0) === e.exists : leaves.some((v) => matchLeaf(e, v))));
    }
    if (isObject(expected)) return matchObject(expected, field);
    throw new Error(`the pattern of "${key}" must be an array of values or an object, got ${JSON.stringify(expected)}`);
  });
}

/** `{ "exists": true | false }`; any other `exists` operand throws. */
function isExists(expected: unknown): expected is { exists: boolean } {
  if (!isObject(expected) || !('exists' in expected)) return false;
  if (Object.keys(expected).length !== 1 || typeof expected.exists !== 'boolean') throw new Error(`exists takes true or false, got ${JSON.stringify(expected)}`);
  return true;
}

/** Whether the pattern asks, anywhere below it, for a field to be absent. */
function asksAbsence(pattern: unknown): boolean {
  if (Array.isArray(pattern)) return pattern.some((e) => (isExists(e) && !e.exists) || asksAbsence(e));
  return isObject(pattern) && Object.values(pattern).some(asksAbsence);
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
