// An append-only JSON-lines journal with group commit: appends that arrive
// together share one fsync, and each caller's promise resolves only once its
// line is durable. A torn last line (a crash mid-write) was never
// acknowledged, so reading skips it.
import { closeSync, existsSync, fstatSync, fsyncSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';

export class Journal<T> {
  #fd: number;
  #pending: { line: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  #flushing = false;

  constructor(readonly path: string) {
    this.#fd = openSync(path, 'a+', 0o600);
    // End a torn last line, or the next append would join it and be skipped too.
    const size = fstatSync(this.#fd).size;
    const last = Buffer.alloc(1);
    if (size > 0 && readSync(this.#fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a) writeSync(this.#fd, '\n');
  }

  static read<T>(path: string): T[] {
    if (!existsSync(path)) return [];
    const out: T[] = [];
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (!line) continue;
      try {
        out.push(JSON.parse(line) as T);
      } catch {
        // torn tail from a crash: never acknowledged, safe to drop
      }
    }
    return out;
  }

  append(entry: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ line: JSON.stringify(entry) + '\n', resolve, reject });
      if (!this.#flushing) {
        this.#flushing = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const batch = this.#pending;
    this.#pending = [];
    try {
      const buf = Buffer.from(batch.map((b) => b.line).join(''));
      let off = 0;
      while (off < buf.length) off += writeSync(this.#fd, buf, off);
      fsyncSync(this.#fd);
      for (const b of batch) b.resolve();
    } catch (err) {
      for (const b of batch) b.reject(err as Error);
    }
    if (this.#pending.length > 0) setImmediate(() => this.#flush());
    else this.#flushing = false;
  }

  close(): void {
    closeSync(this.#fd);
  }
}
