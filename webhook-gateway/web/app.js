/* paylab live dashboard: balances and transactions pushed over WebSocket, forms that call
 * the wallet, and the bank's fault switches. Plain browser JavaScript, no build step.
 * Money is always an integer count of paise; formatting and parsing use string/BigInt math. */
'use strict';

(function () {
  const MAX_ROWS = 100;
  const POLL_MS = 3000;             /* balances without a live subscription */
  const FAULTS_POLL_MS = 3000;      /* picks up `paylab faults set` from a terminal */
  const UNSAFE_POLL_MS = 3000;      /* GET /healthz of the wallet and the bank: teaching switches */
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 5000;
  const MAX_DETAIL_FETCHES = 4;     /* concurrent GET /v1/transactions/{id} */
  const MAX_DETAIL_QUEUE = 60;

  const MAX_MINOR = 1000000000000n; /* 10^12 paise, the API's limit */
  const FINAL = new Set(['succeeded', 'failed']);
  const RANK = { pending: 0, unknown: 1, succeeded: 2, failed: 2 };
  const KIND_LABEL = { topup: 'Top-up', withdrawal: 'Withdrawal', p2p: 'Transfer' };

  const PRESETS = {
    slow:    { on: { latency_ms: 3000 }, off: { latency_ms: 0 } },
    down:    { on: { down: true }, off: { down: false } },
    lost:    { on: { lost_response_rate: 0.3 }, off: { lost_response_rate: 0 } },
    drops:   { on: { webhook_drop_rate: 0.5 }, off: { webhook_drop_rate: 0 } },
    dupes:   { on: { webhook_duplicate_rate: 1 }, off: { webhook_duplicate_rate: 0 } },
    reorder: { on: { webhook_delay_ms: 1000, webhook_delay_jitter_ms: 3000 },
               off: { webhook_delay_ms: 0, webhook_delay_jitter_ms: 0 } },
    clear:   { on: { clear: true } },
  };

  /* ------------------------------------------------------------------ money */

  /* Indian grouping: the last three digits, then groups of two (₹12,34,567.89). */
  function groupIndian(digits) {
    if (digits.length <= 3) return digits;
    const last3 = digits.slice(-3);
    let rest = digits.slice(0, -3);
    const parts = [];
    while (rest.length > 2) {
      parts.unshift(rest.slice(-2));
      rest = rest.slice(0, -2);
    }
    if (rest) parts.unshift(rest);
    return parts.join(',') + ',' + last3;
  }

  /* minor: a safe integer Number, a BigInt or a string of digits. */
  function formatINR(minor) {
    let v;
    try { v = BigInt(typeof minor === 'number' ? Math.trunc(minor) : minor); } catch (e) { return '—'; }
    const neg = v < 0n;
    if (neg) v = -v;
    const rupees = (v / 100n).toString();
    const paise = (v % 100n).toString().padStart(2, '0');
    return (neg ? '−' : '') + '₹' + groupIndian(rupees) + '.' + paise;
  }

  /* "500", "500.5", "500.50", "₹1,000" → minor units as a BigInt; throws a message. */
  function parseAmount(text) {
    const s = String(text || '').trim().replace(/^₹\s*/, '').replace(/[,_\s]/g, '');
    if (s === '') throw new Error('enter an amount in rupees, e.g. 500 or 500.50');
    const m = /^(\d*)(?:\.(\d*))?$/.exec(s);
    if (!m || (m[1] === '' && !m[2])) throw new Error('"' + text + '" is not an amount: digits, with up to 2 decimals');
    const frac = m[2] || '';
    if (frac.length > 2) throw new Error('at most 2 decimals (paise): "' + text + '"');
    const minor = BigInt(m[1] || '0') * 100n + BigInt((frac + '00').slice(0, 2));
    if (minor < 1n) throw new Error('the amount must be at least ₹0.01');
    if (minor > MAX_MINOR) throw new Error('the amount must be at most ' + formatINR(MAX_MINOR));
    return minor;
  }

  /* ------------------------------------------------------------------ state */

  const state = {
    cfg: null,
    token: '',
    users: new Map(),      /* user → {user, bank_account, balance, balanceSeq, evSeq, epoch, el} */
    txns: new Map(),       /* id → txn record (below) */
    order: [],             /* ids, newest first */
    ws: null,
    wsIndex: 0,
    wsUrls: [],
    wsLive: false,
    failures: 0,
    reconnectTimer: 0,
    pollTimer: 0,
    faults: null,
    unsafe: [],            /* "wallet --unsafe-no-dedupe", … from the services' /healthz */
    events: 0,
    detailQueue: [],
    detailActive: 0,
    detailQueued: new Set(),
  };

  const $ = (id) => document.getElementById(id);
  const els = {
    conn: $('conn'), connText: $('conn-text'), connDetail: $('conn-detail'),
    faultsBadge: $('faults-badge'), switchBadge: $('switch-badge'),
    unsafeBanner: $('unsafe-banner'), unsafeList: $('unsafe-list'),
    notice: $('token-notice'), tokenForm: $('token-form'), tokenInput: $('token-input'),
    cards: $('cards'), cardsEmpty: $('cards-empty'), balancesMeta: $('balances-meta'),
    txns: $('txns'), txnsEmpty: $('txns-empty'), feedMeta: $('feed-meta'),
    result: $('form-result'), usersList: $('users-list'),
    presets: $('presets'), faultState: $('fault-state'), faultsMeta: $('faults-meta'),
    tplCard: $('tpl-card'), tplTxn: $('tpl-txn'),
  };

  const reduceMotion = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)');

  /* ------------------------------------------------------------------ config, token */

  function readToken() {
    const h = (location.hash || '').replace(/^#/, '');
    const p = new URLSearchParams(h);
    return (p.get('token') || '').trim();
  }

  async function loadConfig() {
    const host = location.hostname || '127.0.0.1';
    const defaults = {
      gateway: host + ':8082',
      ws_url: 'ws://' + host + ':8083/ws',
      ws_urls: [],
      wallet_url: 'http://' + host + ':8080',
      bank_url: 'http://' + host + ':8081',
    };
    try {
      const r = await fetch('config.json', { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const c = await r.json();
      return Object.assign({}, defaults, c || {});
    } catch (e) {
      return defaults;
    }
  }

  function trimSlash(u) { return String(u || '').replace(/\/+$/, ''); }

  /* ------------------------------------------------------------------ HTTP */

  async function http(method, url, body, headers) {
    const h = Object.assign({}, headers || {});
    const init = { method, headers: h, cache: 'no-store' };
    if (body !== undefined) {
      h['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const t0 = performance.now();
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      return { ok: false, status: 0, ms: Math.round(performance.now() - t0), json: null, network: true, headers: null };
    }
    let json = null;
    const text = await res.text().catch(() => '');
    const ms = Math.round(performance.now() - t0);
    if (text) { try { json = JSON.parse(text); } catch (e) { json = null; } }
    return { ok: res.ok, status: res.status, ms, json, headers: res.headers, network: false };
  }

  const walletUrl = (p) => trimSlash(state.cfg.wallet_url) + p;
  const bankUrl = (p) => trimSlash(state.cfg.bank_url) + p;

  /* ------------------------------------------------------------------ balances */

  function ensureUser(name) {
    let u = state.users.get(name);
    if (u) return u;
    /* balanceSeq: the seq the shown balance is as of; evSeq: the last event applied */
    u = { user: name, bank_account: '', balance: null, balanceSeq: -1, evSeq: -1, epoch: null, el: null };
    state.users.set(name, u);
    const node = els.tplCard.content.firstElementChild.cloneNode(true);
    node.querySelector('.card-user').textContent = name;
    const bal = node.querySelector('.card-balance');
    bal.dataset.testid = 'balance-' + name;
    bal.setAttribute('data-testid', 'balance-' + name);
    u.el = node;
    /* keep the cards sorted by name */
    let before = null;
    for (const li of els.cards.children) {
      if (li.dataset.user > name) { before = li; break; }
    }
    node.dataset.user = name;
    els.cards.insertBefore(node, before);
    if (!reduceMotion || !reduceMotion.matches) node.classList.add('card-new');
    renderUsersList();
    return u;
  }

  function setBalance(u, minor, seq, animate) {
    if (minor === null || minor === undefined) return;
    const prev = u.balance;
    let next;
    try { next = BigInt(minor); } catch (e) { return; }
    if (seq !== undefined && seq !== null) u.balanceSeq = Math.max(u.balanceSeq, seq);
    u.balance = next;
    const bal = u.el.querySelector('.card-balance');
    bal.textContent = formatINR(next);
    bal.dataset.minor = next.toString();
    fitText(bal);
    if (animate && prev !== null && prev !== next) flash(u.el, next > prev ? 'up' : 'down');
  }

  /* a crore-sized balance must not be cut off: shrink the type until it fits */
  function fitText(el) {
    el.style.fontSize = '';
    if (!el.clientWidth) return;
    let size = parseFloat(getComputedStyle(el).fontSize);
    const min = size * 0.5;
    while (el.scrollWidth > el.clientWidth && size > min) {
      size *= 0.9;
      el.style.fontSize = size.toFixed(1) + 'px';
    }
  }

  let fitTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(fitTimer);
    fitTimer = setTimeout(() => { for (const u of state.users.values()) fitText(u.el.querySelector('.card-balance')); }, 150);
  });

  function setSeqLabel(u) {
    const s = u.el.querySelector('.card-seq');
    const seq = Math.max(u.evSeq, u.balanceSeq);
    s.textContent = seq > 0 ? 'seq ' + seq : '';
  }

  function flash(el, dir) {
    el.classList.remove('flash-up', 'flash-down');
    void el.offsetWidth; /* restart the animation */
    el.classList.add(dir === 'up' ? 'flash-up' : 'flash-down');
    clearTimeout(el._flashTimer);
    el._flashTimer = setTimeout(() => el.classList.remove('flash-up', 'flash-down'), 1200);
  }

  function renderUsersList() {
    const names = Array.from(state.users.keys()).sort();
    els.usersList.replaceChildren(...names.map((n) => { const o = document.createElement('option'); o.value = n; return o; }));
    els.cardsEmpty.hidden = names.length > 0;
    els.balancesMeta.textContent = names.length === 1 ? '1 user' : names.length + ' users';
  }

  async function fetchUsers() {
    const r = await http('GET', walletUrl('/v1/users?limit=500'));
    if (!r.ok || !r.json || !Array.isArray(r.json.users)) {
      const why = r.network ? 'the wallet is unreachable at ' + state.cfg.wallet_url
        : 'GET /v1/users → ' + r.status + (r.json && r.json.error ? ' ' + r.json.error.code : '');
      els.balancesMeta.textContent = r.network ? 'wallet unreachable' : 'user list unavailable';
      if (!state.users.size) els.cardsEmpty.textContent = 'No balances: ' + why + '.';
      return false;
    }
    els.cardsEmpty.textContent = 'No users yet — add one with the form on the right.';
    for (const it of r.json.users) {
      if (!it || typeof it.user !== 'string') continue;
      const u = ensureUser(it.user);
      if (it.bank_account) {
        u.bank_account = it.bank_account;
        u.el.querySelector('.card-bank').textContent = it.bank_account;
      }
      const hs = typeof it.head_seq === 'number' ? it.head_seq : null;
      /* the list is authoritative up to head_seq: never let an older event roll it back */
      if (hs === null || hs >= u.balanceSeq) setBalance(u, it.balance_minor, hs, u.balance !== null);
      setSeqLabel(u);
    }
    renderUsersList();
    return true;
  }

  /* ------------------------------------------------------------------ transactions feed */

  function txnRecord(id) {
    let t = state.txns.get(id);
    if (t) return t;
    t = {
      id, kind: '', mode: '', status: '', amount: null, user: '', counterparty: '',
      users: new Set(), trail: [], settled_by: null, failure_reason: null, note: null,
      created: Date.now(), delay: null, el: null, open: false, detailFetched: false,
    };
    state.txns.set(id, t);
    return t;
  }

  function mountTxn(t, atTop) {
    if (t.el) return;
    const node = els.tplTxn.content.firstElementChild.cloneNode(true);
    node.setAttribute('data-testid', 'txn-' + t.id);
    node.dataset.id = t.id;
    const btn = node.querySelector('.txn-row');
    btn.setAttribute('aria-controls', 'detail-' + t.id);
    node.querySelector('.txn-detail').id = 'detail-' + t.id;
    t.el = node;
    if (atTop) {
      els.txns.insertBefore(node, els.txns.firstChild);
      state.order.unshift(t.id);
      if (!reduceMotion || !reduceMotion.matches) node.classList.add('txn-new');
    } else {
      /* initial history: keep newest first by creation time */
      let i = state.order.findIndex((id) => (state.txns.get(id).created || 0) < t.created);
      if (i < 0) i = state.order.length;
      const before = i < state.order.length ? state.txns.get(state.order[i]).el : null;
      els.txns.insertBefore(node, before);
      state.order.splice(i, 0, t.id);
    }
    while (state.order.length > MAX_ROWS) {
      const old = state.order.pop();
      const o = state.txns.get(old);
      if (o && o.el) o.el.remove();
      state.txns.delete(old);
    }
    els.txnsEmpty.hidden = state.order.length > 0;
  }

  function whoText(t) {
    const users = Array.from(t.users);
    if (t.kind === 'p2p') {
      if (t.user && t.counterparty) return t.user + ' → ' + t.counterparty;
      return users.join(' ↔ ') || '…';
    }
    const u = t.user || users[0] || '…';
    if (t.kind === 'topup') return 'bank → ' + u;
    if (t.kind === 'withdrawal') return u + ' → bank';
    return u;
  }

  function statusLabel(t) {
    if (!t.status) return '…';
    if (t.status === 'succeeded' && t.settled_by === 'reconciler') return 'succeeded · reconciled';
    if (t.status === 'failed' && t.settled_by === 'reconciler') return 'failed · reconciled';
    return t.status;
  }

  function renderTxn(t) {
    if (!t.el) return;
    const n = t.el;
    n.dataset.status = t.status || 'pending';
    n.setAttribute('data-status', t.status || 'pending');
    if (t.settled_by) n.dataset.settledBy = t.settled_by;
    n.querySelector('.txn-kind').textContent = KIND_LABEL[t.kind] || t.kind || '…';
    n.querySelector('.txn-kind').dataset.kind = t.kind || '';
    n.querySelector('.txn-mode').textContent = t.mode || '';
    const who = n.querySelector('.txn-who');
    who.textContent = whoText(t);
    who.title = t.note ? 'note: ' + t.note : '';
    n.querySelector('.txn-amount').textContent = t.amount === null ? '' : formatINR(t.amount);
    const pill = n.querySelector('.pill');
    pill.textContent = t.status || '…';
    pill.className = 'pill pill-' + (t.status || 'pending');
    /* how a final state was reached matters in the lecture: "reconciled" when the
       reconciler settled it, after an unknown or a pending that outlived its grace */
    const how = n.querySelector('.txn-how');
    how.textContent = FINAL.has(t.status) && t.settled_by === 'reconciler' ? 'reconciled' : '';
    how.title = how.textContent ? 'settled by the reconciler, which asked the bank' : '';
    /* the plain pending → final path is the norm; show the path when it took a detour */
    n.querySelector('.txn-trail').textContent = t.trail.length > 2 ? t.trail.join(' → ') : '';
    n.querySelector('.txn-delay').textContent = t.delay === null ? '' : 'pushed in ' + t.delay + ' ms';
    const btn = n.querySelector('.txn-row');
    btn.setAttribute('aria-label',
      (KIND_LABEL[t.kind] || 'transaction') + ' ' + (t.amount === null ? '' : formatINR(t.amount)) +
      ' ' + whoText(t) + ', ' + statusLabel(t) + '. Show the timeline.');
  }

  /* status only moves forward: a replayed or late event never turns a final row back */
  function applyStatus(t, status) {
    if (!status || status === t.status) return false;
    if (t.status && (RANK[status] ?? 0) < (RANK[t.status] ?? 0)) return false;
    if (t.status && FINAL.has(t.status)) return false;
    t.status = status;
    if (t.trail[t.trail.length - 1] !== status) t.trail.push(status);
    return true;
  }

  function mergeTxnObject(o, opts) {
    if (!o || typeof o.id !== 'string') return null;
    const t = txnRecord(o.id);
    if (o.kind) t.kind = o.kind;
    if (o.mode) t.mode = o.mode;
    if (typeof o.amount_minor === 'number' || typeof o.amount_minor === 'string') t.amount = o.amount_minor;
    if (o.user) { t.user = o.user; t.users.add(o.user); }
    if (o.counterparty) t.counterparty = o.counterparty;
    if (t.kind === 'p2p' && o.counterparty) t.users.add(o.counterparty);
    if (o.settled_by !== undefined) t.settled_by = o.settled_by;
    if (o.failure_reason !== undefined) t.failure_reason = o.failure_reason;
    if (o.note !== undefined) t.note = o.note;
    if (typeof o.created_at_ms === 'number') t.created = o.created_at_ms;
    applyStatus(t, o.status);
    mountTxn(t, !(opts && opts.history));
    renderTxn(t);
    if (t.open) renderTimeline(t, o.timeline ? o : null);
    return t;
  }

  /* details the event does not carry: direction of a transfer, settled_by, note */
  function wantDetail(t) {
    if (state.detailQueued.has(t.id)) return;
    if (state.detailQueue.length >= MAX_DETAIL_QUEUE) return;
    state.detailQueued.add(t.id);
    state.detailQueue.push(t.id);
    pumpDetails();
  }

  function pumpDetails() {
    while (state.detailActive < MAX_DETAIL_FETCHES && state.detailQueue.length) {
      const id = state.detailQueue.shift();
      state.detailActive++;
      http('GET', walletUrl('/v1/transactions/' + encodeURIComponent(id))).then((r) => {
        state.detailActive--;
        state.detailQueued.delete(id);
        if (r.ok && r.json && state.txns.has(id)) {
          const t = state.txns.get(id);
          t.detailFetched = true;
          mergeTxnObject(r.json);
        }
        pumpDetails();
      });
    }
  }

  /* ------------------------------------------------------------------ timeline */

  function renderTimeline(t, full) {
    const box = t.el.querySelector('.txn-detail');
    if (full) t.timelineData = full;
    const d = t.timelineData;
    if (!d) {
      box.replaceChildren(textEl('p', 'loading the timeline…', 'muted'));
      return;
    }
    const frag = document.createDocumentFragment();
    const facts = document.createElement('dl');
    facts.className = 'facts';
    const fact = (k, v) => {
      if (v === null || v === undefined || v === '') return;
      facts.append(textEl('dt', k), textEl('dd', String(v)));
    };
    fact('id', d.id);
    fact('bank payment', d.bank_payment_id);
    fact('counterparty', d.counterparty);
    fact('note', d.note);
    fact('failure', d.failure_reason);
    fact('settled by', d.settled_by);
    frag.append(facts);

    const steps = Array.isArray(d.timeline) ? d.timeline : [];
    if (!steps.length) {
      frag.append(textEl('p', 'no timeline recorded', 'muted'));
    } else {
      const t0 = steps[0].at_ms;
      const ol = document.createElement('ol');
      ol.className = 'timeline';
      ol.setAttribute('aria-label', 'timeline of ' + d.id);
      let prev = t0;
      for (const s of steps) {
        const li = document.createElement('li');
        li.className = 'hop hop-' + (s.status || 'pending');
        const off = typeof s.at_ms === 'number' && typeof t0 === 'number' ? s.at_ms - t0 : null;
        const gap = typeof s.at_ms === 'number' && typeof prev === 'number' ? s.at_ms - prev : null;
        prev = s.at_ms;
        const head = document.createElement('div');
        head.className = 'hop-head';
        head.append(
          textEl('span', off === null ? '' : '+' + off + ' ms', 'hop-at num'),
          textEl('span', s.event || '', 'hop-event'),
          textEl('span', s.status || '', 'pill pill-' + (s.status || 'pending')));
        if (gap !== null && gap > 0 && off !== gap) head.append(textEl('span', '(' + gap + ' ms after the previous step)', 'hop-gap'));
        li.append(head);
        if (s.reason) li.append(textEl('p', s.reason, 'hop-reason'));
        ol.append(li);
      }
      frag.append(ol);
    }
    box.replaceChildren(frag);
  }

  function textEl(tag, text, cls) {
    const e = document.createElement(tag);
    e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  async function toggleTxn(t) {
    t.open = !t.open;
    const box = t.el.querySelector('.txn-detail');
    t.el.querySelector('.txn-row').setAttribute('aria-expanded', String(t.open));
    t.el.classList.toggle('open', t.open);
    box.hidden = !t.open;
    if (!t.open) return;
    renderTimeline(t, null);
    await refreshTimeline(t);
  }

  async function refreshTimeline(t) {
    const r = await http('GET', walletUrl('/v1/transactions/' + encodeURIComponent(t.id)));
    if (!t.open) return;
    if (r.ok && r.json) {
      mergeTxnObject(r.json);
      renderTimeline(t, r.json);
    } else {
      const box = t.el.querySelector('.txn-detail');
      box.replaceChildren(textEl('p', r.network ? 'the wallet is unreachable' :
        'could not load the timeline (' + r.status + ')', 'muted'));
    }
  }

  els.txns.addEventListener('click', (ev) => {
    const li = ev.target.closest('li.txn');
    if (!li || ev.target.closest('.txn-detail')) return;
    const t = state.txns.get(li.dataset.id);
    if (t) toggleTxn(t);
  });

  /* ------------------------------------------------------------------ events */

  function onEvent(ev) {
    if (!ev || typeof ev.user !== 'string') return;
    state.events++;
    if (!state.users.has(ev.user)) scheduleUserRefresh(); /* a new user: learn its bank account */
    const u = ensureUser(ev.user);
    if (ev.epoch && u.epoch && ev.epoch !== u.epoch) {
      /* the wallet database was reset: its seqs start over */
      u.evSeq = -1; u.balanceSeq = -1;
    }
    if (ev.epoch) u.epoch = ev.epoch;
    const seq = typeof ev.seq === 'number' ? ev.seq : null;
    if (seq !== null) {
      if (seq <= u.evSeq) return; /* seen already (a replay or a duplicate) */
      const last = u.evSeq >= 0 ? u.evSeq : u.balanceSeq;
      if (last >= 0 && seq > last + 1) scheduleUserRefresh(); /* a gap: re-read the balances */
      u.evSeq = seq;
    }
    const delay = typeof ev.ts_us === 'number' ? Math.max(0, Math.round(Date.now() - ev.ts_us / 1000)) : null;

    if (ev.type === 'balance.updated' || (ev.balance_minor !== undefined && ev.balance_minor !== null)) {
      if (seq === null || seq > u.balanceSeq) setBalance(u, ev.balance_minor, seq, true);
    }
    setSeqLabel(u);
    if (ev.transaction && typeof ev.transaction.id === 'string') {
      const known = state.txns.has(ev.transaction.id);
      const t = txnRecord(ev.transaction.id);
      const before = t.status;
      t.users.add(ev.user);
      if (!t.user && ev.transaction.kind !== 'p2p') t.user = ev.user;
      if (ev.type === 'transaction.updated' && delay !== null) t.delay = delay;
      mergeTxnObject(Object.assign({}, ev.transaction, { user: undefined }));
      if (!known || (!t.detailFetched && !t.user) ||
          (t.status !== before && FINAL.has(t.status) && t.settled_by === null) ||
          (t.kind === 'p2p' && !t.counterparty)) {
        wantDetail(t);
      }
      if (t.open && t.status !== before) refreshTimeline(t);
    }
    els.feedMeta.textContent = 'newest first · click one for its timeline · ' + state.events + ' events received';
  }

  let userRefreshTimer = 0;
  function scheduleUserRefresh() {
    if (userRefreshTimer) return;
    userRefreshTimer = setTimeout(() => { userRefreshTimer = 0; fetchUsers(); }, 300);
  }

  /* ------------------------------------------------------------------ WebSocket */

  function setConn(stateName, text, detail) {
    els.conn.dataset.state = stateName;
    els.connText.textContent = text;
    els.connDetail.textContent = detail || '';
    els.conn.title = detail ? text + ' — ' + detail : text;
  }

  function hostOf(url) {
    try { return new URL(url).host; } catch (e) { return url; }
  }

  function wsUrls() {
    const list = [];
    const add = (u) => { if (typeof u === 'string' && u && !list.includes(u)) list.push(u); };
    add(state.cfg.ws_url);
    if (Array.isArray(state.cfg.ws_urls)) state.cfg.ws_urls.forEach(add);
    return list;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    if (!state.token) return;
    state.wsUrls = wsUrls();
    if (!state.wsUrls.length) { setConn('disconnected', 'disconnected', 'no gateway address in config.json'); return; }
    const url = state.wsUrls[state.wsIndex % state.wsUrls.length];
    const gw = hostOf(url);
    setConn('reconnecting', (state.failures ? 'reconnecting' : 'connecting') + ' · gateway ' + gw, '');
    let ws;
    try { ws = new WebSocket(url); } catch (e) { scheduleReconnect(gw + ': bad address'); return; }
    state.ws = ws;
    let subscribed = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ op: 'subscribe', user: '*', token: state.token }));
    };
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch (e) { return; }
      if (!msg || typeof msg !== 'object') return;
      if (msg.op === 'subscribed') {
        subscribed = true;
        state.wsLive = true;
        state.failures = 0;
        stopPolling();
        setConn('connected', 'connected · live via gateway ' + gw);
        fetchUsers(); /* balances right after a gap */
        refreshOpenRows(); /* statuses that changed while nobody listened */
      } else if (msg.op === 'event') {
        onEvent(msg);
      } else if (msg.op === 'error') {
        const code = msg.code || 'error';
        if (code === 'unauthorized') {
          state.tokenRejected = true;
          setConn('disconnected', 'disconnected', 'gateway ' + gw + ' refused the token');
          showNotice(true, 'The gateway refused this token');
          ws.close(4000, 'unauthorized');
        } else {
          setConn(subscribed ? 'connected' : 'reconnecting', els.connText.textContent, 'gateway error: ' + code);
        }
      }
    };
    ws.onclose = () => {
      if (state.ws !== ws) return;
      state.ws = null;
      state.wsLive = false;
      startPolling();
      if (state.tokenRejected) return;
      scheduleReconnect(subscribed ? 'lost ' + gw : gw + ' unreachable');
    };
  }

  function scheduleReconnect(why) {
    state.failures++;
    state.wsIndex++; /* fail over to the next gateway */
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.failures - 1));
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    const next = hostOf(state.wsUrls[state.wsIndex % state.wsUrls.length]);
    const secs = (delay / 1000).toFixed(1);
    if (state.failures > 2 * state.wsUrls.length) {
      /* every gateway has failed twice: say so plainly, but keep trying */
      setConn('disconnected', 'disconnected · no gateway answers',
        'tried ' + state.wsUrls.map(hostOf).join(', ') + '; next ' + next + ' in ' + secs + ' s');
    } else {
      setConn('reconnecting', 'reconnecting · ' + why, 'next ' + next + ' in ' + secs + ' s');
    }
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function refreshOpenRows() {
    for (const id of state.order) {
      const t = state.txns.get(id);
      if (t && !FINAL.has(t.status)) wantDetail(t);
    }
  }

  function startPolling() {
    if (state.pollTimer) return;
    state.pollTimer = setInterval(() => {
      if (document.hidden) return;
      fetchUsers();
      refreshOpenRows();
    }, POLL_MS);
  }
  function stopPolling() {
    clearInterval(state.pollTimer);
    state.pollTimer = 0;
  }

  /* ------------------------------------------------------------------ forms */

  function showResult(form, kind, text, detail) {
    const r = els.result;
    form.append(r); /* the one result box sits under the form that was used */
    r.hidden = false;
    r.className = 'result result-' + kind;
    r.replaceChildren(textEl('span', text, 'result-main'));
    if (detail) r.append('\n', textEl('span', detail, 'result-detail'));
  }

  const ERROR_HINT = {
    bank_timeout: 'the reconciler will settle it',
    bank_error: 'the reconciler will settle it',
    bank_unreachable: 'the bank refused the connection; nothing moved',
    bank_declined: 'the bank declined',
  };

  /* → [tone, "504 unknown in 2003 ms — the reconciler will settle it", detail] */
  function describeAnswer(r, what) {
    if (r.network) return ['bad', 'no answer: the wallet is unreachable at ' + state.cfg.wallet_url, ''];
    const j = r.json || {};
    const replay = r.headers && r.headers.get('Idempotent-Replayed') === 'true' ? ' (a replay)' : '';
    const timing = ' in ' + r.ms + ' ms' + replay;
    const err = j.error || null;
    if (what === 'user') {
      if (r.status === 201) return ['good', r.status + ' user ' + j.user + ' created' + timing,
        j.bank_account ? 'bank account ' + j.bank_account : ''];
      return ['bad', r.status + ' ' + (err ? err.code : 'error') + timing, err ? err.message || '' : ''];
    }
    const id = typeof j.id === 'string' ? j.id : '';
    if (!id) return ['bad', r.status + ' ' + (err ? err.code : 'error') + timing, err ? err.message || '' : ''];
    const st = j.status || '?';
    const tone = st === 'succeeded' ? 'good' : st === 'failed' ? 'bad' : st === 'unknown' ? 'unknown' : 'pending';
    let hint = '';
    if (err) {
      hint = ERROR_HINT[err.code] || err.code;
      if (err.code === 'bank_declined' && j.failure_reason) hint = 'the bank declined: ' + j.failure_reason;
    } else if (st === 'pending') {
      hint = j.mode === 'async' ? 'the bank\'s webhook will settle it' : 'not settled yet';
    } else if (st === 'unknown') {
      hint = 'the reconciler will settle it';
    }
    let detail = id;
    if (j.user && j.balance_minor !== undefined && j.balance_minor !== null) {
      detail += ' · ' + j.user + '\'s balance ' + formatINR(j.balance_minor);
    }
    return [tone, r.status + ' ' + st + timing + (hint ? ' — ' + hint : ''), detail];
  }

  function val(form, name) {
    const e = form.elements.namedItem(name);
    return e ? String(e.value || '').trim() : '';
  }

  const HANDLE = /^[a-z0-9_]{1,32}$/;

  async function submit(form) {
    const op = form.dataset.op;
    const btn = form.querySelector('button[type="submit"]');
    let path, body;
    try {
      if (op === 'user') {
        const user = val(form, 'user').toLowerCase();
        if (!HANDLE.test(user)) throw new Error('a user is 1–32 of a–z, 0–9 and _');
        path = '/v1/users'; body = { user };
      } else if (op === 'topup' || op === 'withdraw') {
        const user = val(form, 'user').toLowerCase();
        if (!HANDLE.test(user)) throw new Error('choose a user');
        const minor = parseAmount(val(form, 'amount'));
        path = op === 'topup' ? '/v1/topups' : '/v1/withdrawals';
        body = { user, amount_minor: Number(minor), currency: 'INR', mode: val(form, 'mode') || 'sync' };
      } else if (op === 'transfer') {
        const from = val(form, 'from').toLowerCase();
        const to = val(form, 'to').toLowerCase();
        if (!HANDLE.test(from) || !HANDLE.test(to)) throw new Error('choose who pays (from) and who is paid (to)');
        const minor = parseAmount(val(form, 'amount'));
        path = '/v1/transfers';
        body = { from, to, amount_minor: Number(minor), currency: 'INR' };
        const note = val(form, 'note');
        if (note) body.note = note;
      } else {
        return;
      }
    } catch (e) {
      showResult(form, 'bad', e.message, '');
      return;
    }
    const headers = {};
    if (op !== 'user') headers['Idempotency-Key'] = newKey();
    btn.disabled = true;
    form.setAttribute('aria-busy', 'true');
    showResult(form, 'pending', 'sending…', body.mode ? 'mode ' + body.mode : '');
    let r;
    try {
      r = await http('POST', walletUrl(path), body, headers);
    } finally {
      btn.disabled = false;
      form.removeAttribute('aria-busy');
    }
    const [kind, msg, detail] = describeAnswer(r, op);
    showResult(form, kind, msg, detail);
    const j = r.json;
    if (!j) return;
    if (op === 'user' && r.status === 201) {
      const u = ensureUser(j.user);
      if (j.bank_account) { u.bank_account = j.bank_account; u.el.querySelector('.card-bank').textContent = j.bank_account; }
      if (u.balance === null) setBalance(u, j.balance_minor || 0, null, false);
      form.reset();
      return;
    }
    if (typeof j.id === 'string' && j.kind) {
      const t = mergeTxnObject(j);
      if (t) t.detailFetched = true;
      /* without the live feed, the answer is the freshest balance we have */
      if (!state.wsLive && j.user && j.balance_minor !== undefined) {
        setBalance(ensureUser(j.user), j.balance_minor, null, true);
        if (j.kind === 'p2p') scheduleUserRefresh();
      }
    }
  }

  function newKey() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  for (const f of document.querySelectorAll('form.op')) {
    f.addEventListener('submit', (ev) => { ev.preventDefault(); submit(f); });
  }

  /* ------------------------------------------------------------------ faults */

  const FAULT_LABEL = {
    latency_ms: (v) => 'latency ' + v + ' ms',
    latency_jitter_ms: (v) => 'latency jitter ' + v + ' ms',
    error_rate: (v) => 'errors ' + pct(v),
    lost_response_rate: (v) => 'lost responses ' + pct(v),
    down: () => 'bank down',
    webhook_drop_rate: (v) => 'webhook drops ' + pct(v),
    webhook_duplicate_rate: (v) => 'webhook duplicates ' + pct(v),
    webhook_delay_ms: (v) => 'webhook delay ' + v + ' ms',
    webhook_delay_jitter_ms: (v) => 'webhook jitter ' + v + ' ms',
    webhook_stop: () => 'webhooks held',
  };

  function pct(v) { return Math.round(Number(v) * 100) + ' %'; }

  function activeFaults(f) {
    const out = [];
    const switches = [];
    if (!f || typeof f !== 'object') return { out, switches };
    for (const [k, v] of Object.entries(f)) {
      if (k === 'seed') continue;
      const on = v === true || (typeof v === 'number' && v !== 0);
      if (!on) continue;
      if (/^unsafe/.test(k)) { switches.push(k.replace(/_/g, '-')); continue; }
      out.push(FAULT_LABEL[k] ? FAULT_LABEL[k](v) : k + ' ' + v);
    }
    return { out, switches };
  }

  function presetActive(name, f) {
    const p = PRESETS[name];
    if (!p || !p.off || !f) return false;
    return Object.entries(p.on).every(([k, v]) => f[k] === v);
  }

  function setSwitchBadge(all) {
    els.switchBadge.hidden = all.length === 0;
    els.switchBadge.title = all.join(', ');
  }

  function renderFaults(f, note) {
    state.faults = f;
    const { out, switches } = activeFaults(f);
    const cfgSwitches = Array.isArray(state.cfg && state.cfg.teaching_switches) ? state.cfg.teaching_switches : [];
    const allSwitches = switches.concat(cfgSwitches, state.unsafe);
    els.faultsBadge.hidden = out.length === 0;
    els.faultsBadge.textContent = out.length === 1 ? 'fault active' : out.length + ' faults active';
    setSwitchBadge(allSwitches);
    for (const b of els.presets.querySelectorAll('.preset')) {
      const name = b.dataset.preset;
      if (name === 'clear') continue;
      b.setAttribute('aria-pressed', String(presetActive(name, f)));
    }
    const box = els.faultState;
    if (!f) {
      box.replaceChildren(textEl('p', note || 'faults unavailable', 'muted'));
      return;
    }
    const frag = document.createDocumentFragment();
    if (!out.length) {
      frag.append(textEl('p', 'none — the bank behaves', 'fault-none'));
    } else {
      const ul = document.createElement('ul');
      ul.className = 'chips';
      for (const s of out) ul.append(textEl('li', s, 'chip'));
      frag.append(ul);
    }
    if (allSwitches.length) frag.append(textEl('p', 'teaching switch: ' + allSwitches.join(', '), 'switch-note'));
    if (note) frag.append(textEl('p', note, 'muted'));
    box.replaceChildren(frag);
    els.faultsMeta.textContent = typeof f.seed === 'number' ? 'seed ' + f.seed : '';
  }

  async function loadFaults(note) {
    if (!state.token) {
      renderFaults(null, 'needs the admin token (see above)');
      setPresetsDisabled(true);
      return;
    }
    const r = await http('GET', bankUrl('/admin/faults'), undefined, { Authorization: 'Bearer ' + state.token });
    if (r.ok && r.json) {
      setPresetsDisabled(false);
      renderFaults(r.json, note);
    } else {
      renderFaults(null, r.network ? 'the bank is unreachable at ' + state.cfg.bank_url :
        'GET /admin/faults → ' + r.status + (r.json && r.json.error ? ' ' + r.json.error.code : ''));
    }
  }

  /* ------------------------------------------------------------------ teaching switches */

  /* A service's /healthz lists its teaching switches in "unsafe" (no token needed). */
  async function unsafeOf(service, url) {
    const r = await http('GET', url);
    if (!r.ok || !r.json || !Array.isArray(r.json.unsafe)) return [];
    return r.json.unsafe.filter((s) => typeof s === 'string').map((s) => service + ' --unsafe-' + s);
  }

  async function loadUnsafe() {
    const [w, b] = await Promise.all([unsafeOf('wallet', walletUrl('/healthz')), unsafeOf('bank', bankUrl('/healthz'))]);
    const next = w.concat(b);
    const changed = next.join('|') !== state.unsafe.join('|');
    state.unsafe = next;
    els.unsafeBanner.hidden = next.length === 0;
    els.unsafeList.replaceChildren(...next.map((s) => textEl('code', s)));
    if (!changed) return;
    const cfgSwitches = Array.isArray(state.cfg && state.cfg.teaching_switches) ? state.cfg.teaching_switches : [];
    setSwitchBadge(activeFaults(state.faults).switches.concat(cfgSwitches, next));
  }

  function setPresetsDisabled(d) {
    for (const b of els.presets.querySelectorAll('button')) b.disabled = d;
  }

  els.presets.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button.preset');
    if (!b || b.disabled) return;
    const name = b.dataset.preset;
    const p = PRESETS[name];
    if (!p) return;
    const body = p.off && presetActive(name, state.faults) ? p.off : p.on;
    setPresetsDisabled(true);
    const r = await http('PUT', bankUrl('/admin/faults'), body, { Authorization: 'Bearer ' + state.token });
    setPresetsDisabled(false);
    let note = '';
    if (!r.ok) note = 'PUT /admin/faults → ' + (r.network ? 'bank unreachable' : r.status + (r.json && r.json.error ? ' ' + r.json.error.code : ''));
    await loadFaults(note);
  });

  /* ------------------------------------------------------------------ token notice */

  function showNotice(show, title) {
    els.notice.hidden = !show;
    if (title) els.notice.querySelector('h2').textContent = title;
  }

  els.tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = els.tokenInput.value.trim();
    if (!v) return;
    els.tokenInput.value = '';
    location.hash = 'token=' + encodeURIComponent(v);
  });

  window.addEventListener('hashchange', () => {
    const t = readToken();
    if (t === state.token) return;
    state.token = t;
    state.tokenRejected = false;
    state.failures = 0;
    if (state.ws) { const w = state.ws; state.ws = null; w.close(); }
    start();
  });

  /* ------------------------------------------------------------------ history, start */

  async function loadHistory() {
    const names = Array.from(state.users.keys()).slice(0, 20);
    const lists = await Promise.all(names.map((n) =>
      http('GET', walletUrl('/v1/users/' + encodeURIComponent(n) + '/transactions?limit=20'))));
    const all = new Map();
    for (const r of lists) {
      if (!r.ok || !r.json || !Array.isArray(r.json.transactions)) continue;
      for (const t of r.json.transactions) if (t && t.id && !all.has(t.id)) all.set(t.id, t);
    }
    const sorted = Array.from(all.values()).sort((a, b) => (b.created_at_ms || 0) - (a.created_at_ms || 0)).slice(0, MAX_ROWS);
    for (const o of sorted) {
      if (state.txns.has(o.id)) continue;
      const t = mergeTxnObject(o, { history: true });
      if (t) t.detailFetched = true;
    }
  }

  function start() {
    stopPolling();
    state.token = readToken();
    if (!state.token) {
      showNotice(true, 'Live updates need the admin token');
      setConn('disconnected', 'disconnected · no token', 'balances refresh every ' + POLL_MS / 1000 + ' s');
      startPolling();
    } else {
      showNotice(false);
      connect();
    }
    loadFaults();
  }

  let faultsTimer = 0;
  async function init() {
    state.cfg = await loadConfig();
    const users = await fetchUsers();
    if (users) loadHistory();
    start();
    clearInterval(faultsTimer);
    faultsTimer = setInterval(() => { if (state.token && !document.hidden) loadFaults(); }, FAULTS_POLL_MS);
    loadUnsafe();
    setInterval(() => { if (!document.hidden) loadUnsafe(); }, UNSAFE_POLL_MS);
  }

  /* for the browser test and the console */
  window.paylab = { formatINR, parseAmount, state };

  init();
})();
