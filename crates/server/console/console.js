// The Sealtrail web console: one ES module, no build step, no dependencies.
//
// The first half is the verifier: the canonical encoding of docs/FORMAT.md, RFC 6962 inclusion
// and consistency proofs, and C2SP signed notes (docs/MERKLE.md), all checked here with
// WebCrypto, so the browser trusts the verifier key and nothing else the server says. The second
// half is the single-page app. Everything the server returns is untrusted text: it reaches the
// page through textContent and attributes only, never as HTML.

// ---------------------------------------------------------------------------------------------
// Bytes and encodings

const encoder = new TextEncoder();
export const utf8 = (text) => encoder.encode(text);

export function hexToBytes(hex) {
  if (typeof hex !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(hex)) {
    throw new Error('not lowercase hex');
  }
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

export const bytesToHex = (bytes) =>
  Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');

export function bytesToBase64(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Standard padded base64, canonical only (MERKLE.md: no missing padding, no stray bits). */
export function base64ToBytes(text) {
  if (typeof text !== 'string' || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new Error('not padded base64');
  }
  const binary = atob(text);
  const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
  if (bytesToBase64(bytes) !== text) throw new Error('not canonical base64');
  return bytes;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function equalBytes(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function subtle() {
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    throw new Error('this page is not a secure context (HTTPS or localhost), so the browser offers no WebCrypto to verify with');
  }
  return globalThis.crypto.subtle;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest('SHA-256', bytes));
}

// ---------------------------------------------------------------------------------------------
// JSON that keeps every number as written (FORMAT.md "Numbers": 1 and 1.0 differ, and integers
// reach 2^64 - 1, beyond what a JavaScript number holds).

export class JsonNumber {
  constructor(text) {
    this.text = text;
  }
  valueOf() {
    return Number(this.text);
  }
  toString() {
    return this.text;
  }
}

const NUMBER_TOKEN = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const STRING_TOKEN = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

/** Parses JSON text; numbers become JsonNumber, objects have no prototype. */
export function parseLossless(text) {
  let at = 0;
  const fail = (what) => {
    throw new SyntaxError(`JSON: ${what} at offset ${at}`);
  };
  const space = () => {
    while (at < text.length && ' \t\n\r'.includes(text[at])) at++;
  };
  const token = (pattern) => {
    pattern.lastIndex = at;
    const match = pattern.exec(text);
    if (!match) fail('unexpected character');
    at = pattern.lastIndex;
    return match[0];
  };
  const value = () => {
    space();
    const char = text[at];
    if (char === '{') {
      at++;
      const object = Object.create(null);
      space();
      if (text[at] === '}') {
        at++;
        return object;
      }
      for (;;) {
        space();
        const key = JSON.parse(token(STRING_TOKEN));
        space();
        if (text[at++] !== ':') fail('expected ":"');
        object[key] = value();
        space();
        const next = text[at++];
        if (next === '}') return object;
        if (next !== ',') fail('expected "," or "}"');
      }
    }
    if (char === '[') {
      at++;
      const array = [];
      space();
      if (text[at] === ']') {
        at++;
        return array;
      }
      for (;;) {
        array.push(value());
        space();
        const next = text[at++];
        if (next === ']') return array;
        if (next !== ',') fail('expected "," or "]"');
      }
    }
    if (char === '"') return JSON.parse(token(STRING_TOKEN));
    for (const [word, literal] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return literal;
      }
    }
    return new JsonNumber(token(NUMBER_TOKEN));
  };
  const result = value();
  space();
  if (at !== text.length) fail('text after the value');
  return result;
}

/** A double as FORMAT.md prints it: shortest round-trip digits, fixed for 1e-5 <= |x| < 1e16. */
export function doubleText(x) {
  if (!Number.isFinite(x)) throw new Error('a number too large for a double');
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  // toExponential() without an argument gives the shortest digits that round-trip.
  const [mantissa, exponent] = Math.abs(x).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const e = Number(exponent);
  const n = digits.length;
  let body;
  if (e >= -5 && e <= 15) {
    if (n <= e + 1) body = digits + '0'.repeat(e + 1 - n) + '.0';
    else if (e >= 0) body = `${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
    else body = `0.${'0'.repeat(-e - 1)}${digits}`;
  } else {
    body = digits[0] + (n > 1 ? `.${digits.slice(1)}` : '') + 'e' + (e > 0 ? '+' : '-') + Math.abs(e);
  }
  return sign + body;
}

function numberText(text) {
  if (!/[.eE]/.test(text)) {
    if (text === '-0') return '-0.0';
    const value = BigInt(text);
    if (value < -(2n ** 63n) || value > 2n ** 64n - 1n) throw new Error(`integer ${text} is out of range`);
    return value.toString();
  }
  return doubleText(Number(text));
}

function compareUtf8(a, b) {
  const x = utf8(a);
  const y = utf8(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/** Canonical JSON text (FORMAT.md): compact, keys in UTF-8 byte order, numbers as written. */
export function canonicalText(value) {
  if (value === null) return 'null';
  if (value === true) return 'true';
  if (value === false) return 'false';
  if (value instanceof JsonNumber) return numberText(value.text);
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : doubleText(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalText).join(',')}]`;
  const keys = Object.keys(value).sort(compareUtf8);
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalText(value[key])}`).join(',')}}`;
}

const TIMESTAMP =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})$/;

/** Nanoseconds since the epoch of an RFC 3339 instant, as a BigInt. */
export function timestampNanos(text) {
  const m = TIMESTAMP.exec(text);
  if (!m) throw new Error(`not an RFC 3339 timestamp: ${text}`);
  const date = new Date(0);
  date.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  date.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]), 0);
  let seconds = BigInt(date.getTime() / 1000);
  if (m[8] !== 'Z' && m[8] !== 'z') {
    const minutes = Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6));
    seconds -= BigInt((m[8][0] === '-' ? -1 : 1) * minutes * 60);
  }
  return seconds * 1_000_000_000n + BigInt((m[7] || '').padEnd(9, '0'));
}

const bigint = (value) => BigInt(value instanceof JsonNumber ? value.text : value);

function u64(value) {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value);
  return bytes;
}

function i64(value) {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigInt64(0, value);
  return bytes;
}

function str(text) {
  if (typeof text !== 'string') throw new Error('a required field is missing');
  const bytes = utf8(text);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, bytes.length);
  return concat(length, bytes);
}

const opt = (text) => (text == null ? new Uint8Array([0]) : concat(new Uint8Array([1]), str(text)));
const optJson = (value) => opt(value == null ? null : canonicalText(value));

/**
 * FORMAT.md "Canonical encoding", version 1, or version 2 for an event with protected fields
 * (its `sealed` member): each protected field is then 0x02 and its 32-byte commitment, whatever
 * its state (open, withheld, erased), so the hash needs neither its plaintext nor its key.
 */
export function canonicalBytes(event) {
  const sealed = event.sealed && typeof event.sealed === 'object' ? event.sealed : {};
  const v2 = Object.keys(sealed).length > 0;
  const field = (name, encoded) => (name in sealed
    ? concat(new Uint8Array([2]), hexToBytes(sealed[name].commitment))
    : encoded(event[name]));
  return concat(
    utf8(v2 ? 'sealtrail.event.v2\n' : 'sealtrail.event.v1\n'),
    u64(bigint(event.seq)),
    hexToBytes(event.prev_hash),
    str(event.tenant_id),
    str(event.event_id),
    i64(timestampNanos(event.timestamp)),
    i64(timestampNanos(event.received_at)),
    str(event.actor_id),
    str(event.actor_type),
    str(event.action),
    str(event.resource_type),
    opt(event.resource_id),
    str(event.outcome),
    field('ip_address', opt),
    field('user_agent', opt),
    opt(event.request_id),
    field('changes', optJson),
    field('metadata', optJson),
  );
}

/** SHA-256(0x00 || data): the RFC 6962 leaf hash, which is the event's event_hash. */
export const leafHash = async (data) => sha256(concat(new Uint8Array([0]), data));
export const nodeHash = async (left, right) => sha256(concat(new Uint8Array([1]), left, right));
export const eventHash = async (event) => leafHash(canonicalBytes(event));

// ---------------------------------------------------------------------------------------------
// Merkle proofs (MERKLE.md, RFC 9162 section 2.1.3.2 and 2.1.4.2). Sizes are BigInts.

const bitLength = (x) => (x === 0n ? 0 : x.toString(2).length);
const onesCount = (x) => [...x.toString(2)].filter((bit) => bit === '1').length;

/** The root an inclusion proof leads to, or an Error naming what is wrong with it. */
export async function rootFromInclusion(leaf, leafIndex, treeSize, hashes) {
  const index = BigInt(leafIndex);
  const size = BigInt(treeSize);
  if (size === 0n || index >= size) throw new Error(`leaf ${index} is not in a tree of ${size}`);
  const inner = bitLength(index ^ (size - 1n));
  const border = onesCount(index >> BigInt(inner));
  if (hashes.length !== inner + border) {
    throw new Error(`the proof has ${hashes.length} hashes; a leaf at ${index} of ${size} needs ${inner + border}`);
  }
  let root = leaf;
  for (let j = 0; j < inner; j++) {
    root = ((index >> BigInt(j)) & 1n) === 0n ? await nodeHash(root, hashes[j]) : await nodeHash(hashes[j], root);
  }
  for (const hash of hashes.slice(inner)) root = await nodeHash(hash, root);
  return root;
}

/** Whether `hashes` proves the tree of `first` leaves is a prefix of the tree of `second`. */
export async function verifyConsistency(first, second, firstRoot, secondRoot, hashes) {
  const m = BigInt(first);
  const n = BigInt(second);
  if (m > n) return false;
  if (m === 0n) return hashes.length === 0 && equalBytes(firstRoot, await sha256(new Uint8Array()));
  if (m === n) return hashes.length === 0 && equalBytes(firstRoot, secondRoot);
  let level = 0n;
  while (((m >> level) & 1n) === 0n) level++;
  const index = (m - 1n) >> level;
  const inner = bitLength(index ^ ((n - 1n) >> level));
  const border = onesCount(index >> BigInt(inner));
  const powerOfTwo = (m & (m - 1n)) === 0n;
  const rest = [...hashes];
  if (rest.length !== inner + border + (powerOfTwo ? 0 : 1)) return false;
  const start = powerOfTwo ? firstRoot : rest.shift();
  let fr = start;
  let sr = start;
  for (let j = 0; j < inner; j++) {
    const hash = rest.shift();
    if (((index >> BigInt(j)) & 1n) === 1n) {
      fr = await nodeHash(hash, fr);
      sr = await nodeHash(hash, sr);
    } else {
      sr = await nodeHash(sr, hash);
    }
  }
  for (const hash of rest) {
    fr = await nodeHash(hash, fr);
    sr = await nodeHash(hash, sr);
  }
  return equalBytes(fr, firstRoot) && equalBytes(sr, secondRoot);
}

// ---------------------------------------------------------------------------------------------
// C2SP signed notes and checkpoints (MERKLE.md "Signed notes", "Checkpoints").

const keyNameOk = (name) => name.length > 0 && !/[\s+\p{Cc}]/u.test(name);

async function keyId(name, publicKey) {
  return (await sha256(concat(utf8(name), new Uint8Array([0x0a, 0x01]), publicKey))).slice(0, 4);
}

/** Parses `<name>+<key id hex>+<base64(0x01 || public key)>` and checks its key id. */
export async function parseVerifierKey(text) {
  // The name holds no '+', the key ID is 8 hex digits; the base64 key may hold '+' itself.
  const match = /^([^+]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+=*)$/.exec(text.trim());
  if (!match || !keyNameOk(match[1])) throw new Error('the verifier key is not <name>+<key id>+<key>');
  const [, name, id] = match;
  const material = base64ToBytes(match[3]);
  if (material.length !== 33 || material[0] !== 0x01) throw new Error('the verifier key is not an Ed25519 key');
  const publicKey = material.slice(1);
  if (bytesToHex(await keyId(name, publicKey)) !== id) throw new Error('the verifier key ID does not match its key');
  return { name, id, publicKey, text: text.trim() };
}

const NOTE_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
const SIGNATURE_LINE = /^\u2014 (\S+) ([A-Za-z0-9+/]+=*)$/;

/** Opens a signed note with `key`: returns its body, or throws saying why it is refused. */
export async function openNote(text, key) {
  if (NOTE_CONTROL.test(text)) throw new Error('the note holds control characters');
  if (!text.endsWith('\n')) throw new Error('the note does not end in a newline');
  const split = text.lastIndexOf('\n\n');
  if (split < 0) throw new Error('the note has no signature block');
  const body = text.slice(0, split + 1);
  const lines = text.slice(split + 2, -1).split('\n');
  if (lines.length > 100) throw new Error('the note has more than 100 signatures');
  let verified = false;
  for (const line of lines) {
    const match = SIGNATURE_LINE.exec(line);
    if (!match || !keyNameOk(match[1])) throw new Error(`malformed signature line: ${line}`);
    const signature = base64ToBytes(match[2]);
    if (signature.length < 5) throw new Error('a signature is too short');
    if (match[1] !== key.name || bytesToHex(signature.slice(0, 4)) !== key.id) continue;
    const publicKey = await subtle().importKey('raw', key.publicKey, { name: 'Ed25519' }, false, ['verify']);
    const good =
      signature.length === 68 &&
      (await subtle().verify({ name: 'Ed25519' }, publicKey, signature.slice(4), utf8(body)));
    if (!good) throw new Error(`the signature of key ${key.name} does not verify`);
    verified = true;
  }
  if (!verified) throw new Error(`the note carries no signature of key ${key.name}+${key.id}`);
  return body;
}

/** Parses a checkpoint body: origin, tree size (BigInt), root hash, extension lines. */
export function parseCheckpoint(body) {
  if (!body.endsWith('\n')) throw new Error('the checkpoint does not end in a newline');
  const lines = body.slice(0, -1).split('\n');
  if (lines.length < 3) throw new Error('the checkpoint has fewer than three lines');
  const [origin, size, root, ...extensions] = lines;
  if (!origin) throw new Error('the checkpoint has an empty origin');
  if (!/^(?:0|[1-9][0-9]{0,19})$/.test(size) || BigInt(size) > 2n ** 64n - 1n) {
    throw new Error('the checkpoint tree size is not a canonical number');
  }
  const rootHash = base64ToBytes(root);
  if (rootHash.length !== 32) throw new Error('the checkpoint root is not 32 bytes');
  if (extensions.some((line) => line === '')) throw new Error('the checkpoint has an empty extension line');
  return { origin, size: BigInt(size), root: rootHash, extensions };
}

// ---------------------------------------------------------------------------------------------
// The app: session, API calls, routing.

const SESSION_KEY = 'sealtrail.console.session';
const SEEN_KEY = 'sealtrail.console.seen.';
const PINNED_KEY = 'sealtrail.console.verifier-key';
// Roles that may cut a checkpoint on demand (any reader of the whole tenant).
const ADMIN_ROLES = new Set(['platform_admin', 'admin', 'security_admin']);

let session = null;
let renderCount = 0;
let cleanups = [];
const pageStates = new Map();

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function loadSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    return stored && stored.credential && stored.who ? stored : null;
  } catch {
    return null;
  }
}

function saveSession(value) {
  session = value;
  if (value) sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(SESSION_KEY);
}

/** The tenant this console reads: the credential's own, or the one the platform admin named. */
const tenant = () => (session.who.tenant_id || session.tenant || '');
const platformAdmin = () => session.who.role === 'platform_admin';

async function api(path, { method = 'GET', params, body, as = 'json', tenantParam = true, credential } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value != null && value !== '') url.searchParams.set(name, value);
  }
  // The platform admin names the tenant: in the query string, or in a JSON body.
  if (tenantParam && session && platformAdmin() && body === undefined) url.searchParams.set('tenant_id', tenant());
  const headers = { Authorization: `Bearer ${credential || session.credential}` };
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(tenantParam && session && platformAdmin() ? { ...body, tenant_id: tenant() } : body);
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body: payload, cache: 'no-store' });
  } catch (error) {
    throw new ApiError(0, `The server could not be reached (${error.message}).`);
  }
  if (!response.ok) {
    let detail = response.statusText || 'request failed';
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch {
      // Not a problem document: keep the status text.
    }
    if (response.status === 401 && !credential && session) {
      saveSession(null);
      renderLogin(`Your credential was refused (${detail}). Sign in again.`);
    }
    throw new ApiError(response.status, detail);
  }
  if (as === 'response') return response;
  if (as === 'text') return response.text();
  return response.json();
}

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  element.append(...flatten(children));
  return element;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attributes, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  element.append(...flatten(children));
  return element;
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.setAttribute('class', value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
}

function flatten(children) {
  return children.flat(Infinity).filter((child) => child != null && child !== false).map((child) =>
    child instanceof Node ? child : String(child));
}

const $ = (selector, root = document) => root.querySelector(selector);

function announce(text) {
  const status = $('#status');
  if (status) status.textContent = text;
}

function notice(kind, ...content) {
  return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : null }, ...content);
}

/** A clear message for a failed call; a 403 says which role was refused. */
function errorNotice(error, what) {
  if (error instanceof ApiError && error.status === 403) {
    return notice('error', h('strong', null, 'Not allowed. '),
      `Your credential (role ${session ? session.who.role : 'unknown'}) may not ${what}. The server said: ${error.message}`);
  }
  if (error instanceof ApiError && error.status === 404) {
    return notice('error', h('strong', null, 'Not found. '), error.message);
  }
  return notice('error', h('strong', null, 'Could not ' + what + '. '), error.message);
}

function tableWrap(label, table) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: '0' }, table);
}

function dataTable(caption, headers, rows, { numeric = [] } = {}) {
  return h('table', null,
    h('caption', null, caption),
    h('thead', null, h('tr', null, headers.map((name, i) =>
      h('th', { scope: 'col', class: numeric.includes(i) ? 'num' : null }, name)))),
    h('tbody', null, rows.map((row) => h('tr', null, row.map((cell, i) =>
      i === 0 ? h('th', { scope: 'row' }, cell) : h('td', { class: numeric.includes(i) ? 'num' : null }, cell))))));
}

/** `2026-01-15T09:30:00.25Z` → `2026-01-15 09:30:00Z` (UTC throughout the console). */
function shortTime(text) {
  if (typeof text !== 'string') return '';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(text);
  return m ? `${m[1]} ${m[2]}Z` : text;
}

function ago(milliseconds) {
  const minutes = Math.max(0, Math.round(milliseconds / 60000));
  if (minutes < 1) return 'less than a minute';
  if (minutes < 120) return `${minutes} minute${minutes === 1 ? '' : 's'}`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} hours`;
  return `${Math.round(hours / 24)} days`;
}

const compactJson = (value) => (value == null ? '' : JSON.stringify(value));
const eventLink = (event, label) => h('a', { href: `#/event/${encodeURIComponent(event.event_id)}` }, label);
const outcomeBadge = (outcome) => h('span', { class: `badge ${outcome === 'failure' ? 'bad' : 'good'}` }, outcome);

function searchHref(params) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== ''));
  return `#/search?${query}`;
}

/** Rows open their event on a click anywhere in the row; the link in the row is the keyboard path. */
function clickableRows(tbody) {
  tbody.addEventListener('click', (event) => {
    if (event.target.closest('a, button') || String(getSelection())) return;
    const link = event.target.closest('tr')?.querySelector('a[href]');
    if (link) location.hash = link.getAttribute('href');
  });
}

// ---------------------------------------------------------------------------------------------
// Shell and routing

const PAGES = {
  search: { title: 'Search', render: renderSearch },
  event: { title: 'Event', render: renderEvent },
  verify: { title: 'Verification', render: renderVerify },
  alerts: { title: 'Alerts', render: renderAlerts },
  exports: { title: 'Exports', render: renderExports },
  access: { title: 'Access trail', render: renderAccess },
  dashboard: { title: 'Dashboard', render: renderDashboard },
};

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const mark = raw.indexOf('?');
  const path = mark < 0 ? raw : raw.slice(0, mark);
  const segments = path.split('/').filter(Boolean).map((segment) => {
    try {
      return decodeURIComponent(segment);
    } catch {
      return segment;
    }
  });
  return {
    name: segments[0] || 'search',
    args: segments.slice(1),
    params: new URLSearchParams(mark < 0 ? '' : raw.slice(mark + 1)),
  };
}

function markReady(main, name) {
  main.dataset.ready = '1';
  document.documentElement.dataset.ready = '1';
  performance.mark(`sealtrail-ready:${name}`);
}

function showShell(loggedIn) {
  $('#nav').hidden = !loggedIn;
  const who = $('#who');
  who.hidden = !loggedIn;
  who.replaceChildren();
  if (!loggedIn) return;
  const { who: identity } = session;
  who.append(
    h('span', { class: 'identity' },
      h('span', { class: 'tenant', title: 'Tenant' }, tenant() || 'no tenant'),
      ' · ', h('span', { class: 'role', title: 'Role' }, identity.role),
      identity.actor_id ? [' · ', h('span', { title: 'Actor' }, identity.actor_id)] : null),
    h('button', { type: 'button', class: 'secondary', id: 'logout', onclick: logout }, 'Log out'));
}

function logout() {
  saveSession(null);
  pageStates.clear();
  history.replaceState(null, '', location.pathname);
  renderLogin('You are logged out.');
}

async function route({ focus = true } = {}) {
  for (const cleanup of cleanups.splice(0)) cleanup();
  if (!session) return renderLogin();
  const { name, args, params } = parseRoute();
  const page = PAGES[name];
  const main = $('#main');
  const token = ++renderCount;
  main.replaceChildren();
  main.dataset.ready = '0';
  main.dataset.page = page ? name : 'not-found';
  delete main.dataset.state;
  delete document.documentElement.dataset.ready;
  showShell(true);
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.route === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${page ? page.title : 'Not found'} · Sealtrail console`;
  const context = { main, args, params, alive: () => token === renderCount, name };
  if (focus) queueMicrotask(() => main.focus({ preventScroll: false }));
  if (!page) {
    main.append(h('h1', null, 'Not found'), notice('error', `There is no page “${name}”.`));
    return markReady(main, 'not-found');
  }
  try {
    await page.render(context);
  } catch (error) {
    if (!context.alive()) return;
    main.dataset.state = 'error';
    main.append(errorNotice(error, `show this page`));
    announce(`Error: ${error.message}`);
  }
  if (context.alive()) markReady(main, name);
}

// ---------------------------------------------------------------------------------------------
// Login

function renderLogin(message) {
  for (const cleanup of cleanups.splice(0)) cleanup();
  renderCount++;
  showShell(false);
  const main = $('#main');
  main.dataset.page = 'login';
  main.replaceChildren();
  document.title = 'Sign in · Sealtrail console';
  const status = h('div', { id: 'login-status', 'aria-live': 'polite' });
  if (message) status.append(notice('info', message));
  const form = h('form', { class: 'card login', id: 'login-form', novalidate: true },
    h('h1', null, 'Sign in to the Sealtrail console'),
    h('p', null, 'Paste an API key of your tenant (or a viewer token). It is kept in this browser tab only, and sent to the server with each request.'),
    field('API key', h('input', { id: 'login-key', name: 'key', type: 'password', required: true, autocomplete: 'off', spellcheck: 'false' })),
    field('Tenant ID', h('input', { id: 'login-tenant', name: 'tenant', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'login-tenant-help' }),
      h('small', { id: 'login-tenant-help' }, 'Only for the platform-admin token, which may read any tenant. Leave empty for a tenant key.')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
    status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const credential = form.key.value.trim();
    const tenantId = form.tenant.value.trim();
    status.replaceChildren();
    if (!credential) {
      status.append(notice('error', 'Enter an API key.'));
      form.key.focus();
      return;
    }
    status.append(notice('info', 'Checking the key…'));
    try {
      const who = await whoami(credential);
      if (!who.tenant_id && !tenantId) {
        status.replaceChildren(notice('error', 'This is the platform-admin token: enter the tenant to read.'));
        form.tenant.focus();
        return;
      }
      saveSession({ credential, tenant: who.tenant_id || tenantId, who });
      if (!parseRoute().name || location.hash === '' || location.hash === '#') location.hash = '#/search';
      else route();
    } catch (error) {
      status.replaceChildren(error instanceof ApiError && error.status === 401
        ? notice('error', h('strong', null, 'The key was refused. '), error.message)
        : errorNotice(error, 'check the key'));
      form.key.focus();
    }
  });
  main.append(form);
  markReady(main, 'login');
  $('#login-key').focus();
}

function field(label, control, ...help) {
  const id = control.id || `field-${Math.random().toString(36).slice(2)}`;
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, help);
}

/** Who the credential speaks for: tenant, role, actor (GET /v1/whoami). */
const whoami = (credential) => api('/v1/whoami', { credential, tenantParam: false });

// ---------------------------------------------------------------------------------------------
// Paged lists (search, alerts, access trail): Next and Previous over a stack of cursors.

async function pagedList(context, { key, label, fetchPage, renderRows, noun }) {
  const state = pageStates.get(key) || { cursors: [null], index: 0 };
  pageStates.set(key, state);
  const region = h('div', { class: 'paged', 'aria-busy': 'true' });
  context.main.append(region);
  const load = async () => {
    region.setAttribute('aria-busy', 'true');
    announce(`Loading ${noun}…`);
    let page;
    try {
      page = await fetchPage(state.cursors[state.index]);
    } catch (error) {
      region.setAttribute('aria-busy', 'false');
      if (!context.alive()) return;
      region.replaceChildren(errorNotice(error, `read ${noun}`));
      context.main.dataset.state = 'error';
      announce(`Error: ${error.message}`);
      return;
    }
    if (!context.alive()) return;
    state.cursors.length = state.index + 1;
    if (page.next_cursor) state.cursors.push(page.next_cursor);
    const items = page.events || [];
    const navigation = h('nav', { class: 'pager', 'aria-label': `${label} pages` },
      h('button', { type: 'button', class: 'secondary', 'data-action': 'previous', disabled: state.index === 0,
        onclick: () => { state.index--; load().then(() => $('[data-action=previous]', region)?.focus()); } }, '← Previous'),
      h('span', { class: 'page-number' }, `Page ${state.index + 1}`),
      h('button', { type: 'button', class: 'secondary', 'data-action': 'next', disabled: !page.next_cursor,
        onclick: () => { state.index++; load().then(() => $('[data-action=next]', region)?.focus()); } }, 'Next →'));
    region.replaceChildren(
      items.length ? renderRows(items) : notice('info', `No ${noun} match.`),
      navigation);
    region.setAttribute('aria-busy', 'false');
    region.dataset.page = String(state.index + 1);
    announce(`Page ${state.index + 1}: ${items.length} ${noun}${page.next_cursor ? ', more on the next page' : ''}.`);
  };
  await load();
}

function eventsTable(events, caption, columns = ['time', 'actor', 'action', 'resource', 'outcome', 'ip']) {
  const cells = {
    time: ['Time (UTC)', (e) => eventLink(e, shortTime(e.timestamp))],
    actor: ['Actor', (e) => e.actor_id],
    action: ['Action', (e) => h('code', null, e.action)],
    resource: ['Resource', (e) => [e.resource_type, e.resource_id ? h('span', { class: 'muted' }, ` ${e.resource_id}`) : null]],
    outcome: ['Outcome', (e) => outcomeBadge(e.outcome)],
    ip: ['IP address', (e) => e.ip_address || ''],
    rule: ['Rule', (e) => e.resource_id || ''],
    group: ['Group', (e) => (typeof e.metadata?.group === 'string' ? e.metadata.group : compactJson(e.metadata?.group))],
    value: ['Value / limit', (e) => `${e.metadata?.value ?? ''} / ${e.metadata?.limit ?? ''}`],
    seq: ['Seq', (e) => String(e.seq)],
  };
  const tbody = h('tbody', null, events.map((event) =>
    h('tr', { class: 'clickable', 'data-event-id': event.event_id, 'data-seq': event.seq },
      columns.map((column) => h('td', null, cells[column][1](event))))));
  clickableRows(tbody);
  return tableWrap(caption, h('table', { class: 'events' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', null, h('tr', null, columns.map((column) => h('th', { scope: 'col' }, cells[column][0])))),
    tbody));
}

// ---------------------------------------------------------------------------------------------
// Search

const TEXT_FILTERS = [
  ['actor_id', 'Actor ID'],
  ['action', 'Action'],
  ['resource_type', 'Resource type'],
  ['resource_id', 'Resource ID'],
  ['request_id', 'Request ID'],
];

/** RFC 3339 → the value of a datetime-local input (the browser's local time). */
function toLocalInput(text) {
  const date = new Date(text);
  if (!text || Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function fromLocalInput(value) {
  if (!value) return '';
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

async function renderSearch(context) {
  const { main, params } = context;
  const select = (name, label, options, current) => field(label,
    h('select', { id: `f-${name}`, name },
      options.map(([value, text]) => h('option', { value, selected: value === current }, text))));
  const form = h('form', { class: 'card filters', role: 'search', 'aria-label': 'Event filters' },
    h('div', { class: 'grid' },
      TEXT_FILTERS.map(([name, label]) => field(label,
        h('input', { id: `f-${name}`, name, value: params.get(name) || '', autocomplete: 'off', spellcheck: 'false' }))),
      select('outcome', 'Outcome', [['', 'Any'], ['success', 'Success'], ['failure', 'Failure']], params.get('outcome') || ''),
      field('From', h('input', { id: 'f-from', name: 'from', type: 'datetime-local', step: '1', value: toLocalInput(params.get('from')), 'aria-describedby': 'time-help' })),
      field('To', h('input', { id: 'f-to', name: 'to', type: 'datetime-local', step: '1', value: toLocalInput(params.get('to')), 'aria-describedby': 'time-help' })),
      select('order', 'Order', [['desc', 'Newest first'], ['asc', 'Oldest first']], params.get('order') || 'desc'),
      select('limit', 'Per page', ['25', '50', '100', '200'].map((n) => [n, n]), params.get('limit') || '50')),
    h('p', { id: 'time-help', class: 'muted small' }, 'From and To are in your browser’s local time; events at To itself are not included. Results show times in UTC.'),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Search'),
      h('button', { type: 'button', class: 'secondary', onclick: () => { location.hash = '#/search'; } }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = {};
    for (const [name] of TEXT_FILTERS) values[name] = form.elements[name].value.trim();
    values.outcome = form.outcome.value;
    values.from = fromLocalInput(form.from.value);
    values.to = fromLocalInput(form.to.value);
    if (form.order.value !== 'desc') values.order = form.order.value;
    if (form.limit.value !== '50') values.limit = form.limit.value;
    const next = searchHref(values);
    pageStates.delete(`search:${next}`);
    if (location.hash === next) route();
    else location.hash = next;
  });
  main.append(h('h1', { tabindex: '-1' }, 'Search events'), form);
  const query = {};
  for (const name of [...TEXT_FILTERS.map(([n]) => n), 'outcome', 'from', 'to', 'order']) {
    if (params.get(name)) query[name] = params.get(name);
  }
  query.limit = params.get('limit') || '50';
  await pagedList(context, {
    key: `search:${searchHref(Object.fromEntries(params))}`,
    label: 'Search results',
    noun: 'events',
    fetchPage: (cursor) => api('/v1/events', { params: { ...query, cursor } }),
    renderRows: (events) => eventsTable(events, 'Matching events'),
  });
}

// ---------------------------------------------------------------------------------------------
// Event detail, diff and in-browser verification

const EVENT_FIELDS = [
  'event_id', 'seq', 'tenant_id', 'timestamp', 'received_at', 'actor_id', 'actor_type', 'action',
  'resource_type', 'resource_id', 'outcome', 'ip_address', 'user_agent', 'request_id', 'tier',
  'event_hash', 'prev_hash',
];

const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

/** Flattens nested objects into `a.b.c` paths; arrays and scalars are leaves. */
function flattenObject(value, prefix = '', out = new Map()) {
  if (isObject(value) && Object.keys(value).length) {
    for (const key of Object.keys(value)) flattenObject(value[key], prefix ? `${prefix}.${key}` : key, out);
  } else if (prefix) {
    out.set(prefix, value);
  }
  return out;
}

const BEFORE = ['before', 'old', 'from', 'previous'];
const AFTER = ['after', 'new', 'to', 'current'];
const sideOf = (object, names) => names.find((name) => Object.hasOwn(object, name));

/**
 * The per-field diff of `changes`: `{before: {...}, after: {...}}` (objects, compared path by
 * path), or per field `{field: {before, after}}` (also old/new, from/to). Null when neither.
 */
export function diffChanges(changes) {
  if (!isObject(changes)) return null;
  const before = sideOf(changes, BEFORE);
  const after = sideOf(changes, AFTER);
  const keys = Object.keys(changes);
  let pairs;
  if ((before || after) && keys.every((key) => key === before || key === after)) {
    const b = before ? changes[before] : undefined;
    const a = after ? changes[after] : undefined;
    if ((b === undefined || b === null || isObject(b)) && (a === undefined || a === null || isObject(a))) {
      const left = flattenObject(b || {});
      const right = flattenObject(a || {});
      pairs = [...new Set([...left.keys(), ...right.keys()])].map((path) =>
        [path, left.has(path) ? left.get(path) : undefined, right.has(path) ? right.get(path) : undefined]);
    } else {
      pairs = [['(value)', b, a]];
    }
  } else if (keys.length && keys.every((key) => isObject(changes[key]) && (sideOf(changes[key], BEFORE) || sideOf(changes[key], AFTER)))) {
    pairs = keys.map((key) => {
      const entry = changes[key];
      const b = sideOf(entry, BEFORE);
      const a = sideOf(entry, AFTER);
      return [key, b ? entry[b] : undefined, a ? entry[a] : undefined];
    });
  } else {
    return null;
  }
  return pairs.map(([path, b, a]) => {
    const kind = b === undefined ? 'added' : a === undefined ? 'removed'
      : JSON.stringify(b) === JSON.stringify(a) ? 'unchanged' : 'changed';
    return { path, before: b, after: a, kind };
  });
}

const valueText = (value) => (value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value));

function renderDiff(changes) {
  const section = h('section', { class: 'card', 'aria-labelledby': 'changes-title' }, h('h2', { id: 'changes-title' }, 'Changes'));
  if (changes == null) return section.append(h('p', { class: 'muted' }, 'This event records no changes.')), section;
  const rows = diffChanges(changes);
  if (!rows) {
    section.append(h('p', null, 'The changes are not in a before/after shape; as recorded:'), h('pre', { class: 'json' }, JSON.stringify(changes, null, 2)));
    return section;
  }
  const labels = { added: 'Added', removed: 'Removed', changed: 'Changed', unchanged: 'Unchanged' };
  section.append(tableWrap('Changes, field by field', h('table', { class: 'diff' },
    h('caption', { class: 'visually-hidden' }, 'Changes, field by field: the value before, the value after, and what happened'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Change'),
      h('th', { scope: 'col' }, 'Before'), h('th', { scope: 'col' }, 'After'))),
    h('tbody', null, rows.map((row) => h('tr', { class: `diff-${row.kind}`, 'data-field': row.path },
      h('th', { scope: 'row' }, h('code', null, row.path)),
      h('td', null, h('span', { class: `badge ${row.kind}` }, labels[row.kind])),
      h('td', { class: 'before' }, row.before === undefined ? h('span', { class: 'muted' }, '(absent)')
        : h(row.kind === 'unchanged' ? 'span' : 'del', null, valueText(row.before))),
      h('td', { class: 'after' }, row.after === undefined ? h('span', { class: 'muted' }, '(absent)')
        : h(row.kind === 'unchanged' ? 'span' : 'ins', null, valueText(row.after)))))))));
  return section;
}

async function renderEvent(context) {
  const { main, args } = context;
  const eventId = args.join('/');
  main.append(h('h1', { tabindex: '-1' }, 'Event ', h('code', null, eventId)));
  announce('Loading the event…');
  const text = await api(`/v1/events/${encodeURIComponent(eventId)}`, { as: 'text' });
  if (!context.alive()) return;
  const event = JSON.parse(text);
  const fields = h('dl', { class: 'fields' }, EVENT_FIELDS.map((name) => [
    h('dt', null, name),
    h('dd', null, event[name] == null ? h('span', { class: 'muted' }, '—') : name === 'outcome'
      ? outcomeBadge(event.outcome) : h('code', null, String(event[name]))),
  ]));
  const related = h('ul', { class: 'related' },
    h('li', null, h('a', { href: searchHref({ actor_id: event.actor_id }) }, `Events of ${event.actor_id}`)),
    event.resource_id ? h('li', null, h('a', { href: searchHref({ resource_type: event.resource_type, resource_id: event.resource_id }) }, `Events on ${event.resource_type} ${event.resource_id}`)) : null,
    event.request_id ? h('li', null, h('a', { href: searchHref({ request_id: event.request_id }) }, `Events of request ${event.request_id}`)) : null);
  const verification = h('section', { class: 'card verification', id: 'verification', 'aria-labelledby': 'verify-title', 'aria-live': 'polite' },
    h('h2', { id: 'verify-title' }, 'Verification'), h('p', { class: 'muted' }, 'Verifying in this browser…'));
  main.append(
    h('div', { class: 'columns' },
      h('section', { class: 'card', 'aria-labelledby': 'fields-title' }, h('h2', { id: 'fields-title' }, 'Fields'), fields, related),
      h('div', null, renderDiff(event.changes), verification)),
    h('section', { class: 'card', 'aria-labelledby': 'metadata-title' }, h('h2', { id: 'metadata-title' }, 'Metadata'),
      event.metadata == null ? h('p', { class: 'muted' }, 'No metadata.') : h('pre', { class: 'json' }, JSON.stringify(event.metadata, null, 2))),
    h('details', { class: 'card' }, h('summary', null, 'The event as the API returned it'), h('pre', { class: 'json' }, text)));
  announce(`Event ${eventId} loaded; verifying.`);
  await verifyEventInto(verification, text, event, context);
}

function checkList(checks) {
  return h('ul', { class: 'checks' }, checks.map((check) => h('li', { class: check.ok ? 'pass' : check.ok === false ? 'fail' : 'pending' },
    h('span', { class: 'check-label' }, check.ok ? 'Passed: ' : check.ok === false ? 'Failed: ' : 'Not checked: '), check.text)));
}

/** The latest checkpoint of the tenant, opened with the verifier key. */
async function latestCheckpoint(tenantId) {
  const [keyText, response] = await Promise.all([
    api('/v1/verifier-key', { as: 'text', tenantParam: false }),
    api(`/v1/tenants/${encodeURIComponent(tenantId)}/checkpoint`, { as: 'response', tenantParam: false }),
  ]);
  const note = await response.text();
  const key = await parseVerifierKey(keyText);
  const modified = response.headers.get('Last-Modified');
  const body = await openNote(note, key);
  const checkpoint = parseCheckpoint(body);
  // The first key this browser verified with is kept: a later, different one is pointed out.
  const pinned = localStorage.getItem(PINNED_KEY);
  if (!pinned) localStorage.setItem(PINNED_KEY, key.text);
  return { key, note, checkpoint, cutAt: modified ? new Date(modified) : null, pinned: pinned || key.text };
}

/** A warning when the server's verifier key is not the one this browser saw first. */
function keyChangeNotice(found, context) {
  if (found.pinned === found.key.text) return null;
  return notice('error', h('strong', null, 'The verifier key changed. '),
    `This browser first verified with ${found.pinned}; the server now signs with ${found.key.text}. `,
    'Unless the operator announced a new key, do not trust this log. ',
    h('button', { type: 'button', class: 'secondary', onclick: () => {
      localStorage.setItem(PINNED_KEY, found.key.text);
      if (context.alive()) route({ focus: false });
    } }, 'Trust the new key'));
}

/** When the checkpoint was cut, or else when the newest event it covers was received. */
async function checkpointAge(found, tenantId) {
  if (found.cutAt && !Number.isNaN(found.cutAt.getTime())) {
    return { text: `${ago(Date.now() - found.cutAt.getTime())} old`, detail: `Cut at ${found.cutAt.toISOString()}.` };
  }
  try {
    const answer = await api('/v1/query', { method: 'POST', body: { sql: `SELECT received_at FROM events WHERE seq = ${found.checkpoint.size}` } });
    const received = answer.rows?.[0]?.received_at;
    if (received) {
      // Arrow writes the instant with or without its zone; it is UTC either way.
      const text = /(?:Z|[+-]\d{2}:\d{2})$/.test(received) ? received : `${received}Z`;
      const ms = Number(timestampNanos(text.replace(' ', 'T')) / 1_000_000n);
      const since = ago(Date.now() - ms);
      return {
        text: since.startsWith('less') ? `${since} old` : `at most ${since} old`,
        detail: `The server does not say when it was cut; it was cut after its newest event, which was received ${since} ago.`,
      };
    }
  } catch {
    // A role without SQL: the age is unknown.
  }
  return { text: 'of unknown age', detail: 'The server does not say when it was cut.' };
}

async function verifyEventInto(panel, text, event, context) {
  const checks = [];
  const tenantId = event.tenant_id;
  const show = (...extra) => {
    if (!context.alive()) return;
    panel.replaceChildren(...flatten([h('h2', { id: 'verify-title' }, 'Verification'), extra, checkList(checks)]));
  };
  const fail = (message, ...extra) => {
    panel.dataset.verified = 'false';
    show(h('p', { class: 'verdict bad', role: 'alert' }, h('strong', null, 'Not verified: '), message), ...extra);
  };
  let leaf;
  try {
    leaf = await eventHash(parseLossless(text));
    const stated = hexToBytes(event.event_hash);
    const same = equalBytes(leaf, stated);
    checks.push({ ok: same, text: same
      ? `event_hash recomputed from the fields (canonical encoding ${parseLossless(text).sealed ? 'v2, protected fields by their commitments' : 'v1'}): ${bytesToHex(leaf)}`
      : `event_hash recomputed from the fields is ${bytesToHex(leaf)}, but the server states ${event.event_hash}` });
    if (!same) return fail('the event’s fields do not hash to its event_hash: the event was altered.');
  } catch (error) {
    checks.push({ ok: false, text: `event_hash could not be recomputed: ${error.message}` });
    return fail(error.message);
  }
  let found;
  try {
    found = await latestCheckpoint(tenantId);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      checks.push({ ok: null, text: 'the tenant has no signed checkpoint yet' });
      return fail('no checkpoint covers this event yet.', cutButton(tenantId, context));
    }
    checks.push({ ok: false, text: `checkpoint: ${error.message}` });
    return fail(error instanceof ApiError ? error.message : `the checkpoint does not verify: ${error.message}`);
  }
  const { key, checkpoint } = found;
  checks.push({ ok: true, text: `checkpoint signature (Ed25519) verified with key ${key.name} (ID ${key.id})` });
  if (found.pinned !== key.text) {
    checks.push({ ok: false, text: `the verifier key is not the one this browser verified with before (${found.pinned})` });
    return fail('the server signs with another key than before.', keyChangeNotice(found, context));
  }
  const origin = `sealtrail/${tenantId}`;
  if (checkpoint.origin !== origin) {
    checks.push({ ok: false, text: `checkpoint origin is ${checkpoint.origin}, not ${origin}` });
    return fail('the checkpoint belongs to another log.');
  }
  checks.push({ ok: true, text: `checkpoint origin is ${origin}; tree size ${checkpoint.size}` });
  const seq = BigInt(event.seq);
  if (seq > checkpoint.size) {
    checks.push({ ok: null, text: `the event has seq ${seq}; the latest checkpoint holds ${checkpoint.size} events` });
    return fail(`the latest checkpoint (size ${checkpoint.size}) was cut before this event (seq ${seq}); checkpoints are cut periodically.`, cutButton(tenantId, context));
  }
  let proof;
  try {
    proof = await api(`/v1/tenants/${encodeURIComponent(tenantId)}/proofs/inclusion`, {
      params: { event_id: event.event_id, tree_size: String(checkpoint.size) }, tenantParam: false });
  } catch (error) {
    checks.push({ ok: false, text: `inclusion proof: ${error.message}` });
    return fail(error.message);
  }
  try {
    if (BigInt(proof.tree_size) !== checkpoint.size) throw new Error(`the proof is for tree size ${proof.tree_size}, not ${checkpoint.size}`);
    if (BigInt(proof.leaf_index) !== seq - 1n) throw new Error(`the proof is for leaf ${proof.leaf_index}, not ${seq - 1n}`);
    if (!equalBytes(base64ToBytes(proof.leaf_hash), leaf)) throw new Error('the proof’s leaf hash is not the event’s hash');
    const root = await rootFromInclusion(leaf, seq - 1n, checkpoint.size, proof.hashes.map(base64ToBytes));
    if (!equalBytes(root, checkpoint.root)) throw new Error(`the audit path leads to root ${bytesToBase64(root)}, not the signed ${bytesToBase64(checkpoint.root)}`);
    checks.push({ ok: true, text: `inclusion proof: leaf ${seq - 1n} and ${proof.hashes.length} sibling hashes lead to the signed root ${bytesToBase64(checkpoint.root)}` });
  } catch (error) {
    checks.push({ ok: false, text: `inclusion proof: ${error.message}` });
    return fail(error.message);
  }
  const age = await checkpointAge(found, tenantId);
  panel.dataset.verified = 'true';
  show(h('p', { class: 'verdict good' }, h('strong', null, 'Verified: '),
    `included in checkpoint of size ${checkpoint.size} signed by ${key.name}+${key.id}, ${age.text}.`));
  announce('Verified in the browser.');
}

function cutButton(tenantId, context) {
  if (!ADMIN_ROLES.has(session.who.role)) return null;
  return h('button', { type: 'button', class: 'secondary', onclick: async (event) => {
    event.target.disabled = true;
    try {
      await api(`/v1/tenants/${encodeURIComponent(tenantId)}/checkpoint`, { method: 'POST', as: 'text', tenantParam: false });
      if (context.alive()) route({ focus: false });
    } catch (error) {
      event.target.replaceWith(errorNotice(error, 'cut a checkpoint'));
    }
  } }, 'Cut a checkpoint now');
}

// ---------------------------------------------------------------------------------------------
// Verification status

async function renderVerify(context) {
  const { main } = context;
  const tenantId = tenant();
  main.append(h('h1', { tabindex: '-1' }, 'Verification status'),
    h('p', null, 'The latest signed checkpoint of tenant ', h('code', null, tenantId), ', checked in this browser against the server’s verifier key.'));
  let found;
  try {
    found = await latestCheckpoint(tenantId);
  } catch (error) {
    if (!context.alive()) return;
    if (error instanceof ApiError) {
      main.append(...flatten([errorNotice(error, 'read the checkpoint'), cutButton(tenantId, context)]));
      return;
    }
    main.append(notice('error', h('strong', null, 'The checkpoint does not verify: '), error.message));
    return;
  }
  const { key, checkpoint, note } = found;
  const originOk = checkpoint.origin === `sealtrail/${tenantId}`;
  const age = await checkpointAge(found, tenantId);
  if (!context.alive()) return;
  const consistency = await checkConsistency(tenantId, checkpoint);
  if (!context.alive()) return;
  main.append(...flatten([
    keyChangeNotice(found, context),
    h('section', { class: 'card', id: 'checkpoint', 'data-verified': String(originOk) },
      h('p', { class: `verdict ${originOk ? 'good' : 'bad'}` }, h('strong', null, originOk ? 'Signature verified. ' : 'Wrong origin. '),
        originOk ? `Checkpoint of tree size ${checkpoint.size}, ${age.text}, signed by ${key.name}.` : `The checkpoint names ${checkpoint.origin}.`),
      h('dl', { class: 'fields' },
        h('dt', null, 'Origin'), h('dd', null, h('code', null, checkpoint.origin)),
        h('dt', null, 'Tree size'), h('dd', { id: 'tree-size' }, String(checkpoint.size)),
        h('dt', null, 'Root hash'), h('dd', null, h('code', null, bytesToBase64(checkpoint.root)), h('br'), h('code', { class: 'muted' }, bytesToHex(checkpoint.root))),
        h('dt', null, 'Age'), h('dd', null, age.text, h('br'), h('span', { class: 'muted small' }, age.detail)),
        h('dt', null, 'Signer'), h('dd', null, h('code', null, `${key.name} (key ID ${key.id})`)),
        h('dt', null, 'Verifier key'), h('dd', null, h('code', { class: 'wrap' }, key.text))),
      consistency,
      cutButton(tenantId, context)),
    h('details', { class: 'card' }, h('summary', null, 'The signed note'), h('pre', { class: 'json' }, note)),
    h('section', { class: 'card' }, h('h2', null, 'Check it yourself'),
      h('p', null, 'Export the events (Exports page) and run, with no server and no trust in it:'),
      h('pre', null, `sealtrail verify-bundle <export-dir> --key '${key.text}'`))]));
  announce(`Checkpoint of size ${checkpoint.size} verified.`);
}

/** Compares the checkpoint with the last one this browser verified for the tenant (a witness). */
async function checkConsistency(tenantId, checkpoint) {
  let seen = null;
  try {
    seen = JSON.parse(localStorage.getItem(SEEN_KEY + tenantId));
  } catch {
    seen = null;
  }
  const remember = () => localStorage.setItem(SEEN_KEY + tenantId,
    JSON.stringify({ size: String(checkpoint.size), root: bytesToBase64(checkpoint.root) }));
  if (!seen || !seen.size) {
    remember();
    return h('p', { class: 'muted' }, 'This browser had not seen a checkpoint of this tenant before; it keeps this one to check the next against.');
  }
  const first = BigInt(seen.size);
  if (first > checkpoint.size) {
    return notice('error', h('strong', null, 'The log shrank: '), `this browser saw a checkpoint of size ${first} before, and now the latest is ${checkpoint.size}.`);
  }
  try {
    const proof = first === checkpoint.size ? { hashes: [] } : await api(`/v1/tenants/${encodeURIComponent(tenantId)}/proofs/consistency`, {
      params: { first: String(first), second: String(checkpoint.size) }, tenantParam: false });
    const ok = await verifyConsistency(first, checkpoint.size, base64ToBytes(seen.root), checkpoint.root, proof.hashes.map(base64ToBytes));
    if (!ok) return notice('error', h('strong', null, 'Fork detected: '), `the checkpoint of size ${first} this browser saw is not a prefix of the latest one.`);
    remember();
    return h('p', { class: 'good-text' }, `Consistent with the checkpoint of size ${first} this browser verified before: the log only grew.`);
  } catch (error) {
    return notice('info', `Consistency with the checkpoint of size ${first} seen before was not checked: ${error.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Alerts and the access trail

async function renderAlerts(context) {
  context.main.append(h('h1', { tabindex: '-1' }, 'Alerts'),
    h('p', null, 'Alerts the rules raised, newest first. Each is an event of the log (', h('code', null, 'alert.triggered'), ').'));
  await pagedList(context, {
    key: 'alerts',
    label: 'Alerts',
    noun: 'alerts',
    fetchPage: (cursor) => api('/v1/events', { params: { action: 'alert.triggered', limit: 50, cursor } }),
    renderRows: (events) => eventsTable(events, 'Alerts', ['time', 'rule', 'group', 'value']),
  });
}

/** What a recorded read asked for: its SQL, or its filters and parameters, compactly. */
function askedFor(metadata) {
  const asked = metadata.query ?? metadata.filters ?? metadata.sql;
  if (asked == null) return '';
  if (typeof asked === 'string') return asked;
  if (typeof asked.sql === 'string') return asked.sql;
  return compactJson(asked);
}

async function renderAccess(context) {
  const { params } = context;
  const filters = { actor_id: params.get('actor_id') || '', resource_id: params.get('resource_id') || '' };
  const form = h('form', { class: 'card filters inline', 'aria-label': 'Access trail filters' },
    field('Reader', h('input', { id: 'a-actor_id', name: 'actor_id', value: filters.actor_id, autocomplete: 'off', spellcheck: 'false' })),
    field('Route', h('input', { id: 'a-resource_id', name: 'resource_id', value: filters.resource_id, placeholder: '/v1/events', autocomplete: 'off', spellcheck: 'false' })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = new URLSearchParams(Object.entries({ actor_id: form.actor_id.value.trim(), resource_id: form.resource_id.value.trim() })
      .filter(([, value]) => value));
    pageStates.delete(`access:${query}`);
    location.hash = `#/access?${query}`;
  });
  context.main.append(h('h1', { tabindex: '-1' }, 'Access trail'),
    h('p', null, 'Every read of this tenant’s audit data: who read, with which credential, what they asked for and how many rows they got. Newest first.'),
    form);
  await pagedList(context, {
    key: `access:${new URLSearchParams(Object.entries(filters).filter(([, value]) => value))}`,
    label: 'Access trail',
    noun: 'reads',
    fetchPage: (cursor) => api('/v1/access-trail', { params: { limit: 50, ...filters, cursor } }),
    renderRows: (entries) => tableWrap('Access trail', h('table', { class: 'events access' },
      h('caption', { class: 'visually-hidden' }, 'Reads of audit data'),
      h('thead', null, h('tr', null, ['Time (UTC)', 'Reader', 'Role', 'Credential', 'Route', 'Asked for', 'Rows', 'Request ID']
        .map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', null, entries.map((entry) => {
        const m = entry.metadata || {};
        return h('tr', { 'data-event-id': entry.event_id },
          h('td', null, shortTime(entry.timestamp)), h('td', null, entry.actor_id), h('td', null, m.level ?? m.role ?? ''),
          h('td', null, h('code', null, m.credential ?? '')), h('td', null, h('code', null, m.route ?? entry.resource_id ?? '')),
          h('td', { class: 'asked' }, h('code', null, askedFor(m))), h('td', { class: 'num' }, m.rows ?? ''),
          h('td', null, entry.request_id ?? m.request_id ?? ''));
      })))),
  });
}

// ---------------------------------------------------------------------------------------------
// Exports

const EXPORT_FORMATS = [['csv', 'CSV'], ['ndjson', 'NDJSON'], ['parquet', 'Parquet'], ['ocsf', 'OCSF (NDJSON)'], ['report', 'Compliance evidence report']];

async function download(job, part) {
  const query = part === 'data' ? '' : `?part=${part}`;
  const response = await api(`/v1/exports/${encodeURIComponent(job.export_id)}/download${query}`, { as: 'response' });
  const blob = await response.blob();
  const disposition = response.headers.get('Content-Disposition') || '';
  const named = /filename="?([^";]+)"?/.exec(disposition);
  const extension = { csv: 'csv', ndjson: 'ndjson', parquet: 'parquet', ocsf: 'ocsf.ndjson', report: 'ndjson' }[job.format] || 'bin';
  const fallback = { data: `${job.export_id}.${extension}`, bundle: `${job.export_id}.bundle.ndjson`, html: `${job.export_id}.html`, pdf: `${job.export_id}.pdf` }[part];
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: named ? named[1] : fallback });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** An export's period and filters in words: `2026-01-01 00:00:00Z → 2026-02-01 00:00:00Z, actor_id alice`. */
function describeFilters(filters) {
  const { from, to, ...rest } = filters;
  const period = from || to ? `${from ? shortTime(from) : 'the start'} → ${to ? shortTime(to) : 'now'}` : 'all events';
  return [period, ...Object.entries(rest).filter(([, value]) => value != null).map(([name, value]) => `, ${name} ${value}`)].join('');
}

function exportsTable(jobs, refresh) {
  const parts = (job) => job.format === 'report' ? [['data', 'Events'], ['bundle', 'Bundle'], ['html', 'Report (HTML)'], ['pdf', 'Report (PDF)']] : [['data', 'File'], ['bundle', 'Proof bundle']];
  const bytes = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
  return tableWrap('Export jobs', h('table', { class: 'events exports' },
    h('caption', { class: 'visually-hidden' }, 'Export jobs, newest first'),
    h('thead', null, h('tr', null, ['Export', 'Format', 'State', 'Requested (UTC)', 'Period (UTC) and filters', 'Events', 'Size', 'Downloads'].map((name) => h('th', { scope: 'col' }, name)))),
    h('tbody', null, jobs.map((job) => {
      const running = job.state === 'queued' || job.state === 'running';
      const progress = running && job.events_expected ? ` (${job.events_read} of ${job.events_expected} read)` : '';
      return h('tr', { 'data-export-id': job.export_id, 'data-state': job.state },
        h('td', null, h('code', null, job.export_id)),
        h('td', null, job.format),
        h('td', null, h('span', { class: `badge state-${job.state}` }, job.state), progress, job.error ? h('div', { class: 'muted' }, job.error) : null),
        h('td', null, shortTime(job.created_at)),
        h('td', null, describeFilters(job.filters || {})),
        h('td', { class: 'num' }, String(job.events_written ?? '')),
        h('td', { class: 'num' }, job.bytes ? bytes(job.bytes) : ''),
        h('td', { class: 'downloads' }, job.state === 'done'
          ? [parts(job).map(([part, label]) => h('button', { type: 'button', class: 'link', 'data-part': part,
              onclick: (event) => download(job, part).catch((error) => event.target.after(errorNotice(error, 'download'))) }, label)),
            job.sha256 ? h('div', { class: 'muted small' }, 'SHA-256 ', h('code', null, job.sha256)) : null,
            h('button', { type: 'button', class: 'link danger', onclick: () => removeExport(job, refresh) }, 'Delete files')]
          : running ? h('button', { type: 'button', class: 'link danger', onclick: () => removeExport(job, refresh) }, 'Cancel') : ''));
    }))));
}

async function removeExport(job, refresh) {
  const what = job.state === 'done' ? 'delete the files of' : 'cancel';
  if (!confirm(`Really ${what} export ${job.export_id}?`)) return;
  try {
    await api(`/v1/exports/${encodeURIComponent(job.export_id)}`, { method: 'DELETE' });
  } catch (error) {
    announce(`Could not ${what} the export: ${error.message}`);
  }
  refresh();
}

async function renderExports(context) {
  const { main } = context;
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 30 * 86400000);
  const form = h('form', { class: 'card filters', id: 'export-form', 'aria-labelledby': 'new-export' },
    h('h2', { id: 'new-export' }, 'New export'),
    h('div', { class: 'grid' },
      field('Format', h('select', { id: 'x-format', name: 'format' }, EXPORT_FORMATS.map(([value, label]) => h('option', { value }, label)))),
      field('From', h('input', { id: 'x-from', name: 'from', type: 'datetime-local', step: '1', required: true, value: toLocalInput(monthAgo.toISOString()), 'aria-describedby': 'x-time-help' })),
      field('To', h('input', { id: 'x-to', name: 'to', type: 'datetime-local', step: '1', required: true, value: toLocalInput(new Date(today.getTime() + 60000).toISOString()), 'aria-describedby': 'x-time-help' }))),
    h('p', { id: 'x-time-help', class: 'muted small' }, 'In your browser’s local time; events at To itself are not included.'),
    h('details', null, h('summary', null, 'Only some events'),
      h('div', { class: 'grid' },
        TEXT_FILTERS.map(([name, label]) => field(label, h('input', { id: `x-${name}`, name, autocomplete: 'off', spellcheck: 'false' }))),
        field('Outcome', h('select', { id: 'x-outcome', name: 'outcome' }, [['', 'Any'], ['success', 'Success'], ['failure', 'Failure']].map(([value, label]) => h('option', { value }, label)))))),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Start export')),
    h('div', { id: 'export-status', 'aria-live': 'polite' }));
  const list = h('section', { class: 'card', 'aria-labelledby': 'jobs-title', 'aria-busy': 'true' }, h('h2', { id: 'jobs-title' }, 'Export jobs'));
  main.append(h('h1', { tabindex: '-1' }, 'Exports'),
    h('p', null, 'An export writes the events of a period, with a proof bundle that verifies offline (', h('code', null, 'sealtrail verify-bundle'), ').'),
    form, list);
  let timer = null;
  cleanups.push(() => clearTimeout(timer));
  const refresh = async () => {
    clearTimeout(timer);
    let answer;
    try {
      answer = await api('/v1/exports');
    } catch (error) {
      if (context.alive()) list.replaceChildren(h('h2', { id: 'jobs-title' }, 'Export jobs'), errorNotice(error, 'list exports'));
      return;
    }
    if (!context.alive()) return;
    const jobs = answer.exports || [];
    list.replaceChildren(h('h2', { id: 'jobs-title' }, 'Export jobs'),
      jobs.length ? exportsTable(jobs, refresh) : h('p', { class: 'muted' }, 'No exports yet.'));
    list.setAttribute('aria-busy', 'false');
    if (jobs.some((job) => job.state === 'queued' || job.state === 'running')) timer = setTimeout(refresh, 1500);
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const status = $('#export-status');
    const from = fromLocalInput(form.from.value);
    const to = fromLocalInput(form.to.value);
    if (!from || !to) {
      status.replaceChildren(notice('error', 'Enter both ends of the period.'));
      return;
    }
    const filters = {};
    for (const [name] of TEXT_FILTERS) if (form.elements[name].value.trim()) filters[name] = form.elements[name].value.trim();
    if (form.outcome.value) filters.outcome = form.outcome.value;
    status.replaceChildren(notice('info', 'Requesting the export…'));
    try {
      const job = await api('/v1/exports', { method: 'POST', body: { format: form.format.value, from, to, filters } });
      status.replaceChildren(notice('info', `Export ${job.export_id} requested; the list below follows it.`));
      refresh();
    } catch (error) {
      status.replaceChildren(errorNotice(error, 'start an export'));
    }
  });
  await refresh();
}

// ---------------------------------------------------------------------------------------------
// Dashboard: inline SVG charts, each with a data table beside it.

const PALETTE = ['#2563eb', '#d97706', '#059669', '#db2777', '#7c3aed', '#0891b2', '#65a30d', '#dc2626', '#6b7280'];

const dayString = (date) => date.toISOString().slice(0, 10);
function daysBetween(from, to) {
  const days = [];
  for (let d = new Date(`${from}T00:00:00Z`); dayString(d) <= to && days.length < 400; d = new Date(d.getTime() + 86400000)) days.push(dayString(d));
  return days;
}

function chartFigure(id, title, description, chart, table) {
  return h('figure', { class: 'card chart', id },
    h('figcaption', null, h('h2', null, title), h('p', { class: 'muted' }, description)),
    chart,
    h('details', { class: 'chart-data' }, h('summary', null, `${title}: data table`), tableWrap(title, table)));
}

const niceMax = (value) => {
  if (value <= 5) return Math.max(1, value);
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((candidate) => candidate >= value);
};

function stackedBars(days, series, label) {
  const width = 560;
  const height = 220;
  const pad = { left: 40, right: 8, top: 10, bottom: 28 };
  const totals = days.map((_, i) => series.reduce((sum, s) => sum + s.values[i], 0));
  const max = niceMax(Math.max(1, ...totals));
  const slot = (width - pad.left - pad.right) / Math.max(1, days.length);
  const y = (value) => pad.top + (height - pad.top - pad.bottom) * (1 - value / max);
  const bars = [];
  days.forEach((day, i) => {
    let base = 0;
    series.forEach((s, k) => {
      const value = s.values[i];
      if (!value) return;
      bars.push(svg('rect', { x: (pad.left + i * slot + slot * 0.1).toFixed(1), y: y(base + value).toFixed(1), width: (slot * 0.8).toFixed(1),
        height: (y(base) - y(base + value)).toFixed(1), fill: PALETTE[k % PALETTE.length], 'data-day': day, 'data-series': s.name },
        svg('title', null, `${day}, ${s.name}: ${value}`)));
      base += value;
    });
  });
  const labelEvery = Math.ceil(days.length / 8);
  return h('div', { class: 'chart-body' },
    svg('svg', { viewBox: `0 0 ${width} ${height}`, width, role: 'img', 'aria-label': label },
      axis(max, y, pad, width),
      bars,
      days.map((day, i) => i % labelEvery === 0 ? svg('text', { x: (pad.left + i * slot + slot / 2).toFixed(1), y: height - 8, 'text-anchor': 'middle', class: 'tick' }, day.slice(5)) : null)),
    legend(series.map((s) => s.name)));
}

function axis(max, y, pad, width) {
  return [0, max / 2, max].map((value) => [
    svg('line', { x1: pad.left, x2: width - pad.right, y1: y(value).toFixed(1), y2: y(value).toFixed(1), class: 'grid-line' }),
    svg('text', { x: pad.left - 6, y: (y(value) + 4).toFixed(1), 'text-anchor': 'end', class: 'tick' }, String(Math.round(value * 10) / 10)),
  ]);
}

function legend(names) {
  return h('ul', { class: 'legend', 'aria-hidden': 'true' }, names.map((name, k) =>
    h('li', null, swatch(PALETTE[k % PALETTE.length]), name)));
}

/** A colour sample; set through the CSSOM, since the page's policy allows no inline style. */
function swatch(colour) {
  const element = h('span', { class: 'swatch' });
  element.style.backgroundColor = colour;
  return element;
}

function horizontalBars(items, label, colour = PALETTE[0]) {
  const rowHeight = 26;
  const width = 560;
  const labelWidth = 170;
  const max = Math.max(1, ...items.map((item) => item.value));
  const height = Math.max(1, items.length) * rowHeight + 8;
  return h('div', { class: 'chart-body' }, svg('svg', { viewBox: `0 0 ${width} ${height}`, width, role: 'img', 'aria-label': label },
    items.map((item, i) => {
      const barWidth = ((width - labelWidth - 70) * item.value) / max;
      const top = 4 + i * rowHeight;
      return svg('g', { 'data-label': item.label },
        svg('text', { x: labelWidth - 8, y: top + 17, 'text-anchor': 'end', class: 'label' }, item.label.length > 24 ? `${item.label.slice(0, 23)}…` : item.label),
        svg('rect', { x: labelWidth, y: top + 3, width: Math.max(1, barWidth).toFixed(1), height: rowHeight - 8, fill: item.colour || colour },
          svg('title', null, `${item.label}: ${item.value}`)),
        svg('text', { x: (labelWidth + barWidth + 6).toFixed(1), y: top + 17, class: 'value' }, String(item.value)));
    })));
}

async function renderDashboard(context) {
  const { main, params } = context;
  const today = dayString(new Date());
  const valid = (text) => /^\d{4}-\d{2}-\d{2}$/.test(text || '');
  const to = valid(params.get('to')) ? params.get('to') : today;
  const from = valid(params.get('from')) ? params.get('from') : dayString(new Date(Date.parse(`${to}T00:00:00Z`) - 29 * 86400000));
  const form = h('form', { class: 'card filters inline', 'aria-label': 'Dashboard period' },
    field('From (UTC day)', h('input', { id: 'd-from', name: 'from', type: 'date', value: from, required: true })),
    field('To (UTC day, inclusive)', h('input', { id: 'd-to', name: 'to', type: 'date', value: to, required: true })),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/dashboard?${new URLSearchParams({ from: form.from.value, to: form.to.value })}`;
  });
  const grid = h('div', { class: 'charts', 'aria-busy': 'true' });
  main.append(h('h1', { tabindex: '-1' }, 'Dashboard'), form, grid);
  announce('Loading the dashboard…');
  const days = daysBetween(from, to);
  const tenantPath = encodeURIComponent(tenant());
  // Every chart reads summaries kept as events arrive, never a scan of events: the days (with
  // their failures and top actors), the months' top resources, the sampling statistics.
  const [tenantDays, months, sampling] = await Promise.allSettled([
    api('/v1/summaries/tenant-day', { params: { from, to } }),
    api('/v1/summaries/tenant-month', { params: { from: from.slice(0, 7), to: to.slice(0, 7) } }),
    api(`/v1/tenants/${tenantPath}/sampling`, { params: { from, to }, tenantParam: false }),
  ]);
  if (!context.alive()) return;
  const failed = (id, title, error) => h('figure', { class: 'card chart', id }, h('figcaption', null, h('h2', null, title)), errorNotice(error.reason, `read ${title.toLowerCase()}`));

  // Events per day by action, and top actors: the per-day summaries.
  if (tenantDays.status === 'fulfilled') {
    const byAction = new Map();
    for (const row of tenantDays.value.summaries || []) {
      for (const [action, count] of Object.entries(row.action_counts || {})) {
        if (!byAction.has(action)) byAction.set(action, new Map());
        byAction.get(action).set(row.date, count);
      }
    }
    const ranked = [...byAction.entries()].map(([name, perDay]) => ({ name, perDay, total: [...perDay.values()].reduce((a, b) => a + b, 0) }))
      .sort((a, b) => b.total - a.total);
    const shown = ranked.slice(0, 8);
    const rest = ranked.slice(8);
    const series = shown.map((s) => ({ name: s.name, values: days.map((day) => s.perDay.get(day) || 0) }));
    if (rest.length) series.push({ name: `${rest.length} other actions`, values: days.map((day) => rest.reduce((sum, s) => sum + (s.perDay.get(day) || 0), 0)) });
    const total = ranked.reduce((sum, s) => sum + s.total, 0);
    grid.append(chartFigure('chart-actions', 'Events per day by action',
      `${total} events from ${from} to ${to}${tenantDays.value.truncated ? ' (summary cut at its row limit)' : ''}.`,
      stackedBars(days, series, `Stacked bars of events per day by action, ${total} events in all; the data table follows.`),
      dataTable('Events per day by action', ['Day', ...series.map((s) => s.name), 'Total'],
        days.filter((_, i) => series.some((s) => s.values[i])).map((day) => {
          const i = days.indexOf(day);
          return [day, ...series.map((s) => String(s.values[i])), String(series.reduce((sum, s) => sum + s.values[i], 0))];
        }), { numeric: series.map((_, i) => i + 1).concat(series.length + 1) })));
    const actors = (tenantDays.value.top_actors || []).slice(0, 10).map((a) => ({ label: a.actor_id, value: a.events }));
    grid.append(chartFigure('chart-actors', 'Top actors', 'Actors with the most events in the period.',
      horizontalBars(actors, `Bar chart of the ${actors.length} most active actors; the data table follows.`),
      dataTable('Top actors', ['Actor', 'Events'], actors.map((a) => [a.label, String(a.value)]), { numeric: [1] })));
  } else {
    grid.append(failed('chart-actions', 'Events per day by action', tenantDays), failed('chart-actors', 'Top actors', tenantDays));
  }

  // Top resources: the monthly summaries keep each month's most used resources.
  if (months.status === 'fulfilled') {
    const byResource = new Map();
    for (const month of months.value.summaries || []) {
      for (const r of month.top_resources || []) {
        const label = `${r.resource_type} ${r.resource_id ?? ''}`.trim();
        byResource.set(label, (byResource.get(label) || 0) + r.events);
      }
    }
    const resources = [...byResource.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([label, value]) => ({ label, value }));
    grid.append(chartFigure('chart-resources', 'Top resources', `Resources with the most events, months ${from.slice(0, 7)} to ${to.slice(0, 7)}.`,
      horizontalBars(resources, `Bar chart of the ${resources.length} most used resources; the data table follows.`, PALETTE[2]),
      dataTable('Top resources', ['Resource', 'Events'], resources.map((r) => [r.label, String(r.value)]), { numeric: [1] })));
  } else {
    grid.append(failed('chart-resources', 'Top resources', months));
  }

  // Failed logins per day: the per-day summaries count failed events per action. A login is
  // `login` or any action ending in `.login` (`user.login`, `auth.login`).
  if (tenantDays.status === 'fulfilled') {
    const isLogin = (action) => action === 'login' || action.endsWith('.login');
    const failedLogins = (counts) => Object.entries(counts || {}).filter(([action]) => isLogin(action)).reduce((sum, [, n]) => sum + n, 0);
    const perDay = new Map((tenantDays.value.summaries || []).map((row) => [row.date, failedLogins(row.failure_counts)]));
    const values = days.map((day) => perDay.get(day) || 0);
    const total = values.reduce((a, b) => a + b, 0);
    grid.append(chartFigure('chart-failed-logins', 'Failed logins per day', `${total} failed logins (action login or *.login, outcome failure).`,
      stackedBars(days, [{ name: 'failed logins', values }], `Bar chart of failed logins per day, ${total} in all; the data table follows.`),
      dataTable('Failed logins per day', ['Day', 'Failed logins'], days.filter((_, i) => values[i]).map((day) => [day, String(perDay.get(day))]), { numeric: [1] })));
  } else {
    grid.append(failed('chart-failed-logins', 'Failed logins per day', tenantDays));
  }

  // Sampling: events seen and kept per capture class.
  if (sampling.status === 'fulfilled') {
    const totals = sampling.value.totals || [];
    const rates = sampling.value.rates || {};
    const items = totals.flatMap((t) => [
      { label: `class ${t.class} seen`, value: t.seen, colour: PALETTE[8] },
      { label: `class ${t.class} kept`, value: t.kept, colour: PALETTE[0] },
    ]);
    grid.append(chartFigure('chart-sampling', 'Sampling', 'Events the capture policy saw and kept, per class (class 0 is never sampled).',
      items.length ? horizontalBars(items, 'Bar chart of events seen and kept per capture class; the data table follows.') : h('p', { class: 'muted' }, 'No sampled events in the period.'),
      dataTable('Sampling per class', ['Class', 'Keep rate', 'Seen', 'Kept', 'Dropped'], totals.map((t) => [
        `class ${t.class}`, rates[t.class] != null ? String(rates[t.class]) : rates[String(t.class)] != null ? String(rates[String(t.class)]) : '',
        String(t.seen), String(t.kept), String(t.seen - t.kept)]), { numeric: [1, 2, 3, 4] })));
  } else {
    grid.append(failed('chart-sampling', 'Sampling', sampling));
  }
  grid.setAttribute('aria-busy', 'false');
  announce('Dashboard loaded.');
}

// ---------------------------------------------------------------------------------------------
// Start

function start() {
  session = loadSession();
  addEventListener('hashchange', () => route());
  $('.skip')?.addEventListener('click', (event) => {
    event.preventDefault();
    $('#main').focus();
  });
  route({ focus: false });
}

if (typeof document !== 'undefined' && document.getElementById('main')?.dataset.app === 'console') start();
