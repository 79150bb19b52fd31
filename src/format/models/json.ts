/** Text, JSON and safetensors index files. */
import { relativeLocationProblem } from './set.js';
import { HINT_LOCATION, JSON_MAX, type ModelFileInfo, Reader, decodeUtf8, isPlainObject, q, utf8Lenient } from './reader.js';
// ---------------------------------------------------------------------------------------------
// Text, JSON

export function isText(head: Buffer, truncated: boolean): boolean {
  for (const b of head) {
    // NUL and C0 controls other than \t \n \v \f \r and ESC mark binary data.
    if (b < 0x20 && !(b >= 0x09 && b <= 0x0d) && b !== 0x1b) return false;
    if (b === 0x7f) return false;
  }
  try {
    // stream: a multi-byte character cut off at the end of the sniffed window is fine.
    new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: truncated });
    return true;
  } catch {
    return false;
  }
}

export function stripBom(s: string): string {
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

export async function readJson(r: Reader): Promise<{ ok: true; value: unknown } | { ok: false; why: string }> {
  r.pos = 0;
  const text = decodeUtf8(await r.bytes(r.size, 'JSON text'));
  if (text === null) return { ok: false, why: 'is not valid UTF-8' };
  try {
    return { ok: true, value: JSON.parse(stripBom(text)) };
  } catch (e) {
    return { ok: false, why: `is not valid JSON (${(e as Error).message.slice(0, 120)})` };
  }
}

export async function inspectJson(r: Reader, head: Buffer): Promise<ModelFileInfo | null> {
  if (r.size > JSON_MAX) {
    // Too big to parse here: call it JSON when it starts like JSON and its start is UTF-8 text.
    const start = stripBom(utf8Lenient.decode(head)).trimStart();
    if ((start.startsWith('{') || start.startsWith('[')) && isText(head, true)) return { format: 'json', details: { validated: false } };
    return null;
  }
  const j = await readJson(r);
  if (!j.ok) return null;
  const v = j.value;
  const details: Record<string, string | number | boolean> = {
    topLevel: Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v,
  };
  if (isPlainObject(v)) details.keys = Object.keys(v).length;
  else if (Array.isArray(v)) details.items = v.length;
  return { format: 'json', details };
}

export async function inspectSafetensorsIndex(r: Reader): Promise<ModelFileInfo> {
  if (r.size > JSON_MAX) throw r.invalid(`safetensors index is ${r.size} bytes, more than the ${JSON_MAX} allowed`);
  const j = await readJson(r);
  if (!j.ok) throw r.invalid(`safetensors index ${j.why}`);
  const v = j.value;
  if (!isPlainObject(v)) throw r.invalid('safetensors index is not a JSON object');
  const wm = v.weight_map;
  if (!isPlainObject(wm)) throw r.invalid('safetensors index has no "weight_map" object');
  const shards = new Set<string>();
  let tensors = 0;
  for (const [tensor, file] of Object.entries(wm)) {
    if (typeof file !== 'string') throw r.invalid(`weight_map entry ${q(tensor)} is not a file name`);
    const why = relativeLocationProblem(file);
    if (why) throw r.invalid(`weight_map entry ${q(tensor)}: shard ${q(file)} ${why}`, HINT_LOCATION);
    shards.add(file);
    tensors++;
  }
  const details: Record<string, string | number | boolean> = { tensors, shards: shards.size };
  const meta = v.metadata;
  if (meta !== undefined && meta !== null && !isPlainObject(meta)) throw r.invalid('safetensors index "metadata" is not an object');
  if (isPlainObject(meta) && typeof meta.total_size === 'number' && Number.isFinite(meta.total_size)) details.totalSize = meta.total_size;
  return { format: 'safetensors-index', details, shards: [...shards].sort() };
}

