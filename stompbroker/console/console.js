// The web console: live statistics, charts, a publish form and a queue peek, over the broker's
// own STOMP-over-WebSocket (stomp.js beside this file); admin actions through the management
// API (admin.js); pictures in charts.js. Plain DOM; every piece of broker or message data goes
// into the page through textContent, never as HTML.
//
// One long-lived connection subscribes to the statistics topic and redraws the page on each
// snapshot (docs/operations.md, "The JSON API", gives its shape). Publishing and peeking each
// open a short connection of their own, so that an ERROR (which closes a STOMP connection)
// ends only that action. Credentials, once entered, stay in this page's memory only.
//
// The tables are tables.js's: this module keeps their ``view`` (who may administer, which
// destination is selected) current.
import { ApiError, administer, mayAdminister } from './admin.js';
import { decimal, drawHistogram, drawRates, integer } from './charts.js';
import { StompClient, StompError, bodyText } from './stomp.js';
import {
  STATS_TOPIC, bytes, destinationKey, destinationLabel, duration, element, refocus,
  renderConnections, renderDestinations, renderDurables, view,
} from './tables.js';

/** ERROR messages that mean: ask the user for a login. */
const LOGIN_ERRORS = new Set(['login required', 'login failed']);
/** The peek view lists this many messages, and this many characters of each body. */
const PEEK_SHOWN = 100;
const BODY_SHOWN = 500;
/** How long a peek may take, in ms. */
const PEEK_TIMEOUT = 15000;
const RETRY_FIRST = 1000;
const RETRY_MOST = 30000;

const $ = (id) => document.getElementById(id);
const wsPath = document.querySelector('meta[name="stompbroker-websocket-path"]').content;
const brokerUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${wsPath}`;

const credentials = { login: '', passcode: '' };
let statsClient = null;
let retryTimer = null;
let retryDelay = RETRY_FIRST;
let lastSnapshot = null;
/** Bumped at each login, so that a late answer about an earlier one is ignored. */
let loginGeneration = 0;

// -- small helpers --------------------------------------------------------------------------

function setStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;
  status.textContent = text;
}

function showResult(id, state, text) {
  const result = $(id);
  result.dataset.state = state;
  result.textContent = text;
}

function describe(error) {
  if (error instanceof StompError) {
    const detail = bodyText(error.frame.body);
    return `ERROR: ${error.message}${detail ? ` (${detail.trim()})` : ''}`;
  }
  return error ? error.message : 'disconnected';
}

function newClient() {
  return new StompClient(brokerUrl, { login: credentials.login, passcode: credentials.passcode });
}

// -- the statistics connection --------------------------------------------------------------

function watch() {
  clearTimeout(retryTimer);
  setStatus('connecting', `connecting to ${brokerUrl}…`);
  const client = newClient();
  statsClient = client;
  client.onClose = (reason) => {
    if (statsClient === client) lost(reason);
  };
  client.connect()
    .then((connected) => {
      if (statsClient !== client) return undefined; // replaced meanwhile (a new login)
      view.ownSession = connected.headers.session || null;
      checkAdministering();
      retryDelay = RETRY_FIRST;
      showLogin(false);
      $('logout').hidden = !credentials.login;
      $('login-open').hidden = Boolean(credentials.login);
      setStatus('connected', `${connectedAs()} · waiting for the first statistics…`);
      return client.subscribe(STATS_TOPIC, (frame) => received(frame));
    })
    .catch(() => {}); // lost() has the reason
}

/** Asks the API once whether it answers this login; shows or hides the admin actions. */
async function checkAdministering() {
  const generation = loginGeneration;
  const answer = await mayAdminister(credentials);
  if (generation === loginGeneration) setAdministering(answer);
}

/** Offers the admin actions, or takes them away, and says so in the header. */
function setAdministering(allowed) {
  $('admin-note').textContent = allowed ? 'admin actions offered'
    : 'read only: the management API does not answer this login';
  $('admin-note').dataset.state = allowed ? 'admin' : 'read-only';
  if (allowed === view.administering) return;
  view.administering = allowed;
  render();
}

function connectedAs() {
  return credentials.login ? `connected as ${credentials.login}` : 'connected';
}

function lost(reason) {
  statsClient = null;
  if (reason instanceof StompError && LOGIN_ERRORS.has(reason.message)) {
    setStatus('login', describe(reason));
    showLogin(true, describe(reason));
    return;
  }
  const seconds = retryDelay / 1000;
  setStatus('down', `disconnected: ${describe(reason)}; trying again in ${seconds} s`);
  retryTimer = setTimeout(watch, retryDelay);
  retryDelay = Math.min(retryDelay * 2, RETRY_MOST);
}

function restart() {
  loginGeneration += 1;
  view.administering = false;
  $('admin-note').textContent = '';
  $('admin-note').dataset.state = 'unknown';
  const old = statsClient;
  statsClient = null;
  if (old) old.disconnect();
  retryDelay = RETRY_FIRST;
  watch();
}

function received(frame) {
  const started = performance.now();
  let snapshot;
  try {
    snapshot = JSON.parse(bodyText(frame.body));
  } catch (error) {
    setStatus('down', `a statistics message that is not JSON: ${error.message}`);
    return;
  }
  lastSnapshot = snapshot;
  remember(snapshot);
  render();
  const when = new Date(snapshot.time * 1000).toLocaleTimeString();
  setStatus('connected', `${connectedAs()} · updated ${when}`);
  // What a snapshot costs the page (parse, remember, redraw), for the browser's profiler.
  performance.measure('stompbroker snapshot', { start: started });
}

// -- login ----------------------------------------------------------------------------------

function showLogin(shown, reason = '') {
  $('login').hidden = !shown;
  $('login-reason').textContent = reason;
  if (shown) $('login-name').focus();
}

function logIn(event) {
  event.preventDefault();
  credentials.login = $('login-name').value;
  credentials.passcode = $('login-passcode').value;
  $('login-passcode').value = '';
  showLogin(false);
  restart();
}

function logOut() {
  credentials.login = '';
  credentials.passcode = '';
  $('logout').hidden = true;
  $('login-open').hidden = false;
  restart();
}

// -- rendering a snapshot -------------------------------------------------------------------

function render() {
  if (!lastSnapshot) return;
  const snapshot = lastSnapshot;
  renderBroker(snapshot.broker);
  drawRates($('broker-chart-svg'), $('broker-chart-caption'), samples);
  redrawDestinations();
  renderDetail();
  renderDurables($('durables').tBodies[0], snapshot.destinations);
  renderConnections($('connections').tBodies[0], snapshot.connections);
  const truncated = snapshot.truncated || {};
  $('destinations-note').textContent = truncated.destinations
    ? 'Only the 1,000 deepest destinations are listed.' : '';
  $('connections-note').textContent = truncated.connections
    ? 'Only the 1,000 oldest connections are listed.' : '';
}

// -- the charts' samples: ring buffers of the last snapshots ----------------------------------

/** How many statistics samples the charts keep (5 minutes at a 1 s interval). */
const SAMPLES_KEPT = 300;
/** The broker's samples, and each listed destination's (by destinationKey). */
const samples = [];
const destinationSamples = new Map();

function keep(ring, sample) {
  ring.push(sample);
  if (ring.length > SAMPLES_KEPT) ring.shift();
}

function remember(snapshot) {
  const m = snapshot.broker.messages;
  const depth = snapshot.destinations.reduce((sum, d) => sum + (d.active ? d.depth : 0), 0);
  keep(samples, { time: snapshot.time, in: m.rates.enqueued, out: m.rates.delivered, depth });
  const listed = new Set();
  for (const d of snapshot.destinations) {
    const key = destinationKey(d);
    listed.add(key);
    let ring = destinationSamples.get(key);
    if (!ring) destinationSamples.set(key, ring = []);
    keep(ring, { time: snapshot.time, in: d.rates.enqueued, out: d.rates.delivered,
      depth: d.depth });
  }
  for (const key of destinationSamples.keys()) {
    if (!listed.has(key)) destinationSamples.delete(key); // deleted, or no longer listed
  }
}

// -- one destination's charts ---------------------------------------------------------------

function select(d) {
  view.selected = { kind: d.kind, name: d.name };
  render();
  $('detail').scrollIntoView({ block: 'nearest' });
}

function redrawDestinations() {
  if (!lastSnapshot) return;
  renderDestinations($('destinations').tBodies[0], lastSnapshot.destinations,
    $('filter').value.trim().toLowerCase(), $('show-inactive').checked);
}

function selectedDestination() {
  const { selected } = view;
  if (!selected || !lastSnapshot) return null;
  return lastSnapshot.destinations.find(
    (d) => d.kind === selected.kind && d.name === selected.name) || null;
}

function renderDetail() {
  const d = selectedDestination();
  $('detail').hidden = d === null;
  if (d === null) return;
  $('detail-title').textContent = `${d.kind} ${destinationLabel(d)}`;
  drawRates($('detail-chart-svg'), $('detail-chart-caption'),
    destinationSamples.get(destinationKey(d)) || []);
  const bounds = lastSnapshot.latency_bounds_s || [];
  const latency = d.latency || {};
  drawHistogram($('latency-delivery-svg'), $('latency-delivery-caption'),
    latency.enqueue_to_delivery, bounds, 'waiting before the first delivery');
  drawHistogram($('latency-ack-svg'), $('latency-ack-caption'),
    latency.delivery_to_ack, bounds, 'held by a client-ack consumer until its ACK');
}

function renderBroker(broker) {
  $('broker-name').textContent = `${broker.name} ${broker.version}`;
  const m = broker.messages;
  const kinds = Object.entries(broker.destinations).filter(([, n]) => n > 0)
    .map(([kind, n]) => `${integer.format(n)} ${kind}`).join(', ') || 'none';
  const items = [
    ['uptime', duration(broker.uptime_s)],
    ['connections', `${integer.format(broker.connections.open)} open`
      + ` (${integer.format(broker.connections.opened)} since start)`],
    ['destinations', kinds],
    ['messages in', `${decimal.format(m.rates.enqueued)}/s (${integer.format(m.enqueued)} in all)`],
    ['messages out', `${decimal.format(m.rates.delivered)}/s (${integer.format(m.delivered)} in all)`],
    ['dead letters', `${integer.format(m.dead_lettered)} (expired ${integer.format(m.expired)},`
      + ` dropped ${integer.format(m.dropped)})`],
    ['traffic', `${bytes(broker.connections.bytes_in)} in, ${bytes(broker.connections.bytes_out)} out`],
    ['memory', bytes(broker.memory.rss_bytes)],
    ['store', `${broker.store.kind}, ${bytes(broker.store.size_bytes)}`],
  ];
  const cluster = broker.cluster;
  if (cluster) {
    const names = cluster.nodes.map((n) => n.name).join(', ') || 'none read yet';
    items.push(['cluster', `node ${cluster.node}; ${integer.format(cluster.nodes.length)} live: ${names}`]);
  }
  const list = $('broker');
  list.replaceChildren();
  for (const [name, value] of items) {
    const item = element('div', undefined, 'figure');
    item.dataset.field = name;
    item.append(element('dt', name), element('dd', value));
    list.append(item);
  }
}

// -- admin actions --------------------------------------------------------------------------

async function act(name, target, what, focusKey) {
  let text;
  try {
    text = await administer(name, target, what, credentials);
  } catch (error) {
    const status = error instanceof ApiError ? ` (HTTP ${error.status})` : '';
    showResult('action-result', 'error', `could not ${name} ${what}: ${error.message}${status}`);
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      setAdministering(false);
    }
    return;
  } finally {
    refocus(focusKey);
  }
  if (text !== null) showResult('action-result', 'ok', text);
}

// -- publishing -----------------------------------------------------------------------------

/** "name: value" lines; throws on a line without a colon. */
function parseHeaders(text) {
  const headers = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`a header line needs "name: value": ${line}`);
    headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return headers;
}

async function publish(event) {
  event.preventDefault();
  const destination = $('publish-destination').value.trim();
  let headers;
  try {
    headers = parseHeaders($('publish-headers').value);
  } catch (error) {
    showResult('publish-result', 'error', error.message);
    return;
  }
  if ($('publish-persistent').checked) headers.push(['persistent', 'true']);
  showResult('publish-result', 'busy', `sending to ${destination}…`);
  const client = newClient();
  try {
    await client.connect();
    const receipt = await client.send(destination, $('publish-body').value, headers);
    showResult('publish-result', 'ok',
      `sent to ${destination}: RECEIPT ${receipt.headers['receipt-id']}`);
  } catch (error) {
    showResult('publish-result', 'error', describe(error));
  } finally {
    client.disconnect();
  }
}

// -- peeking --------------------------------------------------------------------------------

function peekAt(address) {
  $('peek-destination').value = address;
  $('peek').scrollIntoView({ block: 'start' });
  peek();
}

async function peek(event) {
  if (event) event.preventDefault();
  const destination = $('peek-destination').value.trim();
  const selector = $('peek-selector').value.trim();
  const list = $('peek-list');
  list.replaceChildren();
  showResult('peek-result', 'busy', `peeking at ${destination}…`);
  const messages = [];
  const client = newClient();
  let ended;
  const end = new Promise((resolve, reject) => {
    ended = resolve;
    client.onClose = (reason) => reject(reason || new Error('disconnected'));
    setTimeout(() => reject(new Error('the peek took too long')), PEEK_TIMEOUT);
  });
  end.catch(() => {});
  try {
    await client.connect();
    const headers = [['browser', 'true']];
    if (selector) headers.push(['selector', selector]);
    await client.subscribe(destination, (frame) => {
      if (frame.headers.browser === 'end') ended();
      else messages.push(frame);
    }, headers);
    await end;
    renderPeek(destination, messages);
  } catch (error) {
    showResult('peek-result', 'error', describe(error));
  } finally {
    client.onClose = () => {};
    client.disconnect();
  }
}

function renderPeek(destination, messages) {
  const count = messages.length;
  const shown = count > PEEK_SHOWN ? `, the first ${PEEK_SHOWN} shown` : '';
  const what = count === 1 ? '1 message waits' : `${integer.format(count)} messages wait`;
  showResult('peek-result', 'done',
    count === 0 ? `no message waits in ${destination}`
      : `${what} in ${destination}${shown}; none was consumed`);
  const list = $('peek-list');
  for (const frame of messages.slice(0, PEEK_SHOWN)) {
    const item = element('li', undefined, 'message');
    const lines = Object.entries(frame.headers)
      .filter(([name]) => name !== 'subscription' && name !== 'ack')
      .map(([name, value]) => `${name}: ${value}`);
    item.append(element('pre', lines.join('\n'), 'headers'));
    const text = bodyText(frame.body);
    let body;
    if (text === null) body = `(${integer.format(frame.body.length)} bytes, not UTF-8 text)`;
    else if (text.length > BODY_SHOWN) {
      body = `${text.slice(0, BODY_SHOWN)}… (${integer.format(frame.body.length)} bytes)`;
    } else body = text;
    item.append(element('pre', body, text === null ? 'body binary' : 'body'));
    list.append(item);
  }
}

// -- start ----------------------------------------------------------------------------------

$('login-form').addEventListener('submit', logIn);
$('login-open').addEventListener('click', () => showLogin(true, ''));
$('logout').addEventListener('click', logOut);
$('publish-form').addEventListener('submit', publish);
$('peek-form').addEventListener('submit', peek);
$('filter').addEventListener('input', redrawDestinations);
$('show-inactive').addEventListener('change', redrawDestinations);
$('detail-close').addEventListener('click', () => {
  const { selected } = view;
  view.selected = null;
  render();
  if (selected) refocus(`destination ${destinationKey(selected)}`);
});
view.onSelect = select;
view.onPeek = peekAt;
view.onAction = act;
watch();
