// One @stomp/stompjs 7 client run against stompbroker, driven by tests/interop/test_stompjs.py.
//
// Usage: node stompjs_client.mjs '<JSON spec>'; prints one JSON line with what happened and
// exits 0, or prints {"error": ...} and exits 1. Every wait is bounded by spec.timeoutMs.
//
// spec.transport: "ws" (brokerURL, STOMP.js's own WebSocket path, the `ws` package standing
//   in for the browser's WebSocket) or "tcp" (@stomp/tcp-wrapper over a plain socket).
// spec.scenario: "roundtrip" | "heartbeat" | "probe" (a bare WebSocket handshake, no STOMP)
//   | "relay" (a consumer on spec.port, a producer on spec.sendPort: two nodes of a cluster).
import { Client, Versions } from '@stomp/stompjs';
import { TCPWrapper } from '@stomp/tcp-wrapper';
import WebSocket from 'ws';

const spec = JSON.parse(process.argv[2]);

const deadline = setTimeout(() => {
  finish({ error: `timed out after ${spec.timeoutMs} ms`, log: debugLog.slice(-20) }, 1);
}, spec.timeoutMs);

const debugLog = [];

let finished = false;

// Exit only once the line is flushed: a pipe takes large writes asynchronously.
function finish(result, code = 0) {
  if (finished) return;
  finished = true;
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code));
}

// The `ws` package as the global WebSocket, with the options a test asks for (Origin, TLS).
class NodeWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, {
      origin: spec.origin,
      rejectUnauthorized: spec.rejectUnauthorized ?? true,
      perMessageDeflate: true, // offered as browsers do; the broker declines it
    });
  }
}
globalThis.WebSocket = NodeWebSocket;

function makeClient(extra) {
  const config = {
    debug: (line) => debugLog.push(line),
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    ...extra,
  };
  if (spec.stompVersions) config.stompVersions = new Versions(spec.stompVersions);
  if (spec.transport === 'tcp') {
    const port = extra.port ?? spec.port;
    config.webSocketFactory = () => new TCPWrapper('127.0.0.1', port);
  } else {
    config.brokerURL = spec.url;
  }
  const client = new Client(config);
  client.onStompError = (frame) => finish({ error: `ERROR frame: ${frame.headers.message}` }, 1);
  client.onWebSocketError = () => finish({ error: 'WebSocket error', log: debugLog.slice(-20) }, 1);
  return client;
}

// Received frames always carry their body as bytes in STOMP.js; report them in base64.
function describe(message) {
  return {
    destination: message.headers.destination,
    body: Buffer.from(message.binaryBody).toString('base64'),
  };
}

// Connect, subscribe to a queue and a topic, send text, binary and large bodies, receive them.
function roundtrip() {
  const received = [];
  const receipts = [];
  const big = 'x'.repeat(spec.bigBytes ?? 0);
  const expected = 3 + (big ? 1 : 0);
  const client = makeClient({
    splitLargeFrames: spec.splitLargeFrames ?? false,
    maxWebSocketChunkSize: spec.maxWebSocketChunkSize ?? 8 * 1024,
  });
  client.onConnect = (frame) => {
    const connected = {
      version: frame.headers.version,
      server: frame.headers.server,
      subprotocol: spec.transport === 'ws' ? client.webSocket.protocol : null,
    };
    const onMessage = (message) => {
      received.push(describe(message));
      if (received.length === expected) {
        client.deactivate().then(() => finish({ ...connected, received, receipts }));
      }
    };
    client.watchForReceipt('sub-q', () => receipts.push('sub-q'));
    client.subscribe('/queue/js', onMessage, { receipt: 'sub-q' });
    client.subscribe('/topic/js', onMessage);
    client.watchForReceipt('send-q', () => receipts.push('send-q'));
    client.publish({ destination: '/queue/js', body: 'hello, queue', headers: { receipt: 'send-q' } });
    client.publish({ destination: '/topic/js', body: 'héllo, topic' });
    client.publish({
      destination: '/queue/js',
      binaryBody: new Uint8Array([0xff, 0xfe, 0x00, 0x01]),
      headers: { 'content-type': 'application/octet-stream' },
    });
    if (big) client.publish({ destination: '/queue/js', body: big });
  };
  client.activate();
}

// Heart-beats both ways for spec.holdMs, then one message still goes through.
function heartbeat() {
  const client = makeClient({ heartbeatIncoming: spec.heartbeatMs, heartbeatOutgoing: spec.heartbeatMs });
  let closed = null;
  client.onWebSocketClose = (event) => { closed = event.code; };
  client.onConnect = (frame) => {
    setTimeout(() => {
      if (closed !== null) {
        finish({ error: `closed during the hold: ${closed}`, log: debugLog.slice(-20) }, 1);
        return;
      }
      client.subscribe('/queue/beat', (message) => {
        const pongs = debugLog.filter((line) => line === '<<< PONG').length;
        const pings = debugLog.filter((line) => line === '>>> PING').length;
        client.deactivate().then(() =>
          finish({ version: frame.headers.version, heartBeat: frame.headers['heart-beat'], pongs, pings, body: message.body }));
      });
      client.publish({ destination: '/queue/beat', body: 'still here' });
    }, spec.holdMs);
  };
  client.activate();
}

// A bare handshake: what status or subprotocol the broker answers.
function probe() {
  const socket = new NodeWebSocket(spec.url, spec.protocols ?? []);
  socket.on('unexpected-response', (request, response) => {
    let body = '';
    response.on('data', (chunk) => { body += chunk; });
    response.on('end', () => finish({ status: response.statusCode, body }));
  });
  socket.on('open', () => {
    const protocol = socket.protocol;
    socket.on('close', (code) => finish({ status: 101, protocol, closeCode: code }));
    socket.close(1000);
  });
  socket.on('error', (error) => {
    if (!String(error.message).includes('Unexpected server response')) {
      finish({ error: String(error.message) }, 1);
    }
  });
}

// A consumer subscribes on spec.port; once its SUBSCRIBE is receipted, a producer on
// spec.sendPort sends spec.count persistent messages; done when the consumer has them all.
function relay() {
  const received = [];
  const consumer = makeClient({});
  const producer = makeClient({ port: spec.sendPort });
  consumer.onConnect = () => {
    consumer.watchForReceipt('sub', () => producer.activate());
    consumer.subscribe(
      '/queue/jsc',
      (message) => {
        received.push(describe(message));
        if (received.length === spec.count) {
          Promise.all([consumer.deactivate(), producer.deactivate()]).then(() =>
            finish({ received }),
          );
        }
      },
      { receipt: 'sub' },
    );
  };
  producer.onConnect = () => {
    for (let n = 0; n < spec.count; n += 1) {
      producer.publish({ destination: '/queue/jsc', body: `m${n}`, headers: { persistent: 'true' } });
    }
  };
  consumer.activate();
}

({ roundtrip, heartbeat, probe, relay })[spec.scenario]();
