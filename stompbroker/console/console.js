// The web console: live statistics, a publish form and a queue peek, over the broker's own
// STOMP-over-WebSocket (stomp.js beside this file). Plain DOM; every piece of broker or message
// data goes into the page through textContent, never as HTML.
//
// One long-lived connection subscribes to the statistics topic and redraws the page on each
// snapshot (docs/operations.md, "The JSON API", gives its shape). Publishing and peeking each
// open a short connection of their own, so that an ERROR (which closes a STOMP connection)
// ends only that action. Credentials, once entered, stay in this page's memory only.
import { StompClient, StompError, bodyText } from './stomp.js';

const STATS_TOPIC = '/topic/stompbroker.stats';
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
const integer = new Intl.NumberFormat('en-US');
const decimal = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });

const credentials = { login: '', passcode: '' };
let statsClient = null;
let retryTimer = null;
let retryDelay = RETRY_FIRST;
let lastSnapshot = null;

// -- small helpers --------------------------------------------------------------------------

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined && text !== null) made.textContent = String(text);
  if (className) made.className = className;
  return made;
}

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

function bytes(count) {
  if (count === null || count === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : decimal.format(value)} ${units[unit]}`;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'],
    [Math.floor(s / 60) % 60, 'min'], [s % 60, 's']];
  const first = parts.findIndex(([n]) => n > 0);
  return first < 0 ? '0 s' : parts.slice(first, first + 2).map(([n, u]) => `${n} ${u}`).join(' ');
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
    .then(() => {
      if (statsClient !== client) return undefined; // replaced meanwhile (a new login)
      retryDelay = RETRY_FIRST;
      showLogin(false);
      $('logout').hidden = !credentials.login;
      $('login-open').hidden = Boolean(credentials.login);
      setStatus('connected', `${connectedAs()} · waiting for the first statistics…`);
      return client.subscribe(STATS_TOPIC, (frame) => received(frame));
    })
    .catch(() => {}); // lost() has the reason
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
  const old = statsClient;
  statsClient = null;
  if (old) old.disconnect();
  retryDelay = RETRY_FIRST;
  watch();
}

function received(frame) {
  let snapshot;
  try {
    snapshot = JSON.parse(bodyText(frame.body));
  } catch (error) {
    setStatus('down', `a statistics message that is not JSON: ${error.message}`);
    return;
  }
  lastSnapshot = snapshot;
  remember(snapshot);
  render(snapshot);
  renderChart();
  const when = new Date(snapshot.time * 1000).toLocaleTimeString();
  setStatus('connected', `${connectedAs()} · updated ${when}`);
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

function render(snapshot) {
  renderBroker(snapshot.broker);
  renderDestinations();
  const truncated = snapshot.truncated && snapshot.truncated.destinations;
  $('destinations-note').textContent = truncated
    ? 'Only the 1,000 deepest destinations are listed.' : '';
}

// -- charts: a ring buffer of the last samples, drawn as plain SVG ---------------------------

/** How many statistics samples the charts keep (5 minutes at a 1 s interval). */
const SAMPLES_KEPT = 300;
const samples = [];

function remember(snapshot) {
  const m = snapshot.broker.messages;
  const depth = snapshot.destinations.reduce((sum, d) => sum + (d.active ? d.depth : 0), 0);
  samples.push({ time: snapshot.time, in: m.rates.enqueued, out: m.rates.delivered, depth });
  if (samples.length > SAMPLES_KEPT) samples.shift();
}

function line(svg, values, most, width, height, className) {
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const points = values.map(
    (v, i) => `${(i * step).toFixed(1)},${(height - (v / most) * height).toFixed(1)}`);
  const drawn = document.createElementNS(svg.namespaceURI, 'polyline');
  drawn.setAttribute('points', points.join(' '));
  drawn.setAttribute('class', className);
  return drawn;
}

function renderChart() {
  const svg = $('broker-chart-svg');
  const width = 600;
  const height = 120;
  const most = Math.max(1, ...samples.map((s) => Math.max(s.in, s.out, s.depth)));
  svg.replaceChildren(
    line(svg, samples.map((s) => s.in), most, width, height, 'series-in'),
    line(svg, samples.map((s) => s.out), most, width, height, 'series-out'),
    line(svg, samples.map((s) => s.depth), most, width, height, 'series-depth'),
  );
  svg.dataset.samples = String(samples.length);
  const last = samples[samples.length - 1];
  $('broker-chart-caption').textContent = `last ${samples.length} samples (in: blue, out:`
    + ` green, depth: dashed red), scale 0 to`
    + ` ${integer.format(most)}; now: in ${decimal.format(last.in)}/s,`
    + ` out ${decimal.format(last.out)}/s, depth ${integer.format(last.depth)}`;
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
  const list = $('broker');
  list.replaceChildren();
  for (const [name, value] of items) {
    const item = element('div', undefined, 'figure');
    item.dataset.field = name;
    item.append(element('dt', name), element('dd', value));
    list.append(item);
  }
}

const COLUMNS = [
  ['depth', (d) => integer.format(d.depth)],
  ['consumers', (d) => integer.format(d.consumers)],
  ['in_flight', (d) => integer.format(d.in_flight)],
  ['enqueue_rate', (d) => decimal.format(d.rates.enqueued)],
  ['dequeue_rate', (d) => decimal.format(d.rates.delivered)],
  ['enqueued', (d) => integer.format(d.enqueued)],
  ['delivered', (d) => integer.format(d.delivered)],
  ['dead_lettered', (d) => integer.format(d.dead_lettered)],
];

function destinationLabel(d) {
  if (d.kind === 'durable' && d.durable) {
    return `${d.address} (durable ${d.durable.client_id}:${d.durable.subscription_name})`;
  }
  return d.address;
}

function renderDestinations() {
  if (!lastSnapshot) return;
  const filter = $('filter').value.trim().toLowerCase();
  const inactive = $('show-inactive').checked;
  const body = $('destinations').tBodies[0];
  const rows = [];
  for (const d of lastSnapshot.destinations) {
    const label = destinationLabel(d);
    if (!inactive && !d.active) continue;
    if (filter && !label.toLowerCase().includes(filter)) continue;
    const row = element('tr', undefined, d.active ? '' : 'inactive');
    row.dataset.kind = d.kind;
    row.dataset.name = d.name;
    row.append(element('td', d.kind), element('td', label, 'name'));
    for (const [field, show] of COLUMNS) {
      const cell = element('td', show(d), 'number');
      cell.dataset.field = field;
      if (field === 'depth' && d.depth > 0) cell.classList.add('waiting');
      if (field === 'dead_lettered' && d.dead_lettered > 0) cell.classList.add('dead');
      row.append(cell);
    }
    const action = element('td');
    if (d.kind === 'queue') {
      const button = element('button', 'peek', 'peek');
      button.type = 'button';
      button.addEventListener('click', () => peekAt(d.address));
      action.append(button);
    }
    row.append(action);
    rows.push(row);
  }
  if (rows.length === 0) {
    const row = element('tr');
    const cell = element('td', 'no destinations to show', 'empty');
    cell.colSpan = COLUMNS.length + 3;
    row.append(cell);
    rows.push(row);
  }
  body.replaceChildren(...rows);
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
$('filter').addEventListener('input', renderDestinations);
$('show-inactive').addEventListener('change', renderDestinations);
watch();
