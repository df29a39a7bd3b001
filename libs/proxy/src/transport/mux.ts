// amime-mux/1: many L4 streams over one pooled mTLS connection between two
// agents (negotiated by ALPN; SNI still names the target service, so one
// session carries streams of one source identity to one service).
//
// Why: a TCP-mode proxy pair pays a TLS record, an encrypt/decrypt and two
// syscalls per chunk per connection. Here every frame queued during one turn
// of the event loop (all sockets that became readable in one poll) leaves in
// one TLS write, and one TLS read on the far side delivers them all; new
// client connections cost a frame instead of a handshake.
//
// Frames: a 9-byte header, u32 payload length, u8 type, u32 stream id, then
// the payload. Only the client opens streams, with strictly increasing odd
// or even ids alike (1, 2, 3, ...). Per-stream credit flow control (as
// HTTP/2's, without a connection window): a sender may have at most the
// window unacknowledged; the receiver grants credit as the bytes leave for
// their socket, so a slow reader stalls its own stream only and memory per
// stream stays bounded by the window.
//
// Peers are authenticated agents, but every frame is still checked: a
// malformed frame is a protocol error that closes the session (its reason is
// on the error), never a crash.

import type { Duplex } from 'node:stream';
import { TransportError, positiveInt } from './errors.js';

const HEADER = 9;
/** Largest payload of one frame; larger writes are split. */
export const MUX_MAX_PAYLOAD = 65_536;
const MAX_STREAM_ID = 0x7fff_ffff;
const MAX_WINDOW = 0x7fff_ffff;
const DEFAULT_WINDOW = 256 * 1024;
const DEFAULT_MAX_STREAMS = 1024;
/** After GOAWAY and its last stream, how long a server waits for the client to close first. */
const GOAWAY_GRACE_MS = 2000;

const T_OPEN = 1;
const T_DATA = 2;
const T_END = 3;
const T_RESET = 4;
const T_CREDIT = 5;
const T_GOAWAY = 6;

/** Why a stream was reset; travels as one byte. */
export const MUX_RESET_REASONS = ['cancel', 'refused', 'unavailable', 'flow_control', 'connection_lost'] as const;
export type MuxResetReason = (typeof MUX_RESET_REASONS)[number];
const RESET_CODE: Record<MuxResetReason, number> = { cancel: 1, refused: 2, unavailable: 3, flow_control: 4, connection_lost: 5 };

/** The peer broke the framing rules; the session is closed. `reason` is a metric-safe label. */
export class MuxProtocolError extends TransportError {
  constructor(reason: string, message: string) {
    super('AMIME_ERR_PROXY_MUX_PROTOCOL', reason, message);
  }
}

export interface MuxSessionOptions {
  /** The client opens streams; the server accepts them (onStream). */
  role: 'client' | 'server';
  /** Per-stream credit in bytes, each direction; default 256 KiB. Both sides must agree. */
  windowBytes?: number;
  /** Concurrent streams: the server refuses more, the client's `available` turns false; default 1024. */
  maxStreams?: number;
  /** Server: a new stream. Its first DATA may follow at once; set handlers synchronously. */
  onStream?(stream: MuxStream): void;
  /** With no open stream for this long, close the session; default never. */
  idleTimeoutMs?: number;
  /** Once, when the connection is gone (error: a protocol or socket error). */
  onClose?(error?: Error): void;
}

const noop = (): void => undefined;

export class MuxStream {
  /** Bytes from the peer. Call consumed(n) once they are delivered, to grant credit back. */
  ondata: (chunk: Buffer) => void = noop;
  /** The peer will send no more data. */
  onend: () => void = noop;
  /** The stream was reset (by the peer, the session's end, or flow control); terminal. */
  onreset: (reason: MuxResetReason) => void = noop;
  /** Credit arrived after write() returned false. */
  ondrain: () => void = noop;

  #sendWindow: number;
  #recvWindow: number;
  #unacked = 0;
  #pendingOut: Buffer[] | undefined;
  #blocked = false;
  #endRequested = false;
  #endSent = false;
  #remoteEnded = false;
  #reset = false;

  constructor(
    readonly id: number,
    private readonly session: MuxSession,
    private readonly window: number,
  ) {
    this.#sendWindow = window;
    this.#recvWindow = window;
  }

  /** Closed both ways (ENDs exchanged) or reset. */
  get closed(): boolean {
    return this.#reset || (this.#endSent && this.#remoteEnded);
  }
  get remoteEnded(): boolean {
    return this.#remoteEnded;
  }
  get endRequested(): boolean {
    return this.#endRequested;
  }

  /** Queues data; false when the peer's credit is used up (pause the source until ondrain). */
  write(chunk: Buffer): boolean {
    if (this.#reset || this.#endRequested) return false;
    if (this.#pendingOut !== undefined) {
      this.#pendingOut.push(chunk);
      this.#blocked = true;
      return false;
    }
    const n = Math.min(chunk.length, this.#sendWindow);
    if (n > 0) this.#sendData(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (n < chunk.length) this.#pendingOut = [chunk.subarray(n)];
    if (this.#sendWindow > 0 && this.#pendingOut === undefined) return true;
    this.#blocked = true;
    return false;
  }

  /** Half-close: no more data from us (sent after any data still waiting for credit). */
  end(): void {
    if (this.#reset || this.#endRequested) return;
    this.#endRequested = true;
    if (this.#pendingOut === undefined) this.#sendEnd();
  }

  /** Aborts both directions and tells the peer. */
  reset(reason: MuxResetReason = 'cancel'): void {
    if (this.#reset || this.closed) return;
    this.session._queue(T_RESET, this.id, undefined, RESET_CODE[reason]);
    this.#terminate(reason, false);
  }

  /** `n` received bytes left for their destination: grant them back (batched). */
  consumed(n: number): void {
    if (this.#reset || this.#remoteEnded) return;
    this.#unacked += n;
    if (this.#unacked >= this.window >>> 2) {
      this.#recvWindow += this.#unacked;
      this.session._queue(T_CREDIT, this.id, undefined, this.#unacked);
      this.#unacked = 0;
    }
  }

  #sendData(chunk: Buffer): void {
    this.#sendWindow -= chunk.length;
    for (let off = 0; off < chunk.length; off += MUX_MAX_PAYLOAD) {
      this.session._queue(T_DATA, this.id, off === 0 && chunk.length <= MUX_MAX_PAYLOAD ? chunk : chunk.subarray(off, off + MUX_MAX_PAYLOAD), 0);
    }
  }

  #sendEnd(): void {
    this.#endSent = true;
    this.session._queue(T_END, this.id, undefined, 0);
    if (this.closed) this.session._forget(this);
  }

  #terminate(reason: MuxResetReason, notify: boolean): void {
    this.#reset = true;
    this.#pendingOut = undefined;
    this.session._forget(this);
    if (notify) this.onreset(reason);
  }

  // --- called by the session for frames from the peer ---

  /** @internal */
  _data(payload: Buffer): void {
    if (this.#remoteEnded) throw new MuxProtocolError('data_after_end', `stream ${this.id}: DATA after END`);
    if (payload.length > this.#recvWindow) {
      this.reset('flow_control');
      this.onreset('flow_control');
      return;
    }
    this.#recvWindow -= payload.length;
    this.ondata(payload);
  }

  /** @internal */
  _end(): void {
    if (this.#remoteEnded) throw new MuxProtocolError('duplicate_end', `stream ${this.id}: END twice`);
    this.#remoteEnded = true;
    if (this.closed) this.session._forget(this);
    this.onend();
  }

  /** @internal */
  _credit(n: number): void {
    if (this.#sendWindow + n > MAX_WINDOW) throw new MuxProtocolError('credit_overflow', `stream ${this.id}: credit beyond 2^31-1`);
    this.#sendWindow += n;
    const pending = this.#pendingOut;
    if (pending !== undefined) {
      this.#pendingOut = undefined;
      for (let i = 0; i < pending.length; i++) {
        const c = pending[i]!;
        const k = Math.min(c.length, this.#sendWindow);
        if (k > 0) this.#sendData(k === c.length ? c : c.subarray(0, k));
        if (k < c.length) {
          this.#pendingOut = [c.subarray(k), ...pending.slice(i + 1)];
          return;
        }
      }
      if (this.#endRequested) this.#sendEnd();
    }
    if (this.#blocked && this.#sendWindow > 0 && !this.#endRequested) {
      this.#blocked = false;
      this.ondrain();
    }
  }

  /** @internal */
  _reset(reason: MuxResetReason): void {
    if (this.#reset) return;
    this.#terminate(reason, true);
  }
}

export class MuxSession {
  readonly #socket: Duplex;
  readonly #role: 'client' | 'server';
  readonly #window: number;
  readonly #maxStreams: number;
  readonly #idleMs: number;
  readonly #opts: MuxSessionOptions;
  readonly #streams = new Map<number, MuxStream>();
  /** Client: the next id to open. Server: the highest id seen. */
  #lastId = 0;
  #goingAway = false;
  #closed = false;
  /** Our FIN is sent: nothing more may be written. */
  #ending = false;
  #idleTimer: NodeJS.Timeout | undefined;
  #graceTimer: NodeJS.Timeout | undefined;

  // Frames queued this turn of the event loop, written as one buffer by #flush.
  #qType: number[] = [];
  #qId: number[] = [];
  #qPayload: (Buffer | undefined)[] = [];
  #qNum: number[] = [];
  #qBytes = 0;
  #flushScheduled = false;

  // A frame split across reads: its parts until `#need` bytes are there.
  #parts: Buffer[] = [];
  #partsLen = 0;
  #need = HEADER;

  constructor(socket: Duplex, opts: MuxSessionOptions) {
    if (opts.role !== 'client' && opts.role !== 'server') throw new TypeError("MuxSession: options.role must be 'client' or 'server'");
    if (opts.role === 'server' && typeof opts.onStream !== 'function') throw new TypeError('MuxSession: a server needs options.onStream');
    this.#socket = socket;
    this.#role = opts.role;
    this.#opts = opts;
    this.#window = positiveInt('windowBytes', opts.windowBytes, DEFAULT_WINDOW, 1024);
    if (this.#window > MAX_WINDOW) throw new TypeError(`MuxSession: windowBytes must be <= ${MAX_WINDOW}`);
    this.#maxStreams = positiveInt('maxStreams', opts.maxStreams, DEFAULT_MAX_STREAMS);
    this.#idleMs = positiveInt('idleTimeoutMs', opts.idleTimeoutMs, 0, 0);
    (socket as Duplex & { setNoDelay?: (v: boolean) => unknown }).setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err: Error) => this.destroy(err));
    socket.on('end', () => this.destroy());
    socket.on('close', () => this.destroy());
    this.#armIdle();
  }

  get streamCount(): number {
    return this.#streams.size;
  }
  get closed(): boolean {
    return this.#closed;
  }
  /** Client: a new stream may be opened now. */
  get available(): boolean {
    return !this.#closed && !this.#goingAway && this.#streams.size < this.#maxStreams && this.#lastId < MAX_STREAM_ID;
  }

  /** Client: a new stream (its OPEN leaves with the next flush, before its first DATA). */
  open(): MuxStream {
    if (this.#role !== 'client') throw new TypeError('MuxSession.open: only a client opens streams');
    if (!this.available) throw new TransportError('AMIME_ERR_PROXY_MUX_UNAVAILABLE', 'session_unavailable', 'the session is closed, going away or full');
    const s = new MuxStream(++this.#lastId, this, this.#window);
    this.#streams.set(s.id, s);
    this.#disarmIdle();
    this._queue(T_OPEN, s.id, undefined, 0);
    return s;
  }

  /**
   * No new streams. A client closes once its streams are done. A server tells
   * the client (GOAWAY), keeps refusing OPENs that crossed it, and lets the
   * client close first, so a stream opened in that round trip is refused
   * rather than lost; it closes by itself only if the client does not.
   */
  goAway(): void {
    if (this.#closed || this.#goingAway) return;
    this.#goingAway = true;
    this.#disarmIdle();
    if (this.#role === 'server') this._queue(T_GOAWAY, 0, undefined, 0);
    if (this.#streams.size === 0) this.#afterLastStream();
  }

  /** Closes the connection; open streams are reset ('connection_lost'). */
  destroy(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#disarmIdle();
    if (this.#graceTimer !== undefined) clearTimeout(this.#graceTimer);
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    for (const s of streams) s._reset('connection_lost');
    if (!this.#socket.destroyed) this.#socket.destroy();
    try {
      this.#opts.onClose?.(error);
    } catch {
      // a callback must not break the data plane
    }
  }

  // --- writing ---

  /** @internal Queue one frame; `num` is RESET's code or CREDIT's amount. */
  _queue(type: number, id: number, payload: Buffer | undefined, num: number): void {
    if (this.#closed || this.#ending) return;
    this.#qType.push(type);
    this.#qId.push(id);
    this.#qPayload.push(payload);
    this.#qNum.push(num);
    this.#qBytes += HEADER + (payload !== undefined ? payload.length : type === T_RESET ? 1 : type === T_CREDIT ? 4 : 0);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // after the poll phase: every socket that became readable in it has queued its frames
      setImmediate(this.#flush);
    }
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const n = this.#qType.length;
    if (this.#closed || n === 0 || this.#ending || this.#socket.destroyed || this.#socket.writableEnded) return;
    const out = Buffer.allocUnsafe(this.#qBytes);
    let pos = 0;
    for (let i = 0; i < n; i++) {
      const type = this.#qType[i]!;
      const payload = this.#qPayload[i];
      const len = payload !== undefined ? payload.length : type === T_RESET ? 1 : type === T_CREDIT ? 4 : 0;
      out.writeUInt32BE(len, pos);
      out[pos + 4] = type;
      out.writeUInt32BE(this.#qId[i]!, pos + 5);
      pos += HEADER;
      if (payload !== undefined) {
        payload.copy(out, pos);
      } else if (type === T_RESET) {
        out[pos] = this.#qNum[i]!;
      } else if (type === T_CREDIT) {
        out.writeUInt32BE(this.#qNum[i]!, pos);
      }
      pos += len;
    }
    this.#qType = [];
    this.#qId = [];
    this.#qPayload = [];
    this.#qNum = [];
    this.#qBytes = 0;
    this.#socket.write(out);
  };

  // --- reading ---

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    let buf = chunk;
    if (this.#partsLen > 0) {
      this.#parts.push(chunk);
      this.#partsLen += chunk.length;
      if (this.#partsLen < this.#need) return;
      buf = Buffer.concat(this.#parts, this.#partsLen);
      this.#parts = [];
      this.#partsLen = 0;
    }
    let off = 0;
    try {
      while (!this.#closed) {
        const left = buf.length - off;
        if (left < HEADER) {
          this.#need = HEADER;
          break;
        }
        const len = buf.readUInt32BE(off);
        if (len > MUX_MAX_PAYLOAD) throw new MuxProtocolError('frame_too_large', `frame of ${len} bytes (max ${MUX_MAX_PAYLOAD})`);
        if (left < HEADER + len) {
          this.#need = HEADER + len;
          break;
        }
        const type = buf[off + 4]!;
        const id = buf.readUInt32BE(off + 5);
        const start = off + HEADER;
        off = start + len;
        this.#frame(type, id, buf, start, len);
      }
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (off < buf.length && !this.#closed) {
      this.#parts.push(buf.subarray(off));
      this.#partsLen = buf.length - off;
    }
  }

  #frame(type: number, id: number, buf: Buffer, start: number, len: number): void {
    switch (type) {
      case T_DATA: {
        const s = this.#stream(id, 'DATA');
        if (s !== undefined) this.#guard(s, () => s._data(buf.subarray(start, start + len)));
        return;
      }
      case T_OPEN: {
        if (this.#role !== 'server') throw new MuxProtocolError('unexpected_open', 'OPEN from the server side');
        if (len !== 0) throw new MuxProtocolError('bad_frame_length', `OPEN with a ${len}-byte payload`);
        if (id <= this.#lastId || id > MAX_STREAM_ID) throw new MuxProtocolError('bad_stream_id', `OPEN of stream ${id} after ${this.#lastId}`);
        this.#lastId = id;
        const s = new MuxStream(id, this, this.#window);
        if (this.#goingAway || this.#streams.size >= this.#maxStreams) {
          this._queue(T_RESET, id, undefined, RESET_CODE.refused);
          return;
        }
        this.#streams.set(id, s);
        this.#disarmIdle();
        this.#guard(s, () => this.#opts.onStream!(s));
        return;
      }
      case T_END: {
        if (len !== 0) throw new MuxProtocolError('bad_frame_length', `END with a ${len}-byte payload`);
        const s = this.#stream(id, 'END');
        if (s !== undefined) this.#guard(s, () => s._end());
        return;
      }
      case T_RESET: {
        if (len !== 1) throw new MuxProtocolError('bad_frame_length', `RESET with a ${len}-byte payload`);
        const code = buf[start]!;
        const reason = MUX_RESET_REASONS.find((r) => RESET_CODE[r] === code) ?? 'cancel';
        this.#stream(id, 'RESET')?._reset(reason);
        return;
      }
      case T_CREDIT: {
        if (len !== 4) throw new MuxProtocolError('bad_frame_length', `CREDIT with a ${len}-byte payload`);
        const n = buf.readUInt32BE(start);
        if (n === 0) throw new MuxProtocolError('bad_credit', `stream ${id}: CREDIT of 0`);
        const s = this.#stream(id, 'CREDIT');
        if (s !== undefined) this.#guard(s, () => s._credit(n));
        return;
      }
      case T_GOAWAY: {
        if (this.#role !== 'client') throw new MuxProtocolError('unexpected_goaway', 'GOAWAY from the client side');
        if (len !== 0 || id !== 0) throw new MuxProtocolError('bad_frame_length', 'GOAWAY with a payload or a stream id');
        this.goAway();
        return;
      }
      default:
        throw new MuxProtocolError('unknown_frame', `unknown frame type ${type}`);
    }
  }

  /** A handler that throws resets its own stream, not the session; protocol errors still end the session. */
  #guard(s: MuxStream, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (err instanceof MuxProtocolError) throw err;
      s.reset('cancel');
      try {
        s.onreset('cancel');
      } catch {
        // already failing: the stream is gone either way
      }
    }
  }

  /** The open stream `id`; undefined for one already closed (late frames are dropped); throws for ids never opened. */
  #stream(id: number, what: string): MuxStream | undefined {
    const s = this.#streams.get(id);
    if (s !== undefined) return s;
    // client: ids it opened; server: ids up to the highest OPEN seen
    if (id < 1 || id > this.#lastId) throw new MuxProtocolError('bad_stream_id', `${what} for stream ${id}, never opened`);
    return undefined;
  }

  /** @internal A stream is done (closed or reset). */
  _forget(s: MuxStream): void {
    if (this.#streams.get(s.id) !== s) return;
    this.#streams.delete(s.id);
    if (this.#streams.size > 0) return;
    if (this.#goingAway) this.#afterLastStream();
    else this.#armIdle();
  }

  #afterLastStream(): void {
    if (this.#role === 'client') {
      this.#closeGracefully();
      return;
    }
    if (this.#graceTimer !== undefined) return;
    this.#graceTimer = setTimeout(() => {
      this.#graceTimer = undefined;
      if (this.#streams.size === 0) this.#closeGracefully();
    }, GOAWAY_GRACE_MS);
    this.#graceTimer.unref();
  }

  #closeGracefully(): void {
    // after the queued frames (END/RESET of the last stream) are written
    setImmediate(() => {
      if (this.#closed || this.#streams.size > 0) return;
      if (this.#qType.length > 0) this.#flush();
      this.#ending = true;
      this.#socket.end();
      // a peer that never answers our FIN (half-open) is cut after the grace
      setTimeout(() => this.destroy(), GOAWAY_GRACE_MS).unref();
      // the peer answers with its own FIN; 'end' then destroys the session
    });
  }

  #armIdle(): void {
    if (this.#idleMs === 0 || this.#closed || this.#idleTimer !== undefined) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#streams.size === 0) this.goAwayAndClose();
    }, this.#idleMs);
    this.#idleTimer.unref();
  }

  /** Idle close: no new streams, and the connection ends now that none is open. */
  goAwayAndClose(): void {
    if (this.#closed) return;
    if (this.#role === 'server') {
      this.goAway();
      return;
    }
    this.#goingAway = true;
    this.#closeGracefully();
  }

  #disarmIdle(): void {
    if (this.#idleTimer !== undefined) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
  }
}
