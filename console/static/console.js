// coupond console: a hash-routed page over the /v1 API. It keeps the bearer
// token in sessionStorage (gone when the tab closes), reads what exists and
// who may call it from /openapi.json (x-roles), and shows the API's own
// problem documents when the API refuses something.
import { lineChart, barChart } from './charts.js';

const SESSION = 'coupond.console';
const REFRESH_MS = 2000; // live statistics during a sale

const state = { token: '', role: '', merchant: '', keyId: '', ops: {}, spec: null };

// ---------- DOM helpers ----------

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (sel, root = document) => root.querySelector(sel);
// put and swap are append and replaceChildren without the absent parts
// (the DOM would write "null").
const present = (kids) => kids.flat().filter((k) => k !== null && k !== undefined && k !== false);
const put = (e, ...kids) => e.append(...present(kids));
const swap = (e, ...kids) => e.replaceChildren(...present(kids));
const main = () => $('#main');
let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

function money(n) {
  if (n === undefined || n === null) return '';
  const neg = n < 0, a = Math.abs(n);
  return `${neg ? '-' : ''}${Math.floor(a / 100)}.${String(a % 100).padStart(2, '0')}`;
}
const when = (t) => (t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');
const pct = (r) => `${((r || 0) * 100).toFixed(1)}%`;
const badge = (s) => h('span', { class: `status status-${s}` }, s);

// flash is shown by the next page, after a change of route.
let flash = null;
function flashAlert(text, kind = 'info') { flash = [text, kind]; }

function showAlert(text, kind = 'error') {
  const a = $('#alert');
  a.textContent = text;
  a.className = kind === 'error' ? 'alert' : 'alert info';
  a.hidden = !text;
}

function field(label, input, { hint, wide, error } = {}) {
  if (!input.id) input.id = nextId('f');
  const err = h('p', { class: 'field-error', id: input.id + '-err' });
  if (error) err.textContent = error;
  input.setAttribute('aria-describedby', [hint ? input.id + '-hint' : '', err.id].filter(Boolean).join(' '));
  return h('div', { class: 'field' + (wide ? ' wide' : '') },
    h('label', { for: input.id }, label, hint ? h('span', { class: 'hint', id: input.id + '-hint' }, hint) : null),
    input, err);
}

function select(options, attrs = {}) {
  return h('select', attrs, options.map((o) => (Array.isArray(o) ? h('option', { value: o[0] }, o[1]) : h('option', { value: o }, o))));
}

function table(headers, rows, { caption } = {}) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    caption ? h('caption', { class: 'visually-hidden' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', class: /^(Total|Amount|Discount|Generated|Attempts|Claimed)/.test(c) ? 'num' : '' }, c)))),
    rows instanceof HTMLTableSectionElement ? rows : h('tbody', {}, rows)));
}

function notAvailable(what) {
  return h('p', { class: 'notice', 'data-unavailable': '' }, `${what} is not available on this server.`);
}

// confirmAction asks in a modal dialog; resolves true when confirmed.
function confirmAction(title, text, yes = 'Confirm') {
  const d = $('#confirm');
  $('#confirm-title').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-yes').textContent = yes;
  d.returnValue = '';
  d.showModal();
  $('#confirm-no').focus();
  return new Promise((resolve) => d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true }));
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, problem) {
    super(problemText(status, problem));
    this.status = status;
    this.problem = problem || {};
  }
}

function problemText(status, p) {
  if (!p || typeof p !== 'object') return `The server answered ${status}.`;
  const head = `${p.title || 'Error'} (${p.status || status}${p.code ? ', ' + p.code : ''})`;
  return p.detail ? `${head}: ${p.detail}` : head;
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers, Authorization: 'Bearer ' + state.token } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { title: 'Network error', detail: String(e.message || e) });
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!res.ok) {
    if (res.status === 401 && state.role) signOut('Your key was refused (401): sign in again.');
    throw new ApiError(res.status, data);
  }
  return data;
}

const q = (params) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') s.set(k, v);
  const t = s.toString();
  return t ? '?' + t : '';
};
const enc = encodeURIComponent;

// has says whether the server has the operation; can, whether this key's
// role may call it (both from /openapi.json).
const has = (op) => !!state.ops[op];
const can = (op) => has(op) && (!state.ops[op].roles || state.ops[op].roles.includes(state.role));

async function loadSpec() {
  try {
    const res = await fetch('/openapi.json');
    state.spec = await res.json();
  } catch {
    state.spec = { paths: {}, components: { schemas: {} } };
  }
  for (const [path, item] of Object.entries(state.spec.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (op && op.operationId) state.ops[op.operationId] = { method: method.toUpperCase(), path, roles: op['x-roles'], op };
    }
  }
}

// ---------- session ----------

function saveSession() {
  sessionStorage.setItem(SESSION, JSON.stringify({ token: state.token, role: state.role, merchant: state.merchant, keyId: state.keyId }));
}

function loadSession() {
  try {
    Object.assign(state, JSON.parse(sessionStorage.getItem(SESSION) || '{}'));
  } catch { /* a damaged entry means signed out */ }
}

function signOut(message) {
  sessionStorage.removeItem(SESSION);
  state.token = state.role = state.merchant = state.keyId = '';
  location.hash = '#/signin';
  render();
  if (message) showAlert(message);
}

// probeRole finds the key's role by asking: the API has no "who am I", and
// every answer used here is one the role table gives anyway.
async function probeRole() {
  const ok = async (op, path) => {
    if (!has(op)) return false;
    try { await api('GET', path); return true; } catch (e) { if (e.status === 403) return false; throw e; }
  };
  let first;
  try {
    first = await api('GET', '/v1/batches?limit=1');
  } catch (e) {
    if (e.status === 403) return { role: 'app' };
    throw e;
  }
  if (await ok('list-keys', '/v1/keys?limit=1')) return { role: 'admin' };
  if (await ok('list-reviews', '/v1/reviews?limit=1')) return { role: 'operator' };
  return { role: 'merchant', merchant: first && first.items && first.items[0] ? first.items[0].merchant_id || '' : '' };
}

function signInView(root) {
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const msg = h('p', { class: 'field-error', id: 'signin-err', role: 'alert' });
  const form = h('form', { class: 'signin', onsubmit: async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    state.token = input.value.trim();
    if (!state.token) { msg.textContent = 'Enter an API key.'; input.focus(); return; }
    try {
      const { role, merchant } = await probeRole();
      if (role === 'app') {
        state.token = '';
        msg.textContent = 'This is an app key: app keys make client calls and cannot use the console.';
        return;
      }
      state.role = role;
      state.merchant = merchant || '';
      const dot = state.token.indexOf('.');
      state.keyId = dot > 0 && state.token.length - dot === 44 ? state.token.slice(0, dot) : 'bootstrap token';
      input.value = '';
      saveSession();
      if (/^#\/(signin)?$|^$/.test(location.hash)) location.hash = '#/batches'; else render();
    } catch (e) {
      state.token = '';
      msg.textContent = e.status === 401 ? 'The server refused this key (401 unauthorized).' : e.message;
    }
  } },
  h('h1', {}, 'Sign in'),
  h('p', {}, 'Sign in with an API key (id.secret) or the bootstrap admin token. The key stays in this tab only and is forgotten when the tab closes.'),
  field('API key', input, { error: '' }), msg,
  h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit', id: 'signin' }, 'Sign in')));
  put(root, form);
  input.focus();
}

// ---------- batches ----------

async function batchesView(root, params) {
  const status = params.get('status') || '';
  const merchant = params.get('merchant_id') || '';
  const search = h('input', { type: 'search', id: 'batch-search', value: params.get('q') || '', placeholder: 'name or id' });
  const statusSel = select([['', 'any'], 'draft', 'active', 'paused', 'ended'], { id: 'batch-status' });
  statusSel.value = status;
  const merchantIn = h('input', { type: 'text', id: 'batch-merchant', value: merchant, maxlength: 128 });
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  const summary = h('p', { class: 'hint', 'aria-live': 'polite', id: 'batch-count' });
  let loaded = [];
  let cursor = '';

  const row = (b) => h('tr', { 'data-batch': b.id },
    h('td', {}, h('a', { href: `#/batches/${enc(b.id)}` }, b.name)),
    h('td', {}, badge(b.status)), h('td', {}, b.merchant_id || '—'), h('td', {}, b.type),
    h('td', { class: 'num' }, b.total_quantity), h('td', { class: 'num' }, b.generated_count),
    h('td', {}, when(b.created_at)), h('td', {}, h('code', {}, b.id)));
  const paint = () => {
    const needle = search.value.trim().toLowerCase();
    const shown = loaded.filter((b) => !needle || b.name.toLowerCase().includes(needle) || b.id.toLowerCase().includes(needle));
    swap(body, ...shown.map(row));
    if (shown.length === 0) put(body, h('tr', {}, h('td', { colspan: 8 }, loaded.length ? 'No loaded batch matches the search.' : 'No batches.')));
    summary.textContent = `${shown.length} of ${loaded.length} loaded batches shown` + (cursor ? '; load more to search further.' : '.');
  };
  const load = async () => {
    try {
      const page = await api('GET', '/v1/batches' + q({ status, merchant_id: merchant, limit: 50, cursor }));
      loaded = loaded.concat(page.items || []);
      cursor = page.next_cursor || '';
      more.hidden = !cursor;
      paint();
    } catch (e) { showAlert(e.message); }
  };
  more.addEventListener('click', load);
  search.addEventListener('input', paint);

  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter batches', onsubmit: (ev) => {
    ev.preventDefault();
    location.hash = '#/batches' + q({ status: statusSel.value, merchant_id: state.role === 'merchant' ? '' : merchantIn.value.trim(), q: search.value.trim() });
  } },
  field('Search', search, { hint: 'name or id, among loaded batches' }),
  field('Status', statusSel),
  state.role === 'merchant' ? null : field('Merchant', merchantIn, { hint: 'merchant id' }),
  h('div', {}, h('button', { type: 'submit' }, 'Apply')));

  const who = state.role === 'merchant' ? state.merchant : merchant;
  put(root, 
    h('h1', {}, 'Batches'),
    who && can('merchant-stats') ? merchantSummary(who) : null,
    can('create-batch') ? h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#/batches/new', id: 'new-batch' }, 'New batch')) : null,
    form, summary,
    table(['Name', 'Status', 'Merchant', 'Type', 'Total', 'Generated', 'Created', 'Id'], body, { caption: 'Batches' }),
    h('div', { class: 'actions' }, more));
  await load();
}

// merchantSummary shows a merchant's totals over all its batches.
function merchantSummary(merchant) {
  const dl = h('dl', { class: 'cards', id: 'merchant-totals' });
  const sec = h('section', { 'aria-labelledby': 'msum-h' }, h('h2', { id: 'msum-h' }, `Merchant ${merchant}: all batches`), dl);
  api('GET', `/v1/merchants/${enc(merchant)}/stats`).then((m) => {
    const t = m.totals || {};
    const card = (label, v) => h('div', { class: 'card' }, h('dt', {}, label), h('dd', {}, v));
    swap(dl, card('Claimed', t.claimed), card('Redeemed', t.redeemed), card('Discount', money(t.discount)),
      card('Merchant’s share', money(t.discount_merchant)), card('Redemption rate', pct(m.redemption_rate)));
  }, (e) => swap(dl, h('p', { class: 'hint' }, e.message)));
  return sec;
}

// The batch form: every attribute of a BatchSpec. Each input carries
// data-path, the JSON path the API names in a problem's errors[].location.
const RULE_REFS = {
  include: ['product', 'category', 'merchant'], exclude: ['product', 'category', 'merchant'],
  exclusive: ['batch', 'merchant', 'type'], stackable: ['batch', 'merchant', 'type'],
  bear: ['platform', 'merchant'], node: ['node'], deduct: ['deduction'],
};

function schemaAt(path) {
  const schemas = (state.spec && state.spec.components && state.spec.components.schemas) || {};
  const deref = (s) => (s && s.$ref ? schemas[s.$ref.split('/').pop()] : s);
  let s = deref(schemas.BatchSpec);
  for (const part of path.replace(/\[\d+\]/g, '.items').split('.')) {
    if (!s) return null;
    s = part === 'items' ? deref(s.items) : deref(s.properties && s.properties[part]);
  }
  return s || null;
}

function specInput(path, kind, attrs = {}) {
  const s = schemaAt(path) || {};
  const a = { 'data-path': path, 'data-kind': kind, name: path, ...attrs };
  if (kind === 'int') {
    Object.assign(a, { type: 'number', step: 1, inputmode: 'numeric' });
    if (s.minimum !== undefined) a.min = s.minimum;
    if (s.maximum !== undefined) a.max = s.maximum;
  } else if (kind === 'time') {
    a.type = 'datetime-local';
  } else if (kind === 'text' || kind === 'list') {
    a.type = 'text';
    if (s.maxLength !== undefined && kind === 'text') a.maxlength = s.maxLength;
  } else if (kind === 'bool') {
    a.type = 'checkbox';
  }
  if (kind === 'select') {
    const e = select(attrs.options, { 'data-path': path, 'data-kind': 'text', name: path, id: attrs.id });
    return e;
  }
  if (kind === 'textarea') return h('textarea', { 'data-path': path, 'data-kind': 'text', name: path, rows: 3, maxlength: s.maxLength });
  return h('input', a);
}

function specField(label, path, kind, opts = {}) {
  const input = specInput(path, kind, opts.attrs || {});
  input.id = 'f-' + path.replace(/[.[\]]+/g, '-').replace(/-$/, '');
  const s = schemaAt(path) || {};
  const hint = opts.hint || '';
  if (kind === 'bool') {
    const err = h('p', { class: 'field-error', id: input.id + '-err' });
    input.setAttribute('aria-describedby', err.id);
    return h('div', { class: 'field', 'data-show': opts.show || null }, h('label', { class: 'check', for: input.id }, input, label), err);
  }
  const f = field(label, input, { hint: hint || (s.description ? s.description : ''), wide: opts.wide });
  if (opts.show) f.setAttribute('data-show', opts.show);
  return f;
}

// toLocal shows an RFC 3339 time in a datetime-local input, with seconds
// only when it has some.
function toLocal(t) {
  if (!t) return '';
  const s = t.slice(0, 19);
  return s.endsWith(':00') ? s.slice(0, 16) : s;
}

// batchFormView is the batch form: empty for a new batch, prefilled from
// another batch for a copy (a new draft), or from a draft to edit it in
// place (PATCH, on the version it was read at).
async function batchFormView(root, copyOf, editOf) {
  let base = null;
  if (copyOf || editOf) {
    try {
      base = await api('GET', `/v1/batches/${enc(copyOf || editOf)}`);
    } catch (e) {
      if (editOf) {
        put(root, h('h1', {}, 'Edit batch'), h('p', { class: 'alert', id: 'batch-problem' }, e.message), h('p', {}, h('a', { href: '#/batches' }, 'Back to batches')));
        return;
      }
      showAlert(e.message);
    }
  }
  const editing = editOf && base ? base : null;
  const rulesBody = h('tbody');
  const summary = h('div', { id: 'form-errors', role: 'alert', tabindex: '-1' });

  const form = h('form', { id: 'batch-form', novalidate: true, 'aria-label': 'Batch' },
    summary,
    h('fieldset', {}, h('legend', {}, 'Batch'), h('div', { class: 'grid' },
      specField('Name', 'name', 'text', { attrs: { required: true }, hint: 'shown to operators' }),
      state.role === 'merchant' ? null : specField('Merchant', 'merchant_id', 'text', { hint: 'empty: a platform batch' }),
      specField('Type', 'type', 'select', { attrs: { options: [['cash', 'cash: amount off'], ['threshold', 'threshold: spend X, get Y off'], ['percent', 'percent off, capped'], ['shipping', 'free shipping, capped']] } }),
      specField('Percent off', 'percent_off', 'int', { show: 'type=percent', hint: '1 to 99; the amount is the cap' }),
      specField('Minimum spend (minor units)', 'min_spend', 'int', { hint: 'smallest order total; required for threshold' }))),
    h('fieldset', {}, h('legend', {}, 'Claiming'), h('div', { class: 'grid' },
      specField('Total quantity', 'total_quantity', 'int', { attrs: { required: true }, hint: 'codes in the batch' }),
      specField('Per-user limit', 'per_user_limit', 'int', { hint: 'default 1' }),
      specField('Claim window start (UTC)', 'claim_start', 'time', { hint: 'empty: when published' }),
      specField('Claim window end (UTC)', 'claim_end', 'time', { hint: 'exclusive; empty: none' }),
      specField('Claim platforms', 'claim_platforms', 'list', { hint: 'comma-separated, e.g. ios, android; empty: any' }),
      specField('Channel', 'channel', 'text', { hint: 'recorded on claims' }),
      specField('Ad copy', 'ad_copy', 'textarea', { wide: true, hint: 'text shown to users' }))),
    h('fieldset', {}, h('legend', {}, 'Using'), h('div', { class: 'grid' },
      specField('Validity', 'validity.mode', 'select', { attrs: { options: [['days', 'days from the claim'], ['window', 'absolute window']] }, hint: 'how long a claimed coupon can be used' }),
      specField('Days from the claim', 'validity.days', 'int', { show: 'validity.mode=days' }),
      specField('Valid from (UTC)', 'validity.start', 'time', { show: 'validity.mode=window' }),
      specField('Valid until (UTC)', 'validity.end', 'time', { show: 'validity.mode=window', hint: 'exclusive' }),
      specField('Amount', 'amount.type', 'select', { attrs: { options: [['fixed', 'fixed'], ['random', 'random in [min, max]'], ['split', 'split a budget']] } }),
      specField('Value (minor units)', 'amount.value', 'int', { show: 'amount.type=fixed', hint: '500 = 5.00' }),
      specField('Minimum (minor units)', 'amount.min', 'int', { show: 'amount.type=random,split' }),
      specField('Maximum (minor units)', 'amount.max', 'int', { show: 'amount.type=random' }),
      specField('Budget (minor units)', 'amount.budget', 'int', { show: 'amount.type=split', hint: 'split exactly over the total quantity' }),
      specField('Usage platforms', 'usage_platforms', 'list', { hint: 'comma-separated; empty: any' }))),
    h('fieldset', {}, h('legend', {}, 'Codes'), h('div', { class: 'grid' },
      specField('Source', 'source', 'select', { attrs: { options: [['internal', 'internal: generated by coupond'], ['external', 'external: imported partner codes']] } }),
      specField('Code prefix', 'code_format.prefix', 'text', { hint: '0-9 and A-Z without I, L, O, U' }),
      specField('Code length', 'code_format.length', 'int', { hint: 'random characters after the prefix (a check character follows); default 12' }),
      specField('Generation', 'generation.mode', 'select', { show: 'source=internal', attrs: { options: [['', 'automatic by size'], ['full', 'full: all at publication'], ['incremental', 'incremental: chunks']] } }),
      specField('Chunk', 'generation.chunk', 'int', { show: 'generation.mode=incremental', hint: 'codes per chunk' }),
      specField('Low-water mark', 'generation.low_water', 'int', { show: 'generation.mode=incremental' }),
      specField('Trigger subject', 'trigger_subject', 'text', { hint: 'NATS subject whose events grant the batch, e.g. user.registered' }))),
    h('fieldset', {}, h('legend', {}, 'Redemption'), h('div', { class: 'grid' },
      specField('Refund policy', 'redemption.refund_policy', 'select', { attrs: { options: [['', 'default (return)'], ['return', 'return while valid'], ['void', 'void']] } }),
      specField('Reservation timeout (s)', 'redemption.reservation_timeout_seconds', 'int', { hint: '0: the service default' }),
      specField('Order system URL', 'redemption.order_system_url', 'text', { hint: 'order-state endpoint with {order_id}' }),
      specField('Coupons per order', 'redemption.max_per_order', 'int', { hint: 'default 1' }))),
    h('fieldset', {}, h('legend', {}, 'Protection'), h('div', { class: 'grid' },
      specField('Require an SMS challenge', 'protection.require_sms', 'bool'),
      specField('Whitelist only', 'protection.whitelist_only', 'bool'),
      specField('Count the limit across phones', 'protection.count_across.phone', 'bool'),
      specField('Count the limit across devices', 'protection.count_across.device', 'bool'),
      specField('Risk rule set', 'protection.risk_rules', 'text', { hint: 'name of a risk rule set' })),
      h('div', { class: 'grid' }, [['batch', 'the whole batch'], ['user', 'each user'], ['device', 'each device'], ['ip', 'each IP address']].map(([k, who]) =>
        h('fieldset', {}, h('legend', {}, `Claim attempts of ${who}`),
          specField('Events', `protection.rate_limits.${k}.rate`, 'int', { hint: 'empty: no limit' }),
          specField('Per seconds', `protection.rate_limits.${k}.period_seconds`, 'int', { hint: 'default 1' }),
          specField('Burst', `protection.rate_limits.${k}.burst`, 'int', { hint: 'default: the events' }))))),
    h('fieldset', { 'data-path': 'rules' }, h('legend', {}, 'Rules'),
      h('p', { class: 'hint' }, 'Scope (include/exclude products, categories, merchants), stacking (exclusive/stackable with batches, merchants, types), cost bearer (bear: platform or merchant, share in basis points), usage node (node), deduction method (deduct: order, items, shipping).'),
      h('p', { class: 'field-error', id: 'f-rules-err' }),
      table(['Use', 'Reference type', 'Reference', 'Share (bp)', ''], rulesBody, { caption: 'Rules' }),
      h('div', { class: 'actions' }, h('button', { type: 'button', id: 'add-rule', onclick: () => { addRule(rulesBody); renumberRules(rulesBody); rulesBody.lastChild.querySelector('select').focus(); } }, 'Add rule'))),
    h('div', { class: 'actions' },
      editing
        ? h('button', { type: 'submit', class: 'primary', id: 'save-batch' }, 'Save changes')
        : h('button', { type: 'submit', class: 'primary', id: 'create-batch' }, 'Create draft batch'),
      h('a', { class: 'button', href: editing ? `#/batches/${enc(editing.id)}` : '#/batches' }, 'Cancel')));

  const update = () => {
    for (const f of form.querySelectorAll('[data-show]')) {
      const [path, values] = f.getAttribute('data-show').split('=');
      const ctl = form.querySelector(`[data-path="${path}"]`);
      const visible = ctl && !ctl.closest('[hidden]') && values.split(',').includes(ctl.value);
      f.hidden = !visible;
    }
  };
  form.addEventListener('change', update);
  form.addEventListener('submit', (ev) => { ev.preventDefault(); submitBatch(form, summary, editing); });

  // Defaults, or the batch being copied.
  const set = (path, v) => {
    const e = form.querySelector(`[data-path="${path}"]`);
    if (!e || v === undefined || v === null || v === '') return;
    if (e.type === 'checkbox') e.checked = !!v;
    else if (e.type === 'datetime-local') {
      e.value = toLocal(v);
      if (e.value.length > 16) e.step = 1;
      // Sent back as it came while unchanged, fractions of a second included.
      e.setAttribute('data-orig', v);
      e.setAttribute('data-orig-local', e.value);
    } else e.value = Array.isArray(v) ? v.join(', ') : v;
  };
  set('validity.days', 7);
  set('amount.value', 500);
  set('per_user_limit', 1);
  if (base) {
    const flat = (o, pre) => {
      for (const [k, v] of Object.entries(o || {})) {
        const p = pre ? `${pre}.${k}` : k;
        if (v && typeof v === 'object' && !Array.isArray(v)) flat(v, p); else set(p, v);
      }
    };
    const { rules, protection, ...rest } = base;
    flat(rest, '');
    if (!editing) set('name', 'Copy of ' + base.name);
    if (base.validity && base.validity.start) set('validity.mode', 'window');
    // A copy is generated as its own size asks; an edit keeps the mode.
    if (!editing && (!base.generation || base.generation.mode !== 'incremental')) form.querySelector('[data-path="generation.mode"]').value = '';
    if (protection) {
      flat({ ...protection, count_across: undefined }, 'protection');
      for (const c of protection.count_across || []) set(`protection.count_across.${c}`, true);
    }
    for (const r of rules || []) addRule(rulesBody, r);
  }
  renumberRules(rulesBody);
  update();
  if (editing) {
    put(root, h('h1', {}, `Edit draft “${editing.name}”`),
      h('p', { class: 'hint', id: 'edit-hint' }, `Version ${editing.version}. Saving replaces every setting and rule of the draft; publishing fixes them for good.`),
      editing.status !== 'draft' ? h('p', { class: 'notice' }, `This batch is ${editing.status}: it cannot be edited. Copy it to a new draft instead.`) : null,
      form);
    return;
  }
  put(root, h('h1', {}, base ? `New batch from ${base.name}` : 'New batch'),
    base ? h('p', { class: 'hint' }, 'A published batch does not change; this makes a new draft with its settings.') : null,
    form);
}

function addRule(body, r = {}) {
  const use = select(Object.keys(RULE_REFS), { 'data-rule': 'use_type' });
  const ref = select([], { 'data-rule': 'ref_type' });
  const refs = () => {
    const cur = ref.value;
    swap(ref, ...RULE_REFS[use.value].map((t) => h('option', { value: t }, t)));
    if (RULE_REFS[use.value].includes(cur)) ref.value = cur;
  };
  use.addEventListener('change', refs);
  if (r.use_type) use.value = r.use_type;
  refs();
  if (r.ref_type) ref.value = r.ref_type;
  const id = h('input', { type: 'text', 'data-rule': 'ref_id', maxlength: 128, value: r.ref_id || '' });
  const val = h('input', { type: 'number', 'data-rule': 'value', min: 0, max: 10000, step: 1, value: r.value || '' });
  const tr = h('tr', { class: 'rule-row' });
  const cell = (input, label) => {
    input.id = nextId('rule');
    const err = h('p', { class: 'field-error', id: input.id + '-err' });
    input.setAttribute('aria-describedby', err.id);
    return h('td', {}, h('label', { class: 'visually-hidden', for: input.id, 'data-label': label }, label), input, err);
  };
  put(tr, cell(use, 'Use'), cell(ref, 'Reference type'), cell(id, 'Reference'), cell(val, 'Share in basis points'),
    h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => { const b = tr.parentNode; tr.remove(); renumberRules(b); } }, 'Remove')));
  put(body, tr);
}

function renumberRules(body) {
  [...body.children].forEach((tr, i) => {
    for (const e of tr.querySelectorAll('[data-rule]')) {
      e.setAttribute('data-path', `rules[${i}].${e.getAttribute('data-rule')}`);
      const l = tr.querySelector(`label[for="${e.id}"]`);
      if (l) l.textContent = `Rule ${i + 1}: ${l.getAttribute('data-label')}`;
    }
    const rm = tr.querySelector('button');
    rm.setAttribute('aria-label', `Remove rule ${i + 1}`);
  });
}

function setPath(obj, path, v) {
  const parts = path.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) o = o[p] = o[p] || {};
  o[parts[parts.length - 1]] = v;
}

// collectSpec reads the visible inputs into a BatchSpec, leaving out what
// is empty so that the API's defaults apply.
function collectSpec(form) {
  const spec = {};
  for (const e of form.querySelectorAll('[data-path]:not([data-rule])')) {
    const path = e.getAttribute('data-path');
    if (e.closest('[hidden]') || path === 'validity.mode' || e.tagName === 'FIELDSET') continue;
    const kind = e.getAttribute('data-kind');
    if (path.startsWith('protection.count_across.')) {
      if (e.checked) (spec.protection = spec.protection || {}).count_across = [...((spec.protection || {}).count_across || []), path.split('.').pop()];
      continue;
    }
    let v;
    if (kind === 'bool') v = e.checked || undefined;
    else if (e.value.trim() === '') v = undefined;
    else if (kind === 'int') v = Number(e.value);
    else if (kind === 'time') v = e.value === e.getAttribute('data-orig-local') ? e.getAttribute('data-orig') : new Date(e.value + 'Z').toISOString().replace('.000Z', 'Z');
    else if (kind === 'list') v = e.value.split(',').map((s) => s.trim()).filter(Boolean);
    else v = e.value.trim();
    if (v !== undefined) setPath(spec, path, v);
  }
  if (!spec.validity) spec.validity = {};
  if (!spec.amount) spec.amount = {};
  const rules = [];
  for (const tr of form.querySelectorAll('.rule-row')) {
    const r = {};
    for (const e of tr.querySelectorAll('[data-rule]')) {
      const k = e.getAttribute('data-rule');
      if (k === 'value') { if (e.value.trim() !== '') r.value = Number(e.value); } else r[k] = e.value.trim();
    }
    rules.push(r);
  }
  if (rules.length) spec.rules = rules;
  return spec;
}

// clientChecks applies the constraints of the OpenAPI schema, as the API
// will; the API's answer has the last word (cross-field rules).
function clientChecks(form) {
  const errs = [];
  for (const e of form.querySelectorAll('input[data-path], textarea[data-path]')) {
    if (e.closest('[hidden]') || e.type === 'checkbox') continue;
    const path = e.getAttribute('data-path');
    const v = e.value.trim();
    if (v === '') { if (e.required) errs.push({ location: 'body.' + path, message: 'is required' }); continue; }
    if (e.type === 'number') {
      const n = Number(v);
      if (!Number.isInteger(n)) errs.push({ location: 'body.' + path, message: 'must be a whole number' });
      else if (e.min !== '' && n < Number(e.min)) errs.push({ location: 'body.' + path, message: `expected number >= ${e.min}` });
      else if (e.max !== '' && n > Number(e.max)) errs.push({ location: 'body.' + path, message: `expected number <= ${e.max}` });
    }
  }
  return errs;
}

function clearErrors(form) {
  for (const e of form.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
  for (const e of form.querySelectorAll('.field-error')) e.textContent = '';
}

// showErrors puts each problem error next to its field, found by the JSON
// path of errors[].location; what matches no field goes in the summary.
function showErrors(form, summary, errors, title) {
  const loose = [];
  let first = null;
  for (const err of errors) {
    let path = (err.location || '').replace(/^body\.?/, '');
    let target = null;
    while (path && !target) {
      target = form.querySelector(`[data-path="${CSS.escape(path)}"]`);
      if (!target) path = path.includes('.') || path.includes('[') ? path.replace(/(\.[^.[\]]*|\[\d+\])$/, '') : '';
    }
    if (target && target.tagName === 'SELECT' && target.getAttribute('data-path') === 'validity.mode') target = null;
    if (!target) {
      const vm = (err.location || '').startsWith('body.validity') ? form.querySelector('[data-path="validity.days"]:not([hidden] *)') || form.querySelector('[data-path="validity.mode"]') : null;
      target = vm;
    }
    if (target) {
      target.setAttribute('aria-invalid', 'true');
      const box = document.getElementById(target.id + '-err') || (target.tagName === 'FIELDSET' ? $('#f-rules-err') : null);
      if (box) box.textContent = (box.textContent ? box.textContent + '; ' : '') + err.message;
      else loose.push(err);
      first = first || target;
    } else loose.push(err);
  }
  swap(summary, h('p', { class: 'alert' }, `${title} — ${errors.length} problem${errors.length === 1 ? '' : 's'}, shown next to the fields.`),
    loose.length ? h('ul', {}, loose.map((e) => h('li', {}, `${e.location || 'request'}: ${e.message}`))) : null);
  (first || summary).focus();
}

// submitBatch creates a draft, or saves an edited one on the version it
// was read at: an edit made meanwhile is refused (412), never overwritten.
async function submitBatch(form, summary, editing) {
  clearErrors(form);
  swap(summary, );
  const local = clientChecks(form);
  if (local.length) { showErrors(form, summary, local, 'Please correct the form'); return; }
  const btn = form.querySelector('button[type=submit]');
  btn.disabled = true;
  try {
    if (editing) {
      const b = await api('PATCH', `/v1/batches/${enc(editing.id)}`, collectSpec(form), { 'If-Match': `"${editing.version}"` });
      flashAlert(`Draft batch “${b.name}” saved (version ${b.version}).`);
      location.hash = `#/batches/${enc(b.id)}`;
    } else {
      const b = await api('POST', '/v1/batches', collectSpec(form));
      flashAlert(`Draft batch “${b.name}” created.`);
      location.hash = `#/batches/${enc(b.id)}`;
    }
  } catch (e) {
    const errs = (e.problem && e.problem.errors) || [];
    if (errs.length) showErrors(form, summary, errs, e.message);
    else {
      const reload = e.status === 412 ? h('p', {}, 'Someone changed this batch since you opened it. ',
        h('a', { href: `#/batches/${enc(editing.id)}`, id: 'edit-reload' }, 'See it as it is now'), ' and edit it again.') : null;
      swap(summary, h('p', { class: 'alert' }, e.message), reload);
      summary.focus();
    }
  } finally { btn.disabled = false; }
}

// ---------- one batch ----------

const TRANSITIONS = [
  { tr: 'publish', from: ['draft'], label: 'Publish', text: 'Publishing generates the codes and opens the batch for claims. Its settings cannot change afterwards.' },
  { tr: 'pause', from: ['active'], label: 'Pause', text: 'Pausing stops claims at once on every instance.' },
  { tr: 'resume', from: ['paused'], label: 'Resume', text: 'Resuming reopens claims.' },
  { tr: 'end', from: ['draft', 'active', 'paused'], label: 'End', text: 'Ending is for good: the batch cannot be claimed again.' },
];

async function batchView(root, id, cleanup) {
  let b;
  try {
    b = await api('GET', `/v1/batches/${enc(id)}`);
  } catch (e) {
    put(root, h('h1', {}, 'Batch'), h('p', { class: 'alert', id: 'batch-problem' }, e.message), h('p', {}, h('a', { href: '#/batches' }, 'Back to batches')));
    return;
  }
  const title = h('h1', {}, b.name, ' ', badge(b.status));
  const actions = h('div', { class: 'actions', id: 'batch-actions' });
  const counts = {};
  const card = (k, label) => h('div', { class: 'card' }, h('dt', {}, label), counts[k] = h('dd', { id: 'count-' + k }));
  const cards = h('dl', { class: 'cards', id: 'batch-counts' }, card('claimed', 'Claimed'), card('remaining', 'Remaining'),
    card('pool', 'Pool depth'), card('generated', 'Generated'), card('total', 'Total'));
  let painted = '';
  const paintBatch = () => {
    counts.claimed.textContent = b.claimed_count;
    counts.remaining.textContent = b.remaining_count;
    counts.pool.textContent = b.pool_depth;
    counts.generated.textContent = b.generated_count;
    counts.total.textContent = b.total_quantity;
    if (painted === b.status) return;
    painted = b.status;
    swap(title, b.name, ' ', badge(b.status));
    swap(actions, ...TRANSITIONS.filter((t) => t.from.includes(b.status) && can(`${t.tr}-batch`)).map((t) =>
      h('button', { type: 'button', id: `do-${t.tr}`, class: t.tr === 'end' ? 'danger' : t.tr === 'publish' ? 'primary' : '', onclick: async () => {
        if (!(await confirmAction(`${t.label} “${b.name}”?`, t.text, t.label))) return;
        try {
          b = await api('POST', `/v1/batches/${enc(b.id)}/${t.tr}`);
          showAlert(`Batch ${b.status}.`, 'info');
          paintBatch();
          const next = actions.querySelector('button');
          if (next) next.focus();
        } catch (e) { showAlert(e.message); }
      } }, t.label)),
    b.status === 'draft' && can('update-batch') ? h('a', { class: 'button', id: 'edit-batch', href: `#/batches/${enc(b.id)}/edit` }, 'Edit') : null,
    can('create-batch') ? h('a', { class: 'button', id: 'copy-batch', href: `#/batches/new?from=${enc(b.id)}` }, 'Copy to a new draft') : null);
  };
  paintBatch();
  const updated = h('p', { class: 'hint', id: 'updated' });

  put(root, title, actions,
    h('section', { 'aria-labelledby': 'counts-h' }, h('h2', { id: 'counts-h' }, 'Codes'), cards, updated),
    settingsSection(b),
    importSection(b),
    grantSection(b),
    statsSection(b, cleanup),
    batchListsSection(b));

  // Live counts: the batch view is cheap (no store scan).
  const timer = setInterval(async () => {
    if (!document.body.contains(cards)) { clearInterval(timer); return; }
    if (document.hidden) return; // no polling in a background tab
    try {
      b = await api('GET', `/v1/batches/${enc(b.id)}`);
      paintBatch();
      updated.textContent = 'Updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
    } catch { /* the next tick retries */ }
  }, REFRESH_MS);
  cleanup.push(() => clearInterval(timer));
}

function settingsSection(b) {
  const p = (k, v) => (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length) ? [] : [h('dt', {}, k), h('dd', {}, Array.isArray(v) ? v.join(', ') : String(v))]);
  const a = b.amount || {};
  const amount = a.type === 'fixed' ? money(a.value) : a.type === 'random' ? `random ${money(a.min)}–${money(a.max)}` : `split of ${money(a.budget)}, each ≥ ${money(a.min)}`;
  const v = b.validity || {};
  const validity = v.days ? `${v.days} days from the claim` : `${when(v.start)} → ${when(v.end)}`;
  const rules = b.rules || [];
  return h('section', { 'aria-labelledby': 'settings-h' }, h('h2', { id: 'settings-h' }, 'Settings'),
    h('dl', { class: 'props' },
      p('Id', b.id), p('Merchant', b.merchant_id || 'platform'), p('Type', b.type), p('Amount', amount),
      p('Percent off', b.percent_off), p('Minimum spend', b.min_spend ? money(b.min_spend) : ''),
      p('Per-user limit', b.per_user_limit), p('Claim window', b.claim_start || b.claim_end ? `${when(b.claim_start) || 'publication'} → ${when(b.claim_end) || 'open'}` : ''),
      p('Claim platforms', b.claim_platforms), p('Usage platforms', b.usage_platforms), p('Channel', b.channel), p('Ad copy', b.ad_copy),
      p('Validity', validity), p('Source', b.source),
      p('Generation', b.generation && b.generation.mode ? b.generation.mode + (b.generation.chunk ? ` (chunks of ${b.generation.chunk}, low water ${b.generation.low_water})` : '') : ''),
      p('Code format', b.code_format ? `${b.code_format.prefix || ''}${'X'.repeat(b.code_format.length || 0)}+check` : ''),
      p('Trigger subject', b.trigger_subject),
      p('Redemption', b.redemption ? Object.entries(b.redemption).map(([k, x]) => `${k}: ${x}`).join('; ') : ''),
      p('Protection', b.protection ? JSON.stringify(b.protection) : ''),
      p('Created', when(b.created_at))),
    rules.length ? h('div', {}, h('h3', {}, 'Rules'), table(['Use', 'Reference type', 'Reference', 'Share (bp)'],
      rules.map((r) => h('tr', {}, h('td', {}, r.use_type), h('td', {}, r.ref_type), h('td', {}, r.ref_id), h('td', { class: 'num' }, r.value || ''))), { caption: 'Rules' })) : null);
}

// ---------- partner code import ----------

// importOp is the partner code import, if this server has it.
function importOp() {
  return has('import-codes') ? { name: 'import-codes', ...state.ops['import-codes'] } : null;
}

function importSection(b) {
  const sec = h('section', { 'aria-labelledby': 'import-h', id: 'import' }, h('h2', { id: 'import-h' }, 'Import partner codes'));
  const op = importOp();
  if (!op) { put(sec, notAvailable('Importing partner codes')); return sec; }
  if (!can(op.name)) { put(sec, h('p', { class: 'notice' }, 'Your key’s role may not import codes.')); return sec; }
  const file = h('input', { type: 'file', id: 'import-file', accept: '.csv,text/csv,text/plain' });
  const bar = h('progress', { id: 'import-progress', max: 100, value: 0, 'aria-label': 'Import progress', hidden: true });
  const status = h('p', { id: 'import-status', role: 'status' });
  const report = h('div', { id: 'import-report', class: 'report' });
  const form = h('form', { class: 'inline-form', onsubmit: async (ev) => {
    ev.preventDefault();
    if (!file.files.length) { status.textContent = 'Choose a CSV file first.'; return; }
    swap(report, );
    bar.hidden = false;
    bar.value = 0;
    try {
      status.textContent = 'Uploading…';
      const out = await uploadImport(op, b.id, file.files[0], (p) => { bar.value = p; });
      bar.value = 100;
      showImport(out, status, report);
    } catch (e) {
      bar.hidden = true;
      status.textContent = e.message;
    }
  } },
  field('CSV file', file, { hint: 'one code a line: code[,amount][,tag=value…]' }),
  h('div', {}, h('button', { type: 'submit', id: 'import-submit' }, 'Import')));
  put(sec, b.source === 'external' ? null : h('p', { class: 'hint' }, 'This batch generates its own codes; imports are for batches whose source is external.'), form, bar, status, report);
  return sec;
}

// upload streams a file to the API with XMLHttpRequest, whose upload
// events give the progress (fetch has none).
function upload(path, contentType, fileObj, progress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('POST', path);
    x.setRequestHeader('Authorization', 'Bearer ' + state.token);
    x.setRequestHeader('Content-Type', contentType);
    // The server reads the file as it arrives: what is uploaded is what is read.
    x.upload.onprogress = (e) => { if (e.lengthComputable) progress(Math.min(99, Math.round((e.loaded / e.total) * 100))); };
    x.onerror = () => reject(new ApiError(0, { title: 'Network error' }));
    x.onload = () => {
      let data = null;
      try { data = JSON.parse(x.responseText); } catch { data = { detail: x.responseText }; }
      if (x.status >= 400) reject(new ApiError(x.status, data)); else resolve(data || {});
    };
    x.send(fileObj);
  });
}

function uploadImport(op, batchID, fileObj, progress) {
  const content = Object.keys((op.op.requestBody && op.op.requestBody.content) || {});
  return upload(op.path.replace(/\{[^}]+\}/, enc(batchID)), content.find((c) => c.includes('csv')) || 'text/csv', fileObj, progress);
}

// grantSection hands the batch to each user of an uploaded list, through a
// job whose progress it follows.
function grantSection(b) {
  if (!can('create-grant-job') || !has('get-job')) return null;
  const file = h('input', { type: 'file', id: 'grant-file', accept: '.txt,.csv,text/plain' });
  const channel = h('input', { type: 'text', id: 'grant-channel', maxlength: 128 });
  const bar = h('progress', { id: 'grant-progress', max: 100, value: 0, 'aria-label': 'Grant progress', hidden: true });
  const status = h('p', { id: 'grant-status', role: 'status' });
  const report = h('div', { id: 'grant-report', class: 'report' });
  const form = h('form', { class: 'inline-form', onsubmit: async (ev) => {
    ev.preventDefault();
    if (!file.files.length) { status.textContent = 'Choose a list of user ids first.'; return; }
    swap(report);
    bar.hidden = false;
    bar.value = 0;
    try {
      status.textContent = 'Uploading the list…';
      let job = await upload(`/v1/batches/${enc(b.id)}/grant-jobs` + q({ channel: channel.value.trim() }), 'text/plain', file.files[0], () => {});
      while (document.body.contains(form)) {
        const handled = job.done + job.failed;
        bar.value = job.total ? Math.round((handled / job.total) * 100) : 0;
        status.textContent = `Job ${job.id}: ${job.done} granted, ${job.failed} failed, ${job.remaining} remaining of ${job.total}.`;
        if (job.status === 'done') break;
        await new Promise((r) => setTimeout(r, 500));
        job = await api('GET', `/v1/jobs/${enc(job.id)}`);
      }
      bar.value = 100;
      const failures = job.failures || [];
      if (failures.length) {
        put(report, h('h3', {}, `Users not granted (${job.failed})`), table(['Line', 'User', 'Problem', 'Reason'],
          failures.map((f) => h('tr', {}, h('td', { class: 'num' }, f.line), h('td', {}, f.user_id), h('td', {}, f.code), h('td', {}, f.reason))), { caption: 'Users not granted' }));
      }
    } catch (e) {
      bar.hidden = true;
      status.textContent = e.message;
    }
  } },
  field('List of user ids', file, { hint: 'one user id a line' }), field('Channel', channel, { hint: 'recorded on the claims; default grant_job' }),
  h('div', {}, h('button', { type: 'submit', id: 'grant-submit' }, 'Grant')));
  return h('section', { 'aria-labelledby': 'grant-h', id: 'grant' }, h('h2', { id: 'grant-h' }, 'Grant to a list of users'), form, bar, status, report);
}

// showImport shows an import's counts and its line-by-line report.
function showImport(out, status, report) {
  status.textContent = `Import finished: ${out.lines} lines read, ${out.imported} codes imported, ` +
    `${out.existing} already imported, ${out.rejected} refused. The batch holds ${out.generated_count} codes.`;
  const errors = [...(out.errors || [])].sort((x, y) => x.line - y.line);
  if (!errors.length) { put(report, h('p', {}, 'No line was refused.')); return; }
  put(report, h('h3', {}, `Refused lines (${out.rejected})`),
    out.errors_truncated ? h('p', { class: 'hint' }, `The first ${errors.length} are listed.`) : null,
    table(['Line', 'Problem', 'Reason'], errors.map((e) => h('tr', {},
      h('td', { class: 'num' }, e.line), h('td', {}, e.code), h('td', {}, e.reason))), { caption: 'Refused lines' }));
}

// ---------- live statistics ----------

function statsSection(b, cleanup) {
  const sec = h('section', { 'aria-labelledby': 'stats-h', id: 'stats' }, h('h2', { id: 'stats-h' }, 'Live statistics'));
  if (!has('batch-stats')) { put(sec, notAvailable('Statistics')); return sec; }
  const totals = h('dl', { class: 'cards', id: 'stats-totals' });
  const charts = h('div', { class: 'charts' });
  const samples = [];
  const fig = (id, caption, legend) => h('figure', { class: 'chart', id }, h('figcaption', {}, caption), h('div', { class: 'plot' }),
    h('ul', { class: 'legend' }, legend.map((l, i) => h('li', {}, h('i', { class: `sw${i + 1}` }), l))));
  const live = fig('chart-live', 'Claims and redemptions, live', ['claimed', 'redeemed']);
  const byTime = fig('chart-time', 'Claims and redemptions by hour', ['claimed', 'redeemed']);
  const byPlatform = fig('chart-platform', 'By platform', ['claimed', 'redeemed']);
  const byChannel = fig('chart-channel', 'By channel', ['claimed', 'redeemed']);
  const byBearer = fig('chart-bearer', 'Discount by cost bearer', ['discount']);
  put(charts, live, byTime, byPlatform, byChannel, byBearer);
  const err = h('p', { class: 'hint', role: 'status' });
  put(sec, totals, charts, err);

  const plot = (figure, svg) => figure.querySelector('.plot').replaceChildren(svg);
  const groups = (items) => ({ categories: (items || []).map((x) => x.key), series: [
    { name: 'claimed', values: (items || []).map((x) => x.claimed) }, { name: 'redeemed', values: (items || []).map((x) => x.redeemed) }] });
  const tick = async () => {
    if (!document.body.contains(sec) && samples.length) { clearInterval(timer); return; }
    if (document.hidden && samples.length) return;
    let s;
    try {
      s = await api('GET', `/v1/batches/${enc(b.id)}/stats`);
      err.textContent = '';
    } catch (e) {
      err.textContent = e.status === 404 && !e.problem.code ? 'Statistics are not available on this server.' : e.message;
      return;
    }
    const t = s.totals || {};
    const card = (k, label, v) => [h('div', { class: 'card' }, h('dt', {}, label), h('dd', { id: 'stat-' + k }, v))];
    swap(totals, ...card('claimed', 'Claimed', t.claimed), ...card('redeemed', 'Redeemed', t.redeemed), ...card('reserved', 'Reserved', t.reserved),
      ...card('expired', 'Expired', t.expired), ...card('refunded', 'Refunded', t.refunded), ...card('discount', 'Discount', money(t.discount)),
      ...card('claim-rate', 'Claim rate', pct(s.claim_rate)), ...card('redemption-rate', 'Redemption rate', pct(s.redemption_rate)));
    samples.push([Date.now(), t.claimed || 0, t.redeemed || 0]);
    if (samples.length > 150) samples.shift();
    plot(live, lineChart({ label: 'Claims and redemptions since this page opened', series: [
      { name: 'claimed', points: samples.map((x) => [x[0], x[1]]) }, { name: 'redeemed', points: samples.map((x) => [x[0], x[2]]) }] }));
    const hours = (s.by_hour || []).slice(-24).map((x) => ({ ...x, key: (x.key || '').slice(11, 16) || x.key }));
    plot(byTime, barChart({ label: 'Claims and redemptions per hour (UTC)', ...groups(hours) }));
    plot(byPlatform, barChart({ label: 'Claims and redemptions per platform', ...groups(s.by_platform) }));
    plot(byChannel, barChart({ label: 'Claims and redemptions per channel', ...groups(s.by_channel) }));
    plot(byBearer, barChart({ label: 'Discount by cost bearer', categories: ['platform', 'merchant'],
      series: [{ name: 'discount', values: [t.discount_platform || 0, t.discount_merchant || 0] }], yFormat: (v) => money(Math.round(v)) }));
  };
  const timer = setInterval(tick, REFRESH_MS);
  tick();
  cleanup.push(() => clearInterval(timer));
  return sec;
}

// ---------- look-ups ----------

function lookupView(root) {
  const claimsRows = (items) => (items || []).map((c) => h('tr', {},
    h('td', {}, h('code', {}, c.code)), h('td', {}, badge(c.status)), h('td', {}, h('a', { href: `#/batches/${enc(c.batch_id)}` }, c.batch_name || c.batch_id)),
    h('td', { class: 'num' }, money(c.amount)), h('td', {}, when(c.valid_to)), h('td', {}, c.platform || ''), h('td', {}, when(c.claimed_at))));
  const claimHeaders = ['Code', 'Status', 'Batch', 'Amount', 'Valid until', 'Platform', 'Claimed'];

  const section = (id, title, inputLabel, op, run) => {
    const input = h('input', { type: 'text', id: `${id}-q`, required: true, maxlength: 128 });
    const out = h('div', { id: `${id}-out`, 'aria-live': 'polite' });
    const sec = h('section', { 'aria-labelledby': `${id}-h` }, h('h2', { id: `${id}-h` }, title));
    if (!has(op)) { put(sec, notAvailable(title)); return sec; }
    put(sec, h('form', { class: 'inline-form', onsubmit: async (ev) => {
      ev.preventDefault();
      swap(out, h('p', {}, 'Looking up…'));
      try { swap(out, await run(input.value.trim())); } catch (e) { swap(out, h('p', { class: 'alert' }, e.message)); }
    } }, field(inputLabel, input), h('div', {}, h('button', { type: 'submit' }, 'Find'))), out);
    return sec;
  };

  put(root, h('h1', {}, 'Look-ups'),
    section('user', 'A user’s coupons', 'User id', 'list-user-claims', async (v) => {
      const page = await api('GET', `/v1/users/${enc(v)}/claims?limit=100`);
      if (!page.items || !page.items.length) return h('p', {}, 'This user holds no coupons.');
      return table(claimHeaders, claimsRows(page.items), { caption: 'Coupons of ' + v });
    }),
    section('code', 'A code', 'Code', 'get-code', async (v) => {
      const c = await api('GET', `/v1/codes/${enc(v)}`);
      return h('dl', { class: 'props' }, h('dt', {}, 'Code'), h('dd', {}, h('code', {}, c.code)), h('dt', {}, 'Status'), h('dd', {}, badge(c.status)),
        h('dt', {}, 'Batch'), h('dd', {}, h('a', { href: `#/batches/${enc(c.batch_id)}` }, c.batch_id)), h('dt', {}, 'Amount'), h('dd', {}, money(c.amount)),
        h('dt', {}, 'Claim'), h('dd', {}, c.claim_id || '—'), h('dt', {}, 'Issued'), h('dd', {}, when(c.issued_at) || '—'),
        h('dt', {}, 'Tags'), h('dd', {}, c.tags ? Object.entries(c.tags).map(([k, x]) => `${k}=${x}`).join(', ') : '—'));
    }),
    section('order', 'An order’s redemption', 'Order id', 'get-order-redemption', async (v) => redemptionDetails(await api('GET', `/v1/orders/${enc(v)}/redemption`))),
    can('search-claims') ? searchClaimsSection(claimHeaders, claimsRows) : null);
}

// searchClaimsSection searches claims across users by batch, phone, code,
// channel and status.
function searchClaimsSection(headers, rows) {
  const inputs = {
    batch_id: h('input', { type: 'text', id: 'sc-batch', maxlength: 64 }),
    phone: h('input', { type: 'text', id: 'sc-phone', maxlength: 21 }),
    code: h('input', { type: 'text', id: 'sc-code', maxlength: 64 }),
    channel: h('input', { type: 'text', id: 'sc-channel', maxlength: 128 }),
    status: select([['', 'any'], 'available', 'locked', 'used', 'expired', 'refunded'], { id: 'sc-status' }),
  };
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'More');
  const out = h('div', { id: 'search-out', hidden: true }, table(headers, body, { caption: 'Claims found' }), h('div', { class: 'actions' }, more));
  let cursor = '';
  let query = {};
  const load = async () => {
    try {
      const page = await api('GET', '/v1/search/claims' + q({ ...query, limit: 50, cursor }));
      put(body, rows(page.items));
      if (!body.children.length) put(body, h('tr', {}, h('td', { colspan: headers.length }, 'No claim matches.')));
      cursor = page.next_cursor || '';
      more.hidden = !cursor;
      out.hidden = false;
    } catch (e) { showAlert(e.message); }
  };
  more.addEventListener('click', load);
  return h('section', { 'aria-labelledby': 'search-h' }, h('h2', { id: 'search-h' }, 'Search claims'),
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Search claims', onsubmit: async (ev) => {
      ev.preventDefault();
      query = Object.fromEntries(Object.entries(inputs).map(([k, e]) => [k, e.value.trim()]));
      cursor = '';
      swap(body);
      await load();
    } }, field('Batch id', inputs.batch_id), field('Phone', inputs.phone), field('Code', inputs.code), field('Channel', inputs.channel), field('Status', inputs.status),
    h('div', {}, h('button', { type: 'submit', id: 'sc-submit' }, 'Search'))), out);
}

function redemptionDetails(r) {
  return h('div', {},
    h('dl', { class: 'props' }, h('dt', {}, 'Order'), h('dd', {}, r.order_id), h('dt', {}, 'Status'), h('dd', {}, badge(r.status)),
      h('dt', {}, 'User'), h('dd', {}, r.user_id || '—'), h('dt', {}, 'Discount'), h('dd', {}, money(r.discount)),
      h('dt', {}, 'Reserved'), h('dd', {}, when(r.reserved_at)), h('dt', {}, 'Reason'), h('dd', {}, r.reason || '—'),
      r.review ? [h('dt', {}, 'Review'), h('dd', {}, `${r.review.reason} (since ${when(r.review.since)}, ${r.review.attempts} attempts)`)] : null),
    table(['Code', 'Status', 'Batch', 'Discount'], (r.claims || []).map((c) => h('tr', {}, h('td', {}, h('code', {}, c.code)), h('td', {}, badge(c.status)),
      h('td', {}, c.batch_id), h('td', { class: 'num' }, money(c.discount)))), { caption: 'Coupons used' }));
}

// ---------- review list ----------

async function reviewsView(root) {
  const body = h('tbody');
  put(root, h('h1', {}, 'Review list'),
    h('p', {}, 'Reservations the order system could not confirm or cancel. Resolve each once you know what became of the order.'),
    table(['Order', 'User', 'Discount', 'Reserved', 'Why', 'Attempts', 'Resolve'], body, { caption: 'Reservations waiting for review' }));
  const load = async () => {
    let page;
    try { page = await api('GET', '/v1/reviews?limit=100'); } catch (e) { showAlert(e.message); return; }
    const items = page.items || [];
    swap(body, ...items.map((r) => h('tr', { 'data-review': r.id },
      h('td', { class: 'nowrap' }, r.order_id), h('td', {}, r.user_id || ''), h('td', { class: 'num' }, money(r.discount)), h('td', {}, when(r.reserved_at)),
      h('td', {}, r.review ? r.review.reason : ''), h('td', { class: 'num' }, r.review ? r.review.attempts : ''),
      h('td', {}, can('resolve-review') ? h('div', { class: 'actions' },
        [['confirm', 'Paid: confirm'], ['cancel', 'Not paid: release'], ['dismiss', 'Dismiss']].map(([outcome, label]) =>
          h('button', { type: 'button', 'data-outcome': outcome, 'aria-label': `${label} order ${r.order_id}`, onclick: async () => {
            if (!(await confirmAction(`${label}: order ${r.order_id}?`, outcome === 'confirm' ? 'The coupons become used.' : outcome === 'cancel' ? 'The coupons become available again.' : 'The reservation leaves the list unchanged.', label))) return;
            try {
              const done = await api('POST', `/v1/reviews/${enc(r.id)}/resolve`, { outcome });
              showAlert(`Order ${done.order_id} resolved: ${done.status}.`, 'info');
              await load();
            } catch (e) { showAlert(e.message); }
          } }, label))) : '—'))));
    if (!items.length) put(body, h('tr', {}, h('td', { colspan: 7 }, 'Nothing to review.')));
  };
  await load();
}

// ---------- black and white lists ----------

async function listsView(root, params) {
  if (!has('list-list-entries')) { put(root, h('h1', {}, 'Black & white lists'), notAvailable('List management')); return; }
  const list = params.get('list') === 'whitelist' ? 'whitelist' : 'blacklist';
  put(root, h('h1', {}, 'Black & white lists'),
    h('p', {}, 'The global lists apply to every batch: a blacklisted user, phone, device or IP is refused; a whitelisted one may claim whitelist-only batches and is exempt from risk rules.'),
    h('nav', { 'aria-label': 'Lists' }, h('ul', { class: 'actions' },
      ['blacklist', 'whitelist'].map((l) => h('li', {}, h('a', { href: `#/lists?list=${l}`, 'aria-current': l === list ? 'page' : false }, l === 'blacklist' ? 'Blacklist' : 'Whitelist'))))));
  const panel = entriesPanel('/v1/lists', list, 'entry', 2);
  put(root, panel.el);
  await panel.load();
}

// entriesPanel manages the entries of one list (global, or a batch's):
// add with a reason, remove with a confirmation.
function entriesPanel(base, list, prefix, level) {
  const hx = `h${level}`;
  const kind = select(['user', 'phone', 'device', 'ip'], { id: `${prefix}-kind` });
  const value = h('input', { type: 'text', id: `${prefix}-value`, required: true, maxlength: 128 });
  const reason = h('input', { type: 'text', id: `${prefix}-reason`, maxlength: 500 });
  const body = h('tbody');
  const load = async () => {
    let page;
    try { page = await api('GET', `${base}/${list}/entries?limit=100`); } catch (e) { showAlert(e.message); return; }
    swap(body, ...(page.items || []).map((e) => h('tr', {}, h('td', {}, e.kind), h('td', {}, e.value), h('td', {}, e.reason || ''), h('td', {}, when(e.updated_at)),
      h('td', {}, h('button', { type: 'button', 'aria-label': `Remove ${e.kind} ${e.value}`, onclick: async () => {
        if (!(await confirmAction(`Remove ${e.value}?`, `It leaves the ${list}.`, 'Remove'))) return;
        try { await api('POST', `${base}/${list}/entries/remove`, { entries: [{ kind: e.kind, value: e.value }] }); await load(); } catch (x) { showAlert(x.message); }
      } }, 'Remove')))));
    if (!(page.items || []).length) put(body, h('tr', {}, h('td', { colspan: 5 }, `The ${list} is empty.`)));
  };
  const el = h('div', { class: 'entries' },
    h(hx, {}, `Add to the ${list}`),
    h('form', { class: 'inline-form', onsubmit: async (ev) => {
      ev.preventDefault();
      if (!value.value.trim()) { value.setAttribute('aria-invalid', 'true'); value.focus(); return; }
      value.removeAttribute('aria-invalid');
      try {
        await api('POST', `${base}/${list}/entries`, { entries: [{ kind: kind.value, value: value.value.trim(), reason: reason.value.trim() || undefined }] });
        value.value = reason.value = '';
        showAlert(`Added to the ${list}.`, 'info');
        await load();
      } catch (e) { showAlert(e.message); }
    } }, field('Kind', kind), field('Value', value, { hint: 'user id, phone, device id, IP or CIDR' }), field('Reason', reason), h('div', {}, h('button', { type: 'submit' }, 'Add'))),
    h(hx, {}, `The ${list}`),
    table(['Kind', 'Value', 'Reason', 'Updated', ''], body, { caption: list }));
  return { el, load };
}

// batchListsSection is a batch's own lists: its whitelist admits claims to
// a whitelist-only batch, its blacklist refuses them.
function batchListsSection(b) {
  if (!can('list-batch-list-entries')) return null;
  const sec = h('section', { 'aria-labelledby': 'blists-h', id: 'batch-lists' }, h('h2', { id: 'blists-h' }, 'This batch’s lists'));
  const which = select([['whitelist', 'Whitelist'], ['blacklist', 'Blacklist']], { id: 'batch-list-which' });
  const holder = h('div');
  const show = async () => {
    const panel = entriesPanel(`/v1/batches/${enc(b.id)}/lists`, which.value, 'batch-entry', 3);
    swap(holder, panel.el);
    await panel.load();
  };
  which.addEventListener('change', show);
  put(sec, b.protection && b.protection.whitelist_only ? h('p', { class: 'hint' }, 'Only whitelisted identities may claim this batch.') : null,
    h('div', { class: 'filters' }, field('List', which)), holder);
  show();
  return sec;
}

// ---------- API keys ----------

async function keysView(root) {
  if (!has('list-keys')) { put(root, h('h1', {}, 'API keys'), notAvailable('Key management')); return; }
  const body = h('tbody');
  const secretBox = h('div', { id: 'secret-box' });
  const name = h('input', { type: 'text', id: 'key-name', maxlength: 200 });
  const role = select(['operator', 'merchant', 'app', 'admin'], { id: 'key-role' });
  const merchant = h('input', { type: 'text', id: 'key-merchant', maxlength: 128 });
  const merchantField = field('Merchant', merchant, { hint: 'for a merchant key' });
  const syncRole = () => { merchantField.hidden = role.value !== 'merchant'; };
  role.addEventListener('change', syncRole);
  syncRole();

  // showSecret shows an issued key's secret once: it is in the page only
  // until dismissed or the page changes, and never stored.
  const showSecret = (k) => {
    const done = h('button', { type: 'button', class: 'primary', id: 'secret-done', onclick: () => { swap(secretBox, ); name.focus(); } }, 'I have saved it — hide');
    swap(secretBox, h('div', { class: 'secret', role: 'alert' },
      h('p', {}, h('strong', {}, `Key ${k.id} (${k.role}${k.merchant_id ? ', ' + k.merchant_id : ''}): copy its token now. It is shown this once; the server keeps only a hash.`)),
      h('p', {}, 'Bearer token'), h('code', { id: 'secret-token' }, k.token),
      h('p', {}, 'Secret (for signed requests)'), h('code', { id: 'secret-value' }, k.secret), done));
    done.focus();
  };
  const load = async () => {
    let page;
    try { page = await api('GET', '/v1/keys?limit=100'); } catch (e) { showAlert(e.message); return; }
    swap(body, ...(page.items || []).map((k) => h('tr', { 'data-key': k.id }, h('td', {}, h('code', {}, k.id)), h('td', {}, k.name || ''), h('td', {}, k.role),
      h('td', {}, k.merchant_id || ''), h('td', {}, when(k.created_at)), h('td', {}, k.revoked_at ? `revoked ${when(k.revoked_at)}` : k.rotated_at ? `rotated ${when(k.rotated_at)}` : 'live'),
      h('td', {}, k.revoked_at ? '' : h('div', { class: 'actions' },
        h('button', { type: 'button', 'aria-label': `Rotate key ${k.id}`, onclick: async () => {
          if (!(await confirmAction(`Rotate key ${k.id}?`, 'It gets a new secret; the old one stops working at once.', 'Rotate'))) return;
          try { showSecret(await api('POST', `/v1/keys/${enc(k.id)}/rotate`, {})); await load(); } catch (e) { showAlert(e.message); }
        } }, 'Rotate'),
        h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke key ${k.id}`, onclick: async () => {
          if (!(await confirmAction(`Revoke key ${k.id}?`, 'It stops working for good.', 'Revoke'))) return;
          try { await api('POST', `/v1/keys/${enc(k.id)}/revoke`); await load(); } catch (e) { showAlert(e.message); }
        } }, 'Revoke'))))));
  };
  put(root, h('h1', {}, 'API keys'), secretBox,
    h('h2', {}, 'New key'),
    h('form', { class: 'inline-form', id: 'key-form', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const k = await api('POST', '/v1/keys', { name: name.value.trim() || undefined, role: role.value, merchant_id: role.value === 'merchant' ? merchant.value.trim() : undefined });
        name.value = merchant.value = '';
        showSecret(k);
        await load();
      } catch (e) { showAlert(e.message); }
    } }, field('Name', name, { hint: 'what the key is for' }), field('Role', role), merchantField, h('div', {}, h('button', { type: 'submit', id: 'create-key' }, 'Create key'))),
    h('h2', {}, 'Keys'),
    table(['Id', 'Name', 'Role', 'Merchant', 'Created', 'State', ''], body, { caption: 'API keys' }));
  await load();
}

// ---------- router ----------

let cleanup = [];

async function render() {
  for (const f of cleanup) f();
  cleanup = [];
  const root = main();
  swap(root, );
  root.removeAttribute('data-ready');
  showAlert('');
  if (flash) { showAlert(...flash); flash = null; }
  const [path, qs] = (location.hash.slice(1) || '/batches').split('?');
  const params = new URLSearchParams(qs || '');
  const signedIn = !!state.token;
  $('#nav').hidden = !signedIn;
  $('#who').hidden = !signedIn;
  if (!signedIn) { signInView(root); return; }
  $('#who-role').textContent = `${state.keyId} · ${state.role}${state.merchant ? ' · ' + state.merchant : ''}`;
  for (const a of document.querySelectorAll('#nav a')) {
    a.parentElement.hidden = !can(a.getAttribute('data-op'));
    if (path.startsWith(a.getAttribute('href').slice(1))) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === 'batches' && parts[1] === 'new') await batchFormView(root, params.get('from'));
    else if (parts[0] === 'batches' && parts[1] && parts[2] === 'edit') await batchFormView(root, null, parts[1]);
    else if (parts[0] === 'batches' && parts[1]) await batchView(root, parts[1], cleanup);
    else if (parts[0] === 'lookup') lookupView(root);
    else if (parts[0] === 'reviews') await reviewsView(root);
    else if (parts[0] === 'lists') await listsView(root, params);
    else if (parts[0] === 'keys') await keysView(root);
    else if (parts[0] === 'signin') { location.hash = '#/batches'; return; }
    else await batchesView(root, params);
  } catch (e) {
    showAlert(e.message);
  }
  const h1 = root.querySelector('h1');
  if (h1 && !root.contains(document.activeElement)) { h1.tabIndex = -1; h1.focus(); }
  root.setAttribute('data-ready', path);
}

async function start() {
  loadSession();
  await loadSpec();
  $('#signout').addEventListener('click', () => signOut(''));
  window.addEventListener('hashchange', render);
  await render();
}

start();
