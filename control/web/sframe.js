// bridgemesh end-to-end encryption: the frame format and the keys (docs/e2ee.md).
// Plain functions over WebCrypto, shared by the page (key derivation), the encryption worker
// (e2ee-worker.js, every frame) and node's test runner (control/web/sframe.test.js).
//
// A protected frame is   clear prefix | SFrame header (RFC 9605 §4.3: KID, CTR) | AES-GCM ciphertext + tag
// - the clear prefix is what the packetizer and the bridge read: VP8's payload header (10 bytes of
//   a keyframe, 3 of a delta frame: the frame tag, and a keyframe's start code and size), nothing
//   of an audio frame;
// - cipher suite AES_128_GCM_SHA256_128 (0x0004); per KID, key and salt as RFC 9605 §4.4.2 derives
//   them from a base key; the nonce is the salt XOR the counter (§4.4.3);
// - the associated data is the header followed by the clear prefix, so neither can be changed.
// The base key is the room secret: PBKDF2 over the passphrase with the room name as salt. A KID is
// the secret's 16-bit tag (which key) above a 32-bit sender tag each page draws at random when it
// takes a key (whose counter), so no two senders share a (key, nonce) and a new passphrase is a
// new KID.
(function (root) {
  'use strict';

  const SUITE = 0x0004; // AES_128_GCM_SHA256_128
  const KEY_BYTES = 16;
  const NONCE_BYTES = 12;
  const TAG_BYTES = 16;
  // A passphrase is guessed offline against any captured frame at this cost per guess.
  const PBKDF2_ITERATIONS = 200000;
  const VP8_KEYFRAME_CLEAR = 10;
  const VP8_DELTA_CLEAR = 3;
  const SENDER_TAG_SPACE = 2 ** 32;
  const encoder = new TextEncoder();

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  // Big-endian, as few bytes as hold `value` (at least one); `value` is a safe integer >= 0.
  function minimalBytes(value) {
    const bytes = [];
    let v = value;
    do {
      bytes.unshift(v % 256);
      v = Math.floor(v / 256);
    } while (v > 0);
    return Uint8Array.from(bytes);
  }

  function fixedBytes(value, length) {
    const out = new Uint8Array(length);
    let v = value;
    for (let i = length - 1; i >= 0 && v > 0; i--) {
      out[i] = v % 256;
      v = Math.floor(v / 256);
    }
    return out;
  }

  function checkValue(name, value) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a safe integer >= 0, not ${value}`);
  }

  // RFC 9605 §4.3: |X|  K  |Y|  C  | then the KID bytes when X, then the CTR bytes when Y.
  function encodeHeader(kid, ctr) {
    checkValue('KID', kid);
    checkValue('CTR', ctr);
    let first = 0;
    let kidBytes = new Uint8Array(0);
    let ctrBytes = new Uint8Array(0);
    if (kid < 8) first |= kid << 4;
    else {
      kidBytes = minimalBytes(kid);
      first |= 0x80 | ((kidBytes.length - 1) << 4);
    }
    if (ctr < 8) first |= ctr;
    else {
      ctrBytes = minimalBytes(ctr);
      first |= 0x08 | (ctrBytes.length - 1);
    }
    return concat(Uint8Array.of(first), kidBytes, ctrBytes);
  }

  function readValue(bytes, at, length) {
    let v = 0;
    for (let i = 0; i < length; i++) v = v * 256 + bytes[at + i];
    return v;
  }

  // The header at `offset`: { kid, ctr, end } (end: offset after it), or null when the bytes
  // cannot be one (too short, or values past what this client sends: over 2^53).
  function decodeHeader(bytes, offset = 0) {
    if (offset >= bytes.length) return null;
    const first = bytes[offset];
    let at = offset + 1;
    let kid = (first >> 4) & 0x07;
    let ctr = first & 0x07;
    if (first & 0x80) {
      const length = kid + 1;
      if (length > 7 || at + length > bytes.length) return null;
      kid = readValue(bytes, at, length);
      at += length;
    }
    if (first & 0x08) {
      const length = ctr + 1;
      if (length > 7 || at + length > bytes.length) return null;
      ctr = readValue(bytes, at, length);
      at += length;
    }
    return { kid, ctr, end: at };
  }

  // How many leading bytes of a frame stay in the clear: for VP8 the payload header, read from the
  // frame's own first byte (its P bit is 0 on a keyframe), so sender and receiver agree without
  // being told the frame type; audio: none.
  function clearBytes(kind, data) {
    if (kind === 'audio' || data.length === 0) return 0;
    return Math.min(data.length, (data[0] & 0x01) === 0 ? VP8_KEYFRAME_CLEAR : VP8_DELTA_CLEAR);
  }

  function kidOf(keyTag, senderTag) {
    return keyTag * SENDER_TAG_SPACE + senderTag;
  }

  function keyTagOf(kid) {
    return Math.floor(kid / SENDER_TAG_SPACE);
  }

  function subtleOf(subtle) {
    return subtle || root.crypto.subtle;
  }

  // The room secret (32 bytes) and its 16-bit tag, from the passphrase and the room name.
  async function deriveRoomSecret(passphrase, room, subtle) {
    const s = subtleOf(subtle);
    if (typeof passphrase !== 'string' || passphrase.length === 0) throw new TypeError('an empty passphrase');
    const base = await s.importKey('raw', encoder.encode(passphrase.normalize('NFC')), 'PBKDF2', false, ['deriveBits']);
    const secret = new Uint8Array(await s.deriveBits(
      { name: 'PBKDF2', hash: 'SHA-256', salt: encoder.encode(`bridgemesh e2ee v1 room ${room}`), iterations: PBKDF2_ITERATIONS },
      base,
      256,
    ));
    const hkdf = await s.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
    const tagBits = new Uint8Array(await s.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: encoder.encode('bridgemesh e2ee v1 key tag') },
      hkdf,
      16,
    ));
    return { secret, keyTag: tagBits[0] * 256 + tagBits[1] };
  }

  // RFC 9605 §4.4.2 for suite 0x0004: sframe_key and sframe_salt of `kid` from `baseKey` (a
  // WebCrypto HKDF key made from the base key bytes).
  async function deriveKidKeys(baseKey, kid, subtle) {
    const s = subtleOf(subtle);
    const suffix = concat(fixedBytes(kid, 8), fixedBytes(SUITE, 2));
    const expand = (label, bytes) => s.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: concat(encoder.encode(label), suffix) },
      baseKey,
      bytes * 8,
    );
    const keyBytes = await expand('SFrame 1.0 Secret key ', KEY_BYTES);
    const salt = new Uint8Array(await expand('SFrame 1.0 Secret salt ', NONCE_BYTES));
    const key = await s.importKey('raw', keyBytes, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    return { key, salt };
  }

  async function importBaseKey(secret, subtle) {
    return subtleOf(subtle).importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  }

  function nonceOf(salt, ctr) {
    const nonce = fixedBytes(ctr, NONCE_BYTES);
    for (let i = 0; i < NONCE_BYTES; i++) nonce[i] ^= salt[i];
    return nonce;
  }

  // Protects one encoded frame (`data`: its bytes) whose first `clear` bytes stay readable.
  async function encryptFrame(keys, kid, ctr, data, clear, subtle) {
    const header = encodeHeader(kid, ctr);
    const prefix = data.subarray(0, clear);
    const sealed = new Uint8Array(await subtleOf(subtle).encrypt(
      { name: 'AES-GCM', iv: nonceOf(keys.salt, ctr), additionalData: concat(header, prefix), tagLength: TAG_BYTES * 8 },
      keys.key,
      data.subarray(clear),
    ));
    return concat(prefix, header, sealed);
  }

  // The frame's header, after its `clear` bytes: { kid, ctr, end }, or null when there is none.
  function parseFrame(data, clear) {
    const header = decodeHeader(data, clear);
    if (!header || data.length - header.end < TAG_BYTES) return null;
    return header;
  }

  // The plaintext frame, or a rejected promise when the keys are not the sender's or the frame
  // was changed on the way.
  async function decryptFrame(keys, data, clear, header, subtle) {
    const opened = new Uint8Array(await subtleOf(subtle).decrypt(
      {
        name: 'AES-GCM',
        iv: nonceOf(keys.salt, header.ctr),
        additionalData: concat(data.subarray(clear, header.end), data.subarray(0, clear)),
        tagLength: TAG_BYTES * 8,
      },
      keys.key,
      data.subarray(header.end),
    ));
    return concat(data.subarray(0, clear), opened);
  }

  const api = {
    SUITE,
    TAG_BYTES,
    PBKDF2_ITERATIONS,
    SENDER_TAG_SPACE,
    encodeHeader,
    decodeHeader,
    clearBytes,
    kidOf,
    keyTagOf,
    deriveRoomSecret,
    importBaseKey,
    deriveKidKeys,
    nonceOf,
    encryptFrame,
    parseFrame,
    decryptFrame,
  };
  root.bridgemeshSFrame = api;
  if (typeof module === 'object' && module.exports) module.exports = api;
}(typeof self !== 'undefined' ? self : globalThis));
