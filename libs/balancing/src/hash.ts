// A fast, non-cryptographic 32-bit string hash for the hash ring: FNV-1a over
// the UTF-16 code units (low byte, then high byte when non-zero), finished
// with murmur3's fmix32 so that keys differing only in a trailing digit still
// land far apart on the ring. Allocates nothing.

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Hashes `s` to an unsigned 32-bit integer. */
export function hash32(s: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h = Math.imul(h ^ (c & 0xff), FNV_PRIME);
    if (c > 0xff) h = Math.imul(h ^ (c >>> 8), FNV_PRIME);
  }
  return fmix32(h);
}

/** murmur3's 32-bit finalizer: full avalanche of the FNV state. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
