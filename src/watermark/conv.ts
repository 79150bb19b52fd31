/**
 * The error-correcting code of the image watermark's payload: the rate-1/2, constraint-length-7
 * convolutional code with generators 171 and 133 (octal), the one of CCSDS, 802.11 and DVB,
 * terminated with six zero bits, and a soft-decision Viterbi decoder.
 */

const K = 7;
const STATES = 1 << (K - 1);
const G0 = 0o171;
const G1 = 0o133;

function parity(x: number): number {
  x ^= x >> 4;
  x ^= x >> 2;
  x ^= x >> 1;
  return x & 1;
}

/** For each state and input bit: the two output bits (state = the last six inputs, newest in bit 5). */
const OUT = new Uint8Array(STATES * 2 * 2);
for (let s = 0; s < STATES; s++)
  for (let b = 0; b < 2; b++) {
    const reg = (b << 6) | s;
    OUT[(s * 2 + b) * 2] = parity(reg & G0);
    OUT[(s * 2 + b) * 2 + 1] = parity(reg & G1);
  }

/** The coded length of `bits` payload bits: 2 × (bits + 6). */
export const codedLength = (bits: number): number => 2 * (bits + K - 1);

/** Encodes bits (0/1), terminated: 2 × (n + 6) bits. */
export function convEncode(bits: readonly number[]): Uint8Array {
  const out = new Uint8Array(codedLength(bits.length));
  let s = 0;
  const all = [...bits, 0, 0, 0, 0, 0, 0];
  all.forEach((b, i) => {
    out[2 * i] = OUT[(s * 2 + b) * 2]!;
    out[2 * i + 1] = OUT[(s * 2 + b) * 2 + 1]!;
    s = ((b << 5) | (s >> 1)) & (STATES - 1);
  });
  return out;
}

/**
 * Decodes soft values (one per coded bit: positive for 1, negative for 0, the size its confidence)
 * into the n = length/2 − 6 payload bits with the most likely path that ends in state 0.
 */
export function viterbiDecode(soft: ArrayLike<number>): number[] {
  const steps = soft.length / 2;
  if (!Number.isInteger(steps) || steps < K - 1) throw new RangeError('soft values of a terminated code word');
  let metric = new Float64Array(STATES).fill(-Infinity);
  metric[0] = 0;
  const from = new Uint8Array(steps * STATES);
  for (let t = 0; t < steps; t++) {
    const a = soft[2 * t]!;
    const b = soft[2 * t + 1]!;
    const next = new Float64Array(STATES).fill(-Infinity);
    const tail = t >= steps - (K - 1);
    for (let s = 0; s < STATES; s++) {
      const m = metric[s]!;
      if (m === -Infinity) continue;
      for (let bit = 0; bit < (tail ? 1 : 2); bit++) {
        const o0 = OUT[(s * 2 + bit) * 2]!;
        const o1 = OUT[(s * 2 + bit) * 2 + 1]!;
        const v = m + (o0 ? a : -a) + (o1 ? b : -b);
        const ns = ((bit << 5) | (s >> 1)) & (STATES - 1);
        if (v > next[ns]!) {
          next[ns] = v;
          from[t * STATES + ns] = s;
        }
      }
    }
    metric = next;
  }
  const bits: number[] = new Array<number>(steps);
  let s = 0;
  for (let t = steps - 1; t >= 0; t--) {
    bits[t] = (s >> 5) & 1;
    s = from[t * STATES + s]!;
  }
  return bits.slice(0, steps - (K - 1));
}
