// The live board: orders as they are placed and move through the saga, fed by the edge's
// server-sent events (GET /events), with the counters (orders per status, dead letters,
// consumer lag), each order's history on a click, and a form that places an order.
// Plain DOM, text only (nothing from the server is ever parsed as HTML).
'use strict';

(() => {
  const MAX_ROWS = 100;
  const HISTORY_AT_ONCE = 2;
  const STATUSES = ['PENDING', 'CONFIRMED', 'REJECTED', 'SHIPPED', 'DELIVERED', 'CANCELLED'];
  // An order's statuses only move forward; an older event never takes a row back.
  const RANK = { PENDING: 0, CONFIRMED: 1, SHIPPED: 2, DELIVERED: 3, REJECTED: 3, CANCELLED: 3 };
  // The saga's stages, and the events that end each one (ok, refused).
  const STAGES = [
    ['customer', 'CustomerValidated', 'CustomerRejected'],
    ['inventory', 'InventoryReserved', 'InventoryRejected'],
    ['payment', 'PaymentProcessed', 'PaymentFailed'],
    ['order', 'OrderConfirmed', 'OrderRejected'],
  ];

  const $ = (id) => document.getElementById(id);
  const tbody = $('orders').tBodies[0];
  const state = {
    token: '',
    source: null,
    rows: new Map(), // orderId -> row
    waiting: [], // rows whose history is to be read, newest last
    reading: 0,
    shown: null, // the order whose history is open
  };

  // --- talking to the edge -------------------------------------------------------------------

  function call(path, options = {}) {
    const headers = Object.assign({ Authorization: 'Bearer ' + state.token }, options.headers);
    return fetch(path, Object.assign({}, options, { headers, cache: 'no-store' }));
  }

  // The human sentence of a problem+json answer.
  async function problem(response) {
    try {
      const body = await response.json();
      return body.detail || body.title || String(response.status);
    } catch (_) {
      return response.status + ' ' + response.statusText;
    }
  }

  // RFC 3339 with up to nanoseconds, in milliseconds since the epoch (fractions kept).
  function millis(at) {
    const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(at || '');
    if (!m) return NaN;
    return Date.parse(m[1] + m[3]) + (m[2] ? parseFloat('0' + m[2]) * 1000 : 0);
  }

  function since(start, at) {
    const ms = millis(at) - start;
    if (!Number.isFinite(ms)) return '';
    return ms < 1000 ? '+' + ms.toFixed(1) + ' ms' : '+' + (ms / 1000).toFixed(2) + ' s';
  }

  function connection(text, kind) {
    const c = $('connection');
    c.textContent = text;
    c.className = 'state ' + kind;
  }

  // --- signing in and following the stream ---------------------------------------------------

  async function signIn(token) {
    state.token = token.trim();
    if (!state.token) return;
    connection('checking the token…', 'warn');
    let answer;
    try {
      answer = await call('/stats');
    } catch (e) {
      connection('the edge cannot be reached', 'error');
      return;
    }
    if (answer.status === 401) {
      connection('token refused: ' + (await problem(answer)), 'error');
      return;
    }
    if (answer.status === 403) {
      connection('an operator token is needed to watch every order', 'error');
      return;
    }
    if (!answer.ok) {
      connection(await problem(answer), 'error');
      return;
    }
    sessionStorage.setItem('oms.token', state.token);
    $('token').value = '';
    $('token').hidden = true;
    $('sign-in').hidden = true;
    $('sign-out').hidden = false;
    counters(await answer.json());
    follow();
    recent();
  }

  function signOut() {
    sessionStorage.removeItem('oms.token');
    if (state.source) state.source.close();
    state.source = null;
    state.token = '';
    state.rows.clear();
    state.waiting = [];
    tbody.replaceChildren();
    $('detail').hidden = true;
    $('token').hidden = false;
    $('sign-in').hidden = false;
    $('sign-out').hidden = true;
    $('empty').hidden = false;
    connection('signed out', 'off');
  }

  // EventSource sends no header: the token goes as access_token, on this stream only. After a
  // drop it reconnects by itself with Last-Event-ID, and the edge resumes right after it.
  function follow() {
    if (state.source) state.source.close();
    const source = new EventSource('/events?access_token=' + encodeURIComponent(state.token));
    state.source = source;
    source.addEventListener('open', () => connection('live', 'live'));
    source.addEventListener('error', () => {
      const closed = source.readyState === EventSource.CLOSED;
      connection(closed ? 'disconnected (sign in again)' : 'reconnecting…', closed ? 'error' : 'warn');
    });
    source.addEventListener('status', (e) => change(JSON.parse(e.data)));
    source.addEventListener('stats', (e) => counters(JSON.parse(e.data)));
  }

  // The latest orders, so the board is not empty until the next one.
  async function recent() {
    const answer = await call('/orders?limit=50');
    if (!answer.ok) return;
    const page = await answer.json();
    for (const order of page.orders.slice().reverse()) {
      const row = rowOf(order.orderId, order.customerId);
      if (!row.placedAt) row.placedAt = millis(order.createdAt);
      show(row, order.status, order.reason, '', order.updatedAt);
    }
  }

  // --- the board -----------------------------------------------------------------------------

  function cell(tr, className) {
    const td = document.createElement('td');
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  function rowOf(orderId, customerId) {
    let row = state.rows.get(orderId);
    if (row) return row;
    const tr = document.createElement('tr');
    tr.dataset.orderId = orderId;
    tr.tabIndex = 0;
    tr.title = orderId;
    const id = document.createElement('code');
    id.textContent = orderId.slice(-12);
    cell(tr, 'id').appendChild(id);
    cell(tr, 'customer').textContent = customerId || '';
    const status = document.createElement('span');
    status.className = 'badge';
    cell(tr, 'status').appendChild(status);
    row = {
      orderId,
      tr,
      status: null,
      badge: status,
      reason: cell(tr, 'reason'),
      stages: STAGES.map(([name]) => cell(tr, 'stage ' + name)),
      took: cell(tr, 'took'),
      placedAt: NaN,
      history: false,
    };
    tr.addEventListener('click', () => open(orderId));
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') open(orderId);
    });
    state.rows.set(orderId, row);
    tbody.prepend(tr);
    $('empty').hidden = true;
    while (tbody.rows.length > MAX_ROWS) {
      const last = tbody.rows[tbody.rows.length - 1];
      state.rows.delete(last.dataset.orderId);
      last.remove();
    }
    return row;
  }

  function show(row, status, reason, detail, at) {
    if (row.status && RANK[status] < RANK[row.status]) return;
    const moved = row.status !== status;
    row.status = status;
    row.tr.dataset.status = status;
    row.badge.textContent = status;
    row.badge.className = 'badge ' + status.toLowerCase();
    if (reason) {
      row.reason.textContent = reason;
      row.reason.title = detail || '';
    }
    if (status !== 'PENDING' && !row.took.textContent) row.took.textContent = since(row.placedAt, at).slice(1);
    if (moved) {
      row.tr.classList.remove('moved');
      void row.tr.offsetWidth; // restarts the highlight
      row.tr.classList.add('moved');
    }
    if (status !== 'PENDING' && !row.history) {
      row.history = true;
      state.waiting.push(row);
      readHistories();
    }
  }

  // One status change from the stream.
  function change(event) {
    const row = rowOf(event.orderId, event.customerId);
    if (event.type === 'OrderPlaced') row.placedAt = millis(event.at);
    show(row, event.status, event.reason, event.detail, event.at);
    if (state.shown === event.orderId) open(event.orderId);
  }

  // The stages of finished orders, from their history: newest first, a few at a time, only
  // for rows still on the board.
  function readHistories() {
    while (state.reading < HISTORY_AT_ONCE && state.waiting.length) {
      const row = state.waiting.pop();
      if (state.rows.get(row.orderId) !== row) continue;
      state.reading += 1;
      history(row.orderId)
        .then((entries) => entries && stages(row, entries))
        .catch(() => {})
        .finally(() => {
          state.reading -= 1;
          readHistories();
        });
    }
  }

  async function history(orderId) {
    const answer = await call('/orders/' + encodeURIComponent(orderId) + '/history');
    if (!answer.ok) return null;
    return (await answer.json()).history;
  }

  function placedAt(entries) {
    const placed = entries.find((e) => e.type === 'OrderPlaced');
    return placed ? millis(placed.at) : NaN;
  }

  function stages(row, entries) {
    const start = placedAt(entries);
    // A row that came back after it left the board learns its placing here.
    const ended = entries.find((e) => e.type === 'OrderConfirmed' || e.type === 'OrderRejected');
    if (ended && !row.took.textContent) row.took.textContent = since(start, ended.at).slice(1);
    STAGES.forEach(([, ok, refused], i) => {
      const entry = entries.find((e) => e.type === ok || e.type === refused);
      const td = row.stages[i];
      if (!entry) {
        td.textContent = '·';
        td.title = 'not reached';
        return;
      }
      td.textContent = (entry.type === ok ? '✓ ' : '✗ ') + since(start, entry.at);
      td.classList.toggle('ok', entry.type === ok);
      td.classList.toggle('refused', entry.type === refused);
      td.title = entry.type + (entry.reason ? ': ' + entry.reason : '');
    });
  }

  // --- one order's history -------------------------------------------------------------------

  async function open(orderId) {
    state.shown = orderId;
    for (const tr of tbody.rows) tr.classList.toggle('selected', tr.dataset.orderId === orderId);
    $('detail').hidden = false;
    $('detail-id').textContent = orderId;
    const entries = await history(orderId);
    if (state.shown !== orderId) return;
    const list = $('history');
    list.replaceChildren();
    if (!entries) {
      list.textContent = 'not readable now';
      return;
    }
    const start = placedAt(entries);
    for (const entry of entries) {
      const li = document.createElement('li');
      li.dataset.type = entry.type;
      if (/Rejected|Failed/.test(entry.type)) li.className = 'refused';
      const time = document.createElement('time');
      time.textContent = entry.type === 'OrderPlaced' ? new Date(start).toISOString() : since(start, entry.at);
      time.dateTime = entry.at;
      const name = document.createElement('b');
      name.textContent = entry.type;
      li.append(time, ' ', name);
      const said = [entry.status, entry.reason, entry.detail, entry.amount && 'amount ' + entry.amount,
        entry.trackingNumber && 'tracking ' + entry.trackingNumber].filter(Boolean);
      if (said.length) li.append(' ' + said.join(' · '));
      list.appendChild(li);
    }
  }

  // --- counters ------------------------------------------------------------------------------

  function counters(stats) {
    for (const status of STATUSES) {
      const n = stats.orders ? stats.orders[status] : undefined;
      $('count-' + status).textContent = n === undefined ? '–' : String(n);
    }
    $('dead-letters').textContent = stats.deadLetters === null ? '–' : String(stats.deadLetters);
    let lag = 0;
    const list = $('consumers');
    list.replaceChildren();
    for (const c of stats.consumers) {
      lag += c.pending + c.unacked;
      const li = document.createElement('li');
      const name = document.createElement('span');
      name.textContent = c.durable;
      const behind = document.createElement('b');
      behind.textContent = String(c.pending + c.unacked);
      behind.title = c.pending + ' not delivered, ' + c.unacked + ' not acknowledged (' + c.stream + ')';
      li.append(name, behind);
      list.appendChild(li);
    }
    $('lag').textContent = String(lag);
  }

  // --- placing an order ----------------------------------------------------------------------

  // "item1:2, item3" -> [{productId: "item1", quantity: 2}, {productId: "item3", quantity: 1}]
  function items(text) {
    const lines = [];
    for (const part of text.split(',')) {
      const m = /^\s*([^:\s]+)\s*(?::\s*(\d+))?\s*$/.exec(part);
      if (!m) return null;
      lines.push({ productId: m[1], quantity: m[2] ? Number(m[2]) : 1 });
    }
    return lines;
  }

  async function place(e) {
    e.preventDefault();
    const placed = $('placed');
    placed.className = '';
    if (!state.token) {
      placed.textContent = 'sign in first';
      placed.className = 'error';
      return;
    }
    const lines = items($('items').value);
    if (!lines) {
      placed.textContent = 'items: productId:quantity, separated by commas';
      placed.className = 'error';
      return;
    }
    const body = { customerId: $('customer').value.trim(), items: lines };
    const amount = $('amount').value.trim();
    if (amount) body.totalAmount = Number(amount);
    const answer = await call('/orders', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (answer.status !== 202) {
      placed.textContent = 'refused: ' + (await problem(answer));
      placed.className = 'error';
      return;
    }
    const accepted = await answer.json();
    placed.textContent = 'placed ' + accepted.orderId;
    placed.dataset.orderId = accepted.orderId;
    const row = rowOf(accepted.orderId, body.customerId);
    if (!row.status) show(row, 'PENDING', '', '', '');
  }

  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('token').value);
  });
  $('sign-out').addEventListener('click', signOut);
  $('order-form').addEventListener('submit', place);
  const kept = sessionStorage.getItem('oms.token');
  if (kept) signIn(kept);
})();
