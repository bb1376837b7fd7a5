// The account-activity view: what one end user did, read with a viewer token the SaaS product
// minted for them (POST /v1/viewer-tokens). The token arrives in the URL fragment, which never
// reaches a server log, and is kept in this tab's session storage only. The server decides what
// the token may read (a `self` token: that actor's own events); this page shows what it gets.

const TOKEN_KEY = 'sealtrail.activity.token';
const PAGE_EVENTS = 100;

// Actions this view sorts into its sections (anything else is counted but not listed).
const SIGN_IN = /^(?:login|logout|sign_?in|sign_?out|auth[._]|session[._]|sso[._])/i;
const SECURITY = /^(?:password|api_key|role_|permission_|security[._]|mfa|2fa|two_factor|passkey|webauthn|recovery|email_change|oauth_|token[._]|viewer_tokens?[._])/i;

const main = document.getElementById('main');
const embedded = window.parent !== window;
let token = null;
let who = null;
let events = [];
let cursor = null;
let loading = false;
let generation = 0;

function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...children.flat(Infinity).filter((child) => child != null && child !== false)
    .map((child) => (child instanceof Node ? child : String(child))));
  return element;
}

const announce = (text) => { document.getElementById('status').textContent = text; };
const when = (text) => (typeof text === 'string' ? text.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');

function tell(message) {
  if (embedded) window.parent.postMessage(message, '*');
}

function readToken() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    // The token leaves the address bar (and any copy of the URL) at once.
    history.replaceState(null, '', location.pathname + location.search);
    return fromHash;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class Refused extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function get(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params)) if (value) url.searchParams.set(name, value);
  let response;
  try {
    response = await fetch(url, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
  } catch (error) {
    throw new Refused(0, `The server could not be reached (${error.message}).`);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch {
      // Keep the status text.
    }
    throw new Refused(response.status, detail);
  }
  return response.json();
}

function describeDevice(agent) {
  const browser = [[/Edg\//, 'Edge'], [/OPR\//, 'Opera'], [/Firefox\//, 'Firefox'], [/Chrome\//, 'Chrome'], [/Safari\//, 'Safari'], [/curl\//, 'curl']]
    .find(([pattern]) => pattern.test(agent));
  const system = [[/Android/, 'Android'], [/iPhone|iPad|iOS/, 'iOS'], [/Windows/, 'Windows'], [/Mac OS X|Macintosh/, 'macOS'], [/Linux/, 'Linux']]
    .find(([pattern]) => pattern.test(agent));
  if (!browser && !system) return null;
  return [browser ? browser[1] : 'A browser', system ? `on ${system[1]}` : ''].join(' ').trim();
}

function outcome(event) {
  return event.outcome === 'failure' ? h('strong', { class: 'badge bad' }, 'Failed') : h('span', { class: 'badge good' }, 'Succeeded');
}

const SHOWN = 10;

/** A section listing `items`: the first ten, the rest behind a disclosure. */
function section(id, title, intro, items, empty) {
  return h('section', { class: 'card', id, 'aria-labelledby': `${id}-title` },
    h('h2', { id: `${id}-title` }, title),
    intro ? h('p', { class: 'muted' }, intro) : null,
    items.length ? h('ul', { class: 'items' }, items.slice(0, SHOWN)) : h('p', { class: 'muted' }, empty),
    items.length > SHOWN
      ? h('details', null, h('summary', null, `Show ${items.length - SHOWN} more`), h('ul', { class: 'items' }, items.slice(SHOWN)))
      : null);
}

const newestFirst = (a, b) => (a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0);

/** Distinct values of `field` over the loaded events, most recent first. */
function distinct(field) {
  const seen = new Map();
  for (const event of events) {
    const value = event[field];
    if (!value) continue;
    const entry = seen.get(value) || { value, count: 0, failures: 0, last: event.timestamp, first: event.timestamp };
    entry.count += 1;
    if (event.outcome === 'failure') entry.failures += 1;
    if (event.timestamp > entry.last) entry.last = event.timestamp;
    if (event.timestamp < entry.first) entry.first = event.timestamp;
    seen.set(value, entry);
  }
  return [...seen.values()].sort((a, b) => (a.last < b.last ? 1 : -1));
}

function render() {
  // Pages come in log order; within what is loaded, the newest first.
  const signIns = events.filter((event) => SIGN_IN.test(event.action)).sort(newestFirst);
  const security = events.filter((event) => SECURITY.test(event.action)).sort(newestFirst);
  const devices = distinct('user_agent');
  const addresses = distinct('ip_address');
  const oldest = events.reduce((min, event) => (!min || event.timestamp < min ? event.timestamp : min), null);
  const scope = who && who.role === 'team_admin' ? 'your team' : 'you';
  main.replaceChildren(
    h('h1', { tabindex: '-1' }, 'Account activity'),
    h('p', { id: 'whoami' }, who && who.actor_id
      ? ['Activity of ', h('strong', { id: 'actor' }, who.actor_id), who.tenant_id ? [' in ', h('span', null, who.tenant_id)] : null, '.']
      : 'Your activity.',
      ' ', h('span', { class: 'muted' }, events.length
        ? `Showing the ${events.length} most recent events${oldest ? `, back to ${when(oldest)}` : ''}.`
        : '')),
    h('div', { class: 'sections' },
      section('sign-ins', 'Sign-ins', `Signing in and out, as ${scope} did.`, signIns.map((event) => h('li', { 'data-event-id': event.event_id },
        h('span', { class: 'when' }, when(event.timestamp)),
        h('strong', null, event.action), ' ', outcome(event),
        event.ip_address ? [' from ', h('code', null, event.ip_address)] : null,
        event.user_agent ? h('div', { class: 'muted small' }, describeDevice(event.user_agent) || event.user_agent) : null)),
        'No sign-ins in this period.'),
      section('security', 'Security changes', 'Passwords, keys, roles, permissions and other security settings.', security.map((event) => h('li', { 'data-event-id': event.event_id },
        h('span', { class: 'when' }, when(event.timestamp)),
        h('strong', null, event.action), ' ', outcome(event),
        h('div', { class: 'muted small' }, event.resource_type, event.resource_id ? ` ${event.resource_id}` : '',
          event.actor_id && who && event.actor_id !== who.actor_id ? ` by ${event.actor_id}` : ''))),
        'No security changes in this period.'),
      section('devices', 'Devices', 'Browsers and programs that acted for this account.', devices.map((device) => h('li', null,
        h('strong', null, describeDevice(device.value) || 'Device'),
        h('div', { class: 'muted small' }, h('code', null, device.value)),
        h('span', { class: 'when' }, `Last used ${when(device.last)}; ${device.count} event${device.count === 1 ? '' : 's'}`))),
        'No device information.'),
      section('addresses', 'IP addresses', 'Where requests came from.', addresses.map((address) => h('li', null,
        h('code', null, address.value),
        address.failures ? [' ', h('strong', { class: 'badge bad' }, `${address.failures} failed`)] : null,
        h('span', { class: 'when' }, `Last seen ${when(address.last)}; ${address.count} event${address.count === 1 ? '' : 's'}`))),
        'No addresses recorded.')),
    h('div', { class: 'actions' }, cursor
      ? h('button', { type: 'button', id: 'older', class: 'secondary', onclick: loadMore }, 'Load older activity')
      : h('p', { class: 'muted' }, events.length ? 'That is all of the activity.' : 'No activity recorded.')));
}

function fail(error) {
  const expired = error.status === 401;
  main.dataset.state = 'error';
  main.replaceChildren(
    h('h1', { tabindex: '-1' }, 'Account activity'),
    h('div', { class: 'notice error', role: 'alert' }, expired
      ? [h('strong', null, 'This view has expired. '), 'Reload the page to see your activity again.']
      : error.status === 403
        ? [h('strong', null, 'Not allowed. '), error.message]
        : [h('strong', null, 'Your activity could not be loaded. '), error.message]));
  if (expired) {
    sessionStorage.removeItem(TOKEN_KEY);
    tell({ type: 'sealtrail-activity:expired' });
  }
}

async function loadMore(event) {
  if (loading || !cursor) return;
  loading = true;
  const button = event && event.target;
  if (button) button.disabled = true;
  const mine = generation;
  announce('Loading older activity…');
  try {
    const page = await get('/v1/events', { limit: String(PAGE_EVENTS), order: 'desc', cursor });
    if (mine !== generation) return;
    events = events.concat(page.events || []);
    cursor = page.next_cursor || null;
    render();
    announce(`${page.events.length} older events loaded.`);
    document.getElementById('older')?.focus();
  } catch (error) {
    fail(error);
  } finally {
    loading = false;
  }
}

async function load() {
  const mine = ++generation;
  token = readToken();
  main.dataset.ready = '0';
  if (!token) {
    fail(new Refused(0, 'The address of this view carries no viewer token (#token=…).'));
    return ready();
  }
  try {
    const [identity, page] = await Promise.all([
      get('/v1/whoami'),
      get('/v1/events', { limit: String(PAGE_EVENTS), order: 'desc' }),
    ]);
    if (mine !== generation) return;
    who = identity;
    events = page.events || [];
    cursor = page.next_cursor || null;
    render();
    announce(`${events.length} events loaded.`);
  } catch (error) {
    if (mine !== generation) return;
    fail(error);
  }
  ready();
}

function ready() {
  main.dataset.ready = '1';
  document.documentElement.dataset.ready = '1';
  performance.mark('sealtrail-ready:activity');
}

if (embedded) {
  document.body.classList.add('embedded');
  // The host page sizes its frame to the content (embed.js listens for this).
  const report = () => tell({ type: 'sealtrail-activity:height', height: Math.ceil(document.documentElement.scrollHeight) });
  new ResizeObserver(report).observe(document.body);
}
document.querySelector('.skip')?.addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
// A host that hands in a fresh token changes only the fragment.
addEventListener('hashchange', () => {
  if (new URLSearchParams(location.hash.slice(1)).get('token')) load();
});
load();
