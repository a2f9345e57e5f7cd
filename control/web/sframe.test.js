// The frame format of end-to-end encryption (sframe.js), in node's test runner:
//   node --test control/web/sframe.test.js
// (run by tests/tests/e2ee_frame_format_in_node.rs).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const S = require('./sframe.js');

const hex = (bytes) => Buffer.from(bytes).toString('hex');

// A VP8 keyframe starts with a frame tag whose lowest bit (P) is 0, then 9d 01 2a and the size.
function vp8Keyframe(length) {
  const frame = new Uint8Array(Math.max(length, 10));
  frame.set([0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
  for (let i = 10; i < length; i++) frame[i] = (i * 7) & 0xff;
  return frame.subarray(0, length);
}

function vp8Delta(length) {
  const frame = new Uint8Array(length);
  frame.set([0x31, 0x07, 0x00]);
  for (let i = 3; i < length; i++) frame[i] = (i * 13) & 0xff;
  return frame;
}

test('the header is RFC 9605 section 4.3: small values in the first byte, others after it, big-endian', () => {
  assert.equal(hex(S.encodeHeader(0, 0)), '00');
  assert.equal(hex(S.encodeHeader(7, 5)), '75');
  assert.equal(hex(S.encodeHeader(8, 0)), '8008'); // X=1, one KID byte
  assert.equal(hex(S.encodeHeader(3, 8)), '3808'); // Y=1, one CTR byte
  assert.equal(hex(S.encodeHeader(0x1234, 0x010203)), '9a1234010203');
  const kid = S.kidOf(0xbeef, 0xdeadbeef);
  assert.equal(hex(S.encodeHeader(kid, 300)), 'd9beefdeadbeef012c'); // 6 KID bytes, 2 CTR bytes
  for (const [k, c] of [[0, 0], [7, 7], [8, 8], [255, 256], [kid, 2 ** 40 + 3], [Number.MAX_SAFE_INTEGER, 1]]) {
    const h = S.encodeHeader(k, c);
    assert.deepEqual(S.decodeHeader(h), { kid: k, ctr: c, end: h.length }, `${k}/${c}`);
  }
  assert.throws(() => S.encodeHeader(-1, 0));
  assert.throws(() => S.encodeHeader(0, 0.5));
});

test('a truncated or oversized header is refused', () => {
  const h = S.encodeHeader(S.kidOf(1, 2), 1000);
  for (let n = 0; n < h.length; n++) assert.equal(S.decodeHeader(h.subarray(0, n)), null, `first ${n} bytes`);
  assert.equal(S.decodeHeader(Uint8Array.of(0xf8, 1, 2, 3, 4, 5, 6, 7, 8, 9)), null, 'an 8-byte KID is past 2^53');
  assert.equal(S.decodeHeader(new Uint8Array(0)), null);
});

test('VP8 keeps its payload header in the clear (10 bytes of a keyframe, 3 of a delta frame); audio keeps nothing', () => {
  assert.equal(S.clearBytes('video', vp8Keyframe(100)), 10);
  assert.equal(S.clearBytes('video', vp8Delta(100)), 3);
  assert.equal(S.clearBytes('video', vp8Keyframe(6)), 6);
  assert.equal(S.clearBytes('video', new Uint8Array(0)), 0);
  assert.equal(S.clearBytes('audio', vp8Keyframe(100)), 0);
});

test('a frame round-trips; its clear prefix is untouched and the rest is ciphertext', async () => {
  const { secret, keyTag } = await S.deriveRoomSecret('correct horse battery', 'standup');
  assert.equal(secret.length, 32);
  assert.ok(keyTag >= 0 && keyTag < 65536);
  const base = await S.importBaseKey(secret);
  const kid = S.kidOf(keyTag, 0x01020304);
  assert.equal(S.keyTagOf(kid), keyTag);
  const keys = await S.deriveKidKeys(base, kid);

  for (const [kind, frame] of [['video', vp8Keyframe(1200)], ['video', vp8Delta(300)], ['audio', vp8Delta(80)]]) {
    const clear = S.clearBytes(kind, frame);
    const sealed = await S.encryptFrame(keys, kid, 42, frame, clear);
    assert.equal(hex(sealed.subarray(0, clear)), hex(frame.subarray(0, clear)), 'the prefix is in the clear');
    assert.equal(S.clearBytes(kind, sealed), clear, 'the receiver finds the same prefix');
    const header = S.parseFrame(sealed, clear);
    assert.equal(header.kid, kid);
    assert.equal(header.ctr, 42);
    assert.equal(sealed.length, frame.length + (header.end - clear) + S.TAG_BYTES);
    const body = sealed.subarray(header.end, header.end + frame.length - clear);
    assert.notEqual(hex(body), hex(frame.subarray(clear)), 'the body is not the plaintext');
    const opened = await S.decryptFrame(keys, sealed, clear, header);
    assert.equal(hex(opened), hex(frame));
  }
});

test('changed bytes, the clear prefix included, and other keys do not decrypt', async () => {
  const room = await S.deriveRoomSecret('correct horse battery', 'standup');
  const keys = await S.deriveKidKeys(await S.importBaseKey(room.secret), S.kidOf(room.keyTag, 9));
  const frame = vp8Keyframe(500);
  const sealed = await S.encryptFrame(keys, S.kidOf(room.keyTag, 9), 1, frame, 10);
  const header = S.parseFrame(sealed, 10);
  for (const at of [0, 5, 9, header.end - 1, header.end + 3, sealed.length - 1]) {
    const changed = sealed.slice();
    changed[at] ^= 0x01;
    const h = S.parseFrame(changed, 10);
    if (!h) continue; // a changed header that no longer parses is refused earlier
    await assert.rejects(S.decryptFrame(keys, changed, 10, h), `byte ${at} changed`);
  }
  // Another counter is another nonce.
  await assert.rejects(S.decryptFrame(keys, sealed, 10, { ...header, ctr: 2 }));

  const wrong = await S.deriveRoomSecret('correct horse battery!', 'standup');
  assert.notEqual(hex(wrong.secret), hex(room.secret));
  const wrongKeys = await S.deriveKidKeys(await S.importBaseKey(wrong.secret), S.kidOf(room.keyTag, 9));
  await assert.rejects(S.decryptFrame(wrongKeys, sealed, 10, header), 'a wrong passphrase');

  const otherRoom = await S.deriveRoomSecret('correct horse battery', 'standup2');
  assert.notEqual(hex(otherRoom.secret), hex(room.secret), 'the room name salts the passphrase');
});

test('each KID has its own key and salt, so two senders never share a nonce', async () => {
  const { secret, keyTag } = await S.deriveRoomSecret('a shared passphrase', 'r');
  const base = await S.importBaseKey(secret);
  const a = await S.deriveKidKeys(base, S.kidOf(keyTag, 1));
  const b = await S.deriveKidKeys(base, S.kidOf(keyTag, 2));
  assert.notEqual(hex(a.salt), hex(b.salt));
  assert.notEqual(hex(S.nonceOf(a.salt, 7)), hex(S.nonceOf(b.salt, 7)));
  // The nonce is the salt XOR the counter, right-aligned.
  const n = S.nonceOf(new Uint8Array(12), 0x0102);
  assert.equal(hex(n), '000000000000000000000102');
  const frame = vp8Delta(64);
  const fromB = await S.encryptFrame(b, S.kidOf(keyTag, 2), 0, frame, 3);
  await assert.rejects(S.decryptFrame(a, fromB, 3, S.parseFrame(fromB, 3)), "A's key does not open B's frame");
});
