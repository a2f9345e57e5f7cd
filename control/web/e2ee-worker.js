// bridgemesh end-to-end encryption worker: encrypts every frame the page sends and decrypts every
// frame it receives (docs/e2ee.md). One worker per page; e2ee.js gives it the room's state and key
// and the encoded streams, by RTCRtpScriptTransform or, where only Chromium's older API exists,
// by transferring the streams of createEncodedStreams().
'use strict';

importScripts('/sframe.js');

const S = self.bridgemeshSFrame;
const KID_KEYS_MAX = 64; // derived (key, salt) pairs kept: one per sender and key in the room
const KEYS_MAX = 2; // the current key and the one before it, for frames still in flight at a rekey
const SAMPLES_MAX = 128;
const SAMPLE_BYTES = 16;
const REPORT_MS = 250;

const state = {
  required: false,
  // keyTag -> HKDF base key; `sending` is the current one.
  keys: new Map(),
  sending: null, // { keyTag, kid, ctr }
  kidKeys: new Map(), // kid -> Promise<{ key, salt }>
  recordSamples: false,
};
// Per transform id: what happened to its frames, reported to the page.
const streams = new Map();
// Test hook: the latest video frames sent (their plaintext and ciphertext) and received (as the
// bridge forwarded them), by KID and CTR, so a test can compare what left one page with what
// reached another.
const samples = { sent: [], received: [] };

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function keysOf(kid) {
  let keys = state.kidKeys.get(kid);
  if (!keys) {
    const base = state.keys.get(S.keyTagOf(kid));
    if (!base) return null;
    if (state.kidKeys.size >= KID_KEYS_MAX) state.kidKeys.delete(state.kidKeys.keys().next().value);
    keys = S.deriveKidKeys(base, kid);
    state.kidKeys.set(kid, keys);
  }
  return keys;
}

function remember(list, entry) {
  list.push(entry);
  if (list.length > SAMPLES_MAX) list.shift();
}

function report(stream, now) {
  if (now - stream.reportedAt < REPORT_MS) return;
  stream.reportedAt = now;
  const { id, kind, direction, frames, encrypted, decrypted, failed, dropped, reason } = stream;
  self.postMessage({ type: 'stats', id, kind, direction, frames, encrypted, decrypted, failed, dropped, reason });
}

// The clear prefix is specified for VP8 only (sframe.js); another video codec is not sent rather
// than sent in a form its packetizer or receiver might misread.
function unsupportedCodec(stream, frame) {
  if (stream.kind !== 'video' || typeof frame.getMetadata !== 'function') return false;
  const mime = frame.getMetadata().mimeType;
  return typeof mime === 'string' && mime.toLowerCase() !== 'video/vp8';
}

async function encrypt(stream, frame, controller) {
  stream.frames++;
  if (!state.required) {
    controller.enqueue(frame);
    return;
  }
  if (unsupportedCodec(stream, frame)) {
    stream.dropped++;
    stream.reason = 'unsupported_codec';
    return;
  }
  const sending = state.sending;
  if (!sending) {
    // Required but no key yet: nothing leaves in the clear.
    stream.dropped++;
    stream.reason = 'missing_key';
    return;
  }
  const data = new Uint8Array(frame.data);
  const clear = S.clearBytes(stream.kind, data);
  const ctr = sending.ctr++;
  const out = await S.encryptFrame(await keysOf(sending.kid), sending.kid, ctr, data, clear);
  if (state.recordSamples && stream.kind === 'video') {
    const header = S.encodeHeader(sending.kid, ctr).length;
    remember(samples.sent, {
      kid: sending.kid,
      ctr,
      length: out.length,
      plain: hex(data.subarray(clear, clear + SAMPLE_BYTES)),
      sealed: hex(out.subarray(clear + header, clear + header + SAMPLE_BYTES)),
    });
  }
  frame.data = out.buffer;
  stream.encrypted++;
  controller.enqueue(frame);
}

async function decrypt(stream, frame, controller) {
  stream.frames++;
  if (!state.required) {
    controller.enqueue(frame);
    return;
  }
  const data = new Uint8Array(frame.data);
  const clear = S.clearBytes(stream.kind, data);
  const header = S.parseFrame(data, clear);
  if (state.recordSamples && stream.kind === 'video' && header) {
    remember(samples.received, {
      kid: header.kid,
      ctr: header.ctr,
      length: data.length,
      sealed: hex(data.subarray(header.end, header.end + SAMPLE_BYTES)),
    });
  }
  const fail = (reason) => {
    stream.failed++;
    stream.reason = reason;
  };
  if (state.keys.size === 0) return fail('missing_key');
  if (unsupportedCodec(stream, frame)) return fail('unsupported_codec');
  if (!header) return fail('not_encrypted');
  const keys = keysOf(header.kid);
  if (!keys) return fail('wrong_key');
  let opened;
  try {
    opened = await S.decryptFrame(await keys, data, clear, header);
  } catch {
    return fail('wrong_key');
  }
  frame.data = opened.buffer;
  stream.decrypted++;
  stream.reason = null;
  controller.enqueue(frame);
}

function attach({ id, kind, direction }, readable, writable) {
  const stream = {
    id, kind, direction, frames: 0, encrypted: 0, decrypted: 0, failed: 0, dropped: 0, reason: null, reportedAt: 0,
  };
  streams.set(id, stream);
  const step = direction === 'send' ? encrypt : decrypt;
  const transform = new TransformStream({
    async transform(frame, controller) {
      try {
        await step(stream, frame, controller);
      } catch (err) {
        stream.failed++;
        stream.reason = `error: ${(err && err.name) || err}`;
      }
      report(stream, performance.now());
    },
  });
  readable.pipeThrough(transform).pipeTo(writable).catch(() => {
    // The sender or receiver went away (the peer connection closed).
  }).finally(() => streams.delete(id));
}

async function setKey(secret) {
  if (!secret) {
    state.keys.clear();
    state.sending = null;
  } else {
    const keyTag = secret.keyTag;
    const base = await S.importBaseKey(secret.bytes);
    state.keys.delete(keyTag);
    state.keys.set(keyTag, base);
    while (state.keys.size > KEYS_MAX) state.keys.delete(state.keys.keys().next().value);
    const senderTag = self.crypto.getRandomValues(new Uint32Array(1))[0];
    // A fresh sender tag is a fresh (key, salt): the counter restarts at 0 without reusing a nonce.
    state.sending = { keyTag, kid: S.kidOf(keyTag, senderTag), ctr: 0 };
  }
  state.kidKeys.clear();
}

self.onmessage = (ev) => {
  const msg = ev.data || {};
  switch (msg.type) {
    case 'required': state.required = Boolean(msg.required); break;
    case 'key': setKey(msg.secret).then(() => self.postMessage({ type: 'key_set', keyTag: msg.secret ? msg.secret.keyTag : null })); break;
    case 'streams': attach(msg.options, msg.readable, msg.writable); break;
    case 'record_samples': state.recordSamples = Boolean(msg.on); break;
    case 'samples': self.postMessage({ type: 'samples', samples }); break;
    default: break;
  }
};

// RTCRtpScriptTransform: the streams arrive with the options e2ee.js gave the transform.
self.onrtctransform = (ev) => {
  const t = ev.transformer;
  attach(t.options, t.readable, t.writable);
};
