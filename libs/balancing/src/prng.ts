// The balancer's random source: xoshiro128** over a Uint32Array, so a draw
// is integer arithmetic on typed-array slots and allocates nothing (calling
// an injected `() => number` per draw boxes a double on every call). Seeded
// once from the injected `random` option, which keeps tests deterministic.

export class Prng {
  private readonly s = new Uint32Array(4);

  constructor(seed: () => number) {
    const s = this.s;
    for (let i = 0; i < 4; i++) s[i] = Math.floor(seed() * 4294967296) ^ Math.imul(i + 1, 0x9e3779b9);
    if ((s[0]! | s[1]! | s[2]! | s[3]!) === 0) s[0] = 1;
  }

  /** A uniform integer in [0, n), for 1 ≤ n ≤ 2^32. */
  below(n: number): number {
    const s = this.s;
    const s0 = s[0]!;
    const s1 = s[1]!;
    const s2 = s[2]! ^ s0;
    const s3 = s[3]! ^ s1;
    const x = Math.imul(s1, 5);
    const out = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    s[0] = s0 ^ s3;
    s[1] = s1 ^ s2;
    s[2] = s2 ^ (s1 << 9);
    s[3] = (s3 << 11) | (s3 >>> 21);
    return Math.floor((out / 4294967296) * n);
  }
}
