// Runs the web console's STOMP frame code (stompbroker/console/stomp.js) in Node, for
// tests/interop/test_console.py: parses a byte stream fed whole, one byte at a time, and with an
// incomplete frame left over, and encodes frames. Prints one JSON line of what came out.
//
// Usage: node console_frames.mjs '<JSON spec>' with spec = {source: path of stomp.js, stream:
// [byte, ...], tail: [byte, ...] (an incomplete frame), encode: [[command, headers, body], ...]}.
import { readFileSync } from 'node:fs';

const spec = JSON.parse(process.argv[2]);
// stomp.js is an ES module served to browsers; no package.json beside it says so to Node.
const source = readFileSync(spec.source, 'utf-8');
const { FrameParser, encodeFrame, bodyText } = await import(
  `data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);

const shown = (frames) => frames.map((f) => ({
  command: f.command, headers: f.headers, body: Array.from(f.body), text: bodyText(f.body),
}));

function whole(bytes) {
  return shown(new FrameParser().push(Uint8Array.from(bytes)));
}

function byteByByte(bytes) {
  const parser = new FrameParser();
  const frames = [];
  for (const byte of bytes) frames.push(...parser.push(Uint8Array.of(byte)));
  return shown(frames);
}

function withTail(bytes, tail) {
  const parser = new FrameParser();
  const frames = parser.push(Uint8Array.from([...bytes, ...tail]));
  return { frames: shown(frames), left: Array.from(parser.buffer) };
}

const encoded = spec.encode.map(([command, headers, body]) =>
  Array.from(encodeFrame(command, headers, new TextEncoder().encode(body))));

console.log(JSON.stringify({
  whole: whole(spec.stream),
  byteByByte: byteByByte(spec.stream),
  withTail: withTail(spec.stream, spec.tail),
  encoded,
}));
