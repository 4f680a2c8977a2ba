// A small STOMP 1.2 client over WebSocket, for the web console (no dependencies).
//
// Frame grammar (STOMP 1.2), as this parser reads it:
//
//   frame    = command EOL *(header EOL) EOL body NUL
//   EOL      = [CR] LF            (heart-beats are bare EOLs between frames)
//   header   = name ":" value     (escaped \\ \n \r \c, except in CONNECT and CONNECTED;
//                                  the first of repeated headers wins)
//   body     = content-length octets when that header is present, else up to the first NUL
//
// The broker sends one frame per WebSocket message, text or binary; this parser does not rely
// on it and keeps a byte buffer, so a frame may span messages and several may share one.
// Frames go out as binary messages (bytes, with content-length on SEND).

const encoder = new TextEncoder();
const LF = 10;
const CR = 13;
const NUL = 0;
/** Bytes buffered without a whole frame before we give up on the connection. */
const MAX_BUFFERED = 32 * 1024 * 1024;

export class StompError extends Error {
  /** An ERROR frame from the broker (``frame.headers.message`` is its short reason). */
  constructor(frame) {
    super(frame.headers.message || 'ERROR');
    this.frame = frame;
  }
}

function escapeHeader(text) {
  return String(text).replace(/\\/g, '\\\\').replace(/\r/g, '\\r').replace(/\n/g, '\\n')
    .replace(/:/g, '\\c');
}

function unescapeHeader(text) {
  const table = { '\\\\': '\\', '\\r': '\r', '\\n': '\n', '\\c': ':' };
  return text.replace(/\\[\\rnc]/g, (pair) => table[pair]);
}

/** One frame as bytes: ``headers`` is a list of [name, value] pairs. */
export function encodeFrame(command, headers, body = new Uint8Array(0)) {
  const raw = command === 'CONNECT' || command === 'STOMP';
  let head = `${command}\n`;
  for (const [name, value] of headers) {
    head += raw ? `${name}:${value}\n` : `${escapeHeader(name)}:${escapeHeader(value)}\n`;
  }
  const headBytes = encoder.encode(`${head}\n`);
  const out = new Uint8Array(headBytes.length + body.length + 1);
  out.set(headBytes, 0);
  out.set(body, headBytes.length);
  out[out.length - 1] = NUL;
  return out;
}

/** Turns bytes into frames {command, headers, body: Uint8Array}; keeps what is incomplete. */
export class FrameParser {
  constructor() {
    this.buffer = new Uint8Array(0);
    this.decoder = new TextDecoder();
  }

  push(bytes) {
    const joined = new Uint8Array(this.buffer.length + bytes.length);
    joined.set(this.buffer, 0);
    joined.set(bytes, this.buffer.length);
    this.buffer = joined;
    const frames = [];
    for (;;) {
      const frame = this.next();
      if (frame === null) break;
      frames.push(frame);
    }
    if (this.buffer.length > MAX_BUFFERED) throw new Error('frame too large');
    return frames;
  }

  next() {
    const buf = this.buffer;
    let at = 0;
    while (at < buf.length && (buf[at] === LF || (buf[at] === CR && buf[at + 1] === LF))) {
      at += buf[at] === CR ? 2 : 1; // heart-beats
    }
    const start = at;
    const lines = [];
    for (;;) {
      const end = buf.indexOf(LF, at);
      if (end < 0) return this.wait(buf, start);
      const stop = end > at && buf[end - 1] === CR ? end - 1 : end;
      const line = this.decoder.decode(buf.subarray(at, stop));
      at = end + 1;
      if (line === '' && lines.length > 0) break;
      lines.push(line);
    }
    const command = lines[0];
    const escaped = command !== 'CONNECTED';
    const headers = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon < 0) throw new Error(`bad header line in ${command}`);
      const name = escaped ? unescapeHeader(line.slice(0, colon)) : line.slice(0, colon);
      if (!(name in headers)) {
        headers[name] = escaped ? unescapeHeader(line.slice(colon + 1)) : line.slice(colon + 1);
      }
    }
    let bodyEnd;
    if ('content-length' in headers) {
      bodyEnd = at + Number(headers['content-length']);
      if (!Number.isInteger(bodyEnd) || bodyEnd < at) throw new Error('bad content-length');
      if (buf.length <= bodyEnd) return this.wait(buf, start);
      if (buf[bodyEnd] !== NUL) throw new Error('frame body not followed by NUL');
    } else {
      bodyEnd = buf.indexOf(NUL, at);
      if (bodyEnd < 0) return this.wait(buf, start);
    }
    const body = buf.slice(at, bodyEnd);
    this.buffer = buf.subarray(bodyEnd + 1);
    return { command, headers, body };
  }

  /** Keep the incomplete frame from ``start`` (the heart-beats before it are done with). */
  wait(buf, start) {
    this.buffer = buf.subarray(start);
    return null;
  }
}

/** The UTF-8 text of a body, or null when it is not valid UTF-8. */
export function bodyText(body) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    return null;
  }
}

/**
 * One STOMP 1.2 connection over a WebSocket (subprotocol v12.stomp).
 *
 * ``await client.connect()`` resolves with the CONNECTED frame or rejects with a StompError
 * (an ERROR frame: "login required", "login failed", ...) or an Error (the socket closed).
 * ``send`` and ``request`` resolve on their RECEIPT and reject on an ERROR. ``onMessage`` of
 * ``subscribe`` gets each MESSAGE frame; ``onClose(reason)`` is called once, at the end.
 */
export class StompClient {
  constructor(url, { login = '', passcode = '', heartbeatMs = 10000, timeoutMs = 10000 } = {}) {
    this.url = url;
    this.login = login;
    this.passcode = passcode;
    this.heartbeatMs = heartbeatMs;
    this.timeoutMs = timeoutMs;
    this.onClose = () => {};
    this.parser = new FrameParser();
    this.handlers = new Map();
    this.pending = new Map();
    this.counter = 0;
    this.closed = false;
    this.timers = [];
    this.lastReceived = Date.now();
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.connecting = { resolve, reject };
      const socket = new WebSocket(this.url, ['v12.stomp']);
      socket.binaryType = 'arraybuffer';
      this.socket = socket;
      this.connectTimer = setTimeout(() => this.end(new Error('no answer from the broker')),
        this.timeoutMs);
      socket.onopen = () => {
        const headers = [['accept-version', '1.2'], ['host', location.hostname],
          ['heart-beat', `${this.heartbeatMs},${this.heartbeatMs}`]];
        if (this.login) headers.push(['login', this.login], ['passcode', this.passcode]);
        socket.send(encodeFrame('CONNECT', headers));
      };
      socket.onmessage = (event) => this.received(event.data);
      socket.onclose = (event) => {
        this.end(new Error(event.reason || `connection closed (code ${event.code})`));
      };
    });
  }

  received(data) {
    this.lastReceived = Date.now();
    const bytes = typeof data === 'string' ? encoder.encode(data) : new Uint8Array(data);
    let frames;
    try {
      frames = this.parser.push(bytes);
    } catch (error) {
      this.end(error);
      return;
    }
    for (const frame of frames) this.dispatch(frame);
  }

  dispatch(frame) {
    const { command, headers } = frame;
    if (command === 'CONNECTED') {
      this.startHeartBeats(headers['heart-beat'] || '0,0');
      const connecting = this.connecting;
      this.connecting = null;
      clearTimeout(this.connectTimer);
      if (connecting) connecting.resolve(frame);
    } else if (command === 'MESSAGE') {
      const handler = this.handlers.get(headers.subscription);
      if (handler) handler(frame);
    } else if (command === 'RECEIPT') {
      const waiter = this.pending.get(headers['receipt-id']);
      this.pending.delete(headers['receipt-id']);
      if (waiter) waiter.resolve(frame);
    } else if (command === 'ERROR') {
      this.end(new StompError(frame)); // the broker closes the connection after an ERROR
    }
  }

  startHeartBeats(answer) {
    const [serverSends, serverWants] = answer.split(',').map(Number);
    if (this.heartbeatMs > 0 && serverWants > 0) {
      const every = Math.max(this.heartbeatMs, serverWants);
      this.timers.push(setInterval(() => this.write(new Uint8Array([LF])), every));
    }
    if (this.heartbeatMs > 0 && serverSends > 0) {
      const silence = 3 * Math.max(this.heartbeatMs, serverSends);
      this.timers.push(setInterval(() => {
        if (Date.now() - this.lastReceived > silence) this.end(new Error('the broker went silent'));
      }, silence / 3));
    }
  }

  write(bytes) {
    if (!this.closed && this.socket.readyState === WebSocket.OPEN) this.socket.send(bytes);
  }

  /** Send a frame asking for a RECEIPT; resolves with it, rejects on ERROR or close. */
  request(command, headers, body = new Uint8Array(0)) {
    if (this.closed) return Promise.reject(new Error('not connected'));
    const id = `r-${++this.counter}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.write(encodeFrame(command, [...headers, ['receipt', id]], body));
    });
  }

  send(destination, body, headers = []) {
    const bytes = typeof body === 'string' ? encoder.encode(body) : body;
    const all = [['destination', destination], ...headers,
      ['content-length', String(bytes.length)]];
    return this.request('SEND', all, bytes);
  }

  /** Subscribe; the promise resolves once the broker has the subscription. */
  subscribe(destination, onMessage, headers = []) {
    const id = `sub-${++this.counter}`;
    this.handlers.set(id, onMessage);
    return this.request('SUBSCRIBE', [['id', id], ['destination', destination], ...headers])
      .then(() => id);
  }

  unsubscribe(id) {
    this.handlers.delete(id);
    return this.request('UNSUBSCRIBE', [['id', id]]);
  }

  /** DISCONNECT and wait (bounded) for its RECEIPT, then close the socket. */
  async disconnect() {
    if (this.closed) return;
    if (this.connecting) {
      this.end(null); // not connected yet: nothing to say goodbye to
      return;
    }
    const stop = new Promise((resolve) => setTimeout(resolve, 2000));
    await Promise.race([this.request('DISCONNECT', []).catch(() => {}), stop]);
    this.end(null);
  }

  end(reason) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.connectTimer);
    for (const timer of this.timers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    const failure = reason || new Error('disconnected');
    if (this.connecting) this.connecting.reject(failure);
    for (const waiter of this.pending.values()) waiter.reject(failure);
    this.pending.clear();
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close(1000);
    this.onClose(reason);
  }
}
