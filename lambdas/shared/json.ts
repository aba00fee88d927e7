/** `JSON.parse`, or `undefined` for text that is not JSON (the caller's schema then says what is wrong). */
export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
