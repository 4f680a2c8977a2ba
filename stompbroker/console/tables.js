// The console's tables (destinations, durable subscriptions, connections), drawn anew from each
// snapshot, and the small DOM helpers the page shares. Text goes in through textContent only.
//
// Each focusable element of a table is named by its data-focus; a redraw gives the focus back
// to the element of the same name, so keyboard use survives the snapshots. A destination's row
// is focusable itself: Enter or Space (or a click) selects it for its charts.
import { decimal, integer } from './charts.js';

/** What the tables depend on besides the snapshot; console.js keeps it current. */
export const view = {
  /** Whether the management API answers this page: admin actions are offered then only. */
  administering: false,
  /** The destination whose charts are shown: {kind, name}, or null. */
  selected: null,
  /** The console's own connection (the CONNECTED frame's ``session``): not offered a close. */
  ownSession: null,
  onSelect: () => {},
  onPeek: () => {},
  onAction: () => {},
};

/** The statistics topic the console itself reads: not offered for deletion. */
export const STATS_TOPIC = '/topic/stompbroker.stats';

/** The key under which a destination's samples and focus are known. */
export const destinationKey = (d) => `${d.kind} ${d.name}`;

export function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined && text !== null) made.textContent = String(text);
  if (className) made.className = className;
  return made;
}

function button(text, className, label, onClick) {
  const made = element('button', text, className);
  made.type = 'button';
  if (label) made.setAttribute('aria-label', label);
  made.addEventListener('click', onClick);
  return made;
}

/** Replaces ``parent``'s children; the element that had the focus in it gets it back. */
function replaceKeepingFocus(parent, children) {
  const active = document.activeElement;
  const key = active && parent.contains(active) ? active.dataset.focus : undefined;
  parent.replaceChildren(...children);
  if (key !== undefined) refocus(key, parent);
}

export function refocus(key, within = document) {
  const found = [...within.querySelectorAll('[data-focus]')].find((e) => e.dataset.focus === key);
  if (found) found.focus({ preventScroll: true });
}

function emptyRow(text, columns) {
  const row = element('tr');
  const cell = element('td', text, 'empty');
  cell.colSpan = columns;
  row.append(cell);
  return row;
}

export function bytes(count) {
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

export function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'],
    [Math.floor(s / 60) % 60, 'min'], [s % 60, 's']];
  const first = parts.findIndex(([n]) => n > 0);
  return first < 0 ? '0 s' : parts.slice(first, first + 2).map(([n, u]) => `${n} ${u}`).join(' ');
}

const COLUMNS = [
  ['depth', (d) => integer.format(d.depth)],
  ['consumers', (d) => integer.format(d.consumers)],
  ['in_flight', (d) => integer.format(d.in_flight)],
  ['scheduled', (d) => (typeof d.scheduled === 'number' ? integer.format(d.scheduled) : '–')],
  ['enqueue_rate', (d) => decimal.format(d.rates.enqueued)],
  ['dequeue_rate', (d) => decimal.format(d.rates.delivered)],
  ['enqueued', (d) => integer.format(d.enqueued)],
  ['delivered', (d) => integer.format(d.delivered)],
  ['dead_lettered', (d) => integer.format(d.dead_lettered)],
];

export function destinationLabel(d) {
  if (d.kind === 'durable' && d.durable) {
    return `${d.address} (durable ${d.durable.client_id}:${d.durable.subscription_name})`;
  }
  return d.address;
}

/** The admin actions a destination offers (none unless the API answers this page). */
function destinationActions(d) {
  if (!view.administering) return [];
  const actions = [];
  const queueLike = d.kind === 'queue' || d.kind === 'durable';
  if (queueLike && d.active) actions.push('purge');
  if (d.dead_letter_queue && d.active) actions.push('replay');
  if (!d.kind.startsWith('temp-') && d.address !== STATS_TOPIC) actions.push('delete');
  return actions;
}

function actionButtons(actions, target, what, focusKey) {
  return actions.map((name) => {
    const made = button(name, `action ${name}`, `${name} ${what}`,
      () => view.onAction(name, target, what, `${focusKey} ${name}`));
    made.dataset.action = name;
    made.dataset.focus = `${focusKey} ${name}`;
    return made;
  });
}

function destinationRow(d) {
  const label = destinationLabel(d);
  const key = `destination ${destinationKey(d)}`;
  const row = element('tr', undefined, d.active ? '' : 'inactive');
  row.dataset.kind = d.kind;
  row.dataset.name = d.name;
  row.dataset.focus = key;
  row.tabIndex = 0;
  const { selected } = view;
  const chosen = selected !== null && selected.kind === d.kind && selected.name === d.name;
  if (chosen) row.setAttribute('aria-current', 'true');
  if (chosen) row.classList.add('selected');
  row.addEventListener('click', (event) => {
    if (!event.target.closest('button')) view.onSelect(d);
  });
  row.addEventListener('keydown', (event) => {
    if (event.target === row && (event.key === 'Enter' || event.key === ' ')) {
      event.preventDefault();
      view.onSelect(d);
    }
  });
  row.append(element('td', d.kind), element('td', label, 'name'));
  for (const [field, show] of COLUMNS) {
    const cell = element('td', show(d), 'number');
    cell.dataset.field = field;
    if (field === 'depth' && d.depth > 0) cell.classList.add('waiting');
    if (field === 'dead_lettered' && d.dead_lettered > 0) cell.classList.add('dead');
    row.append(cell);
  }
  const cell = element('td', undefined, 'actions');
  if (d.kind === 'queue') {
    const peekButton = button('peek', 'peek', `peek at ${d.address}`, () => view.onPeek(d.address));
    peekButton.dataset.focus = `${key} peek`;
    cell.append(peekButton);
  }
  cell.append(...actionButtons(destinationActions(d), d, `${d.kind} ${label}`, key));
  row.append(cell);
  return row;
}

/** The destinations table's rows: those ``filter`` (lower case) names, forgotten ones too
 * with ``inactive``. */
export function renderDestinations(body, destinations, filter, inactive) {
  const rows = destinations
    .filter((d) => inactive || d.active)
    .filter((d) => !filter || destinationLabel(d).toLowerCase().includes(filter))
    .map(destinationRow);
  if (rows.length === 0) rows.push(emptyRow('no destinations to show', COLUMNS.length + 3));
  replaceKeepingFocus(body, rows);
}

// -- durable subscriptions and connections ----------------------------------------------------

function durableState(durable) {
  const words = [durable.attached ? 'attached' : 'detached'];
  if (durable.shared) words.push('shared');
  if (durable.transient) words.push('transient');
  if (durable.no_local) words.push('no local');
  return words.join(', ');
}

/** The durable subscriptions table's rows (live ones only). */
export function renderDurables(body, destinations) {
  const rows = [];
  for (const d of destinations) {
    if (d.kind !== 'durable' || !d.durable || !d.active) continue;
    const s = d.durable;
    const row = element('tr');
    row.dataset.name = d.name;
    const cells = [
      ['client_id', s.client_id, 'name'], ['subscription', s.subscription_name, 'name'],
      ['topic', d.address, 'name'], ['state', durableState(s)],
      ['pending', integer.format(d.depth), 'number'],
      ['in_flight', integer.format(d.in_flight), 'number'],
      ['delivered', integer.format(d.delivered), 'number'],
    ];
    for (const [field, text, className] of cells) {
      const cell = element('td', text, className);
      cell.dataset.field = field;
      row.append(cell);
    }
    const actions = element('td', undefined, 'actions');
    actions.append(...actionButtons(destinationActions(d), d,
      `durable subscription ${s.client_id}:${s.subscription_name}`, `durable ${d.name}`));
    row.append(actions);
    rows.push(row);
  }
  if (rows.length === 0) rows.push(emptyRow('no durable subscriptions', 8));
  replaceKeepingFocus(body, rows);
}

/** Up to this many of a connection's subscriptions are named in its row. */
const SUBSCRIPTIONS_NAMED = 3;

function subscriptionsText(subscriptions) {
  if (subscriptions.length === 0) return 'none';
  const named = subscriptions.slice(0, SUBSCRIPTIONS_NAMED)
    .map((s) => `${s.destination} (${s.ack})`);
  const more = subscriptions.length - named.length;
  return `${subscriptions.length}: ${named.join(', ')}${more > 0 ? `, and ${more} more` : ''}`;
}

function connectionRow(c) {
  const own = c.id === view.ownSession;
  const row = element('tr', undefined, own ? 'own' : '');
  row.dataset.id = c.id;
  const login = (c.user === null ? 'anonymous' : c.user) + (own ? ' (this console)' : '');
  const since = `${new Date(c.connected_at * 1000).toLocaleTimeString()}`
    + ` (${duration(c.connected_for_s)})`;
  const inFlight = c.subscriptions.reduce((sum, s) => sum + s.in_flight, 0);
  const cells = [
    ['user', login], ['peer', c.peer, 'name'],
    ['transport', c.version ? `${c.transport}, STOMP ${c.version}` : c.transport],
    ['client_id', c.client_id || '–', 'name'], ['since', since],
    ['subscriptions', subscriptionsText(c.subscriptions)],
    ['in_flight', integer.format(inFlight), 'number'],
    ['bytes_in', bytes(c.bytes_in), 'number'], ['bytes_out', bytes(c.bytes_out), 'number'],
  ];
  for (const [field, text, className] of cells) {
    const cell = element('td', text, className);
    cell.dataset.field = field;
    row.append(cell);
  }
  const actions = element('td', undefined, 'actions');
  if (view.administering && !own) {
    const who = `the connection of ${c.user === null ? 'an anonymous client' : c.user}`
      + ` from ${c.peer}`;
    actions.append(...actionButtons(['close'], c, who, `connection ${c.id}`));
  }
  row.append(actions);
  return row;
}

/** The connections table's rows, oldest first. */
export function renderConnections(body, connections) {
  const rows = connections.map(connectionRow);
  if (rows.length === 0) rows.push(emptyRow('no open connections', 10));
  replaceKeepingFocus(body, rows);
}

