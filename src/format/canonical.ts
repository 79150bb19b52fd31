/**
 * Canonical JSON: object keys sorted by UTF-16 code unit order, no insignificant whitespace,
 * numbers must be safe integers, no undefined. Used for everything mlic signs.
 */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function canonicalJson(value: unknown): string {
  return enc(value, '$');
}

function enc(v: unknown, path: string): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(v)) throw new TypeError(`canonical json: ${path} is not a safe integer`);
      return String(v);
    case 'string':
      return JSON.stringify(v);
    case 'object': {
      if (Array.isArray(v)) return '[' + v.map((x, i) => enc(x, `${path}[${i}]`)).join(',') + ']';
      const keys = Object.keys(v as object)
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .sort();
      return '{' + keys.map((k) => JSON.stringify(k) + ':' + enc((v as Record<string, unknown>)[k], `${path}.${k}`)).join(',') + '}';
    }
    default:
      throw new TypeError(`canonical json: ${path} has unsupported type ${typeof v}`);
  }
}
