// The console's administration: the management API's actions (purge, delete, replay dead
// letters, close a connection), each behind a confirmation in a native <dialog>.
//
// The API is on this same origin, under /api/ (stompbroker/transport/_api.py). It lets in
// what the broker's configuration says: an admin user's HTTP Basic credentials once users are
// configured (the console sends the STOMP login it has), or anyone on a loopback listener while
// there are none. The console asks it once per login (GET /api/broker) and offers the actions
// only when it answered; a refusal later hides them again.

const $ = (id) => document.getElementById(id);

/** A refusal by the API: its HTTP status and its own words ({"error": "..."}). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function basic(credentials) {
  const pair = new TextEncoder().encode(`${credentials.login}:${credentials.passcode}`);
  return `Basic ${btoa(String.fromCharCode(...pair))}`;
}

/** One API call; resolves with its JSON, rejects with an ApiError. */
export async function callApi(method, path, credentials) {
  const headers = { accept: 'application/json' };
  if (credentials.login) headers.authorization = basic(credentials);
  // credentials: 'omit' -- no cookies, and no browser login prompt on a 401.
  const response = await fetch(path, { method, headers, credentials: 'omit', cache: 'no-store' });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const said = data && typeof data.error === 'string' ? data.error : response.statusText;
    throw new ApiError(response.status, said);
  }
  return data;
}

/** Whether the API answers this page (with these credentials): whether to offer actions. */
export async function mayAdminister(credentials) {
  try {
    await callApi('GET', '/api/broker', credentials);
    return true;
  } catch {
    return false;
  }
}

const destinationPath = (d, action) => `/api/destinations/${encodeURIComponent(d.kind)}/`
  + `${encodeURIComponent(d.name)}/${action}`;
const plural = (count, word) => `${count} ${word}${count === 1 ? '' : 's'}`;

/**
 * What each action asks, calls and reports. ``target`` is a destination of the snapshot, or a
 * connection ({id, user, peer}); ``what`` names it for people.
 */
export const ACTIONS = {
  purge: {
    title: (what) => `Purge ${what}?`,
    text: 'Every message waiting in it is dropped, for good. Messages delivered and not yet'
      + ' acknowledged stay.',
    confirm: 'Purge',
    call: (d) => ['POST', destinationPath(d, 'purge')],
    done: (result, what) => `purged ${plural(result.purged, 'message')} from ${what}`,
  },
  delete: {
    title: (what) => `Delete ${what}?`,
    text: 'It goes with every message it holds and its statistics. The broker refuses while'
      + ' a consumer is attached.',
    confirm: 'Delete',
    call: (d) => ['POST', destinationPath(d, 'delete')],
    done: (result, what) => `deleted ${what} with ${plural(result.messages, 'message')}`,
  },
  replay: {
    title: (what) => `Replay the dead letters of ${what}?`,
    text: 'Each message waiting here is sent back to its original destination (those in'
      + ' memory: replay again for the rest).',
    confirm: 'Replay',
    call: (d) => ['POST', destinationPath(d, 'replay')],
    done: (r, what) => `replayed ${plural(r.replayed, 'dead letter')} from ${what};`
      + ` ${r.skipped} skipped, ${r.failed} failed, ${r.remaining} remaining`,
  },
  close: {
    title: (what) => `Close ${what}?`,
    text: 'The client gets an ERROR "closed by an administrator" and is disconnected; it may'
      + ' connect again.',
    confirm: 'Close',
    call: (c) => ['POST', `/api/connections/${encodeURIComponent(c.id)}/close`],
    done: (result, what) => `closed ${what}`,
  },
};

/** Shows the dialog; resolves true on its confirm button, false on Cancel or Escape. */
function confirmed(title, text, confirm) {
  const dialog = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = confirm;
  dialog.returnValue = '';
  dialog.showModal();
  $('confirm-cancel').focus(); // the safe choice is the default
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/**
 * Asks, then runs ``name`` on ``target``: resolves with what to tell the user, or null when
 * cancelled; rejects with an ApiError.
 */
export async function administer(name, target, what, credentials) {
  const action = ACTIONS[name];
  if (!await confirmed(action.title(what), action.text, action.confirm)) return null;
  const [method, path] = action.call(target);
  return action.done(await callApi(method, path, credentials), what);
}

$('confirm-ok').addEventListener('click', () => $('confirm').close('ok'));
$('confirm-cancel').addEventListener('click', () => $('confirm').close('cancel'));
